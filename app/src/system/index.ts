/**
 * system/: the device side of the appliance.
 *
 * Updating a device (`letterbox update`, firmware/README.md for the boot side):
 * 1. A release is signed once: `scripts/sign-update` hashes the slot images
 *    (boot FAT, read-only root), writes a manifest (version, security counter,
 *    boards, expiry, sizes, sha256) and signs its bytes with Ed25519
 *    (bundle.ts, manifest.ts, keys.ts).
 * 2. `update apply FILE|URL` reads the bundle as a stream and verifies the
 *    signature against the public keys in the running root image, then the
 *    board, expiry, security counter (no downgrade) and sizes, before it
 *    writes anything (update.ts). From the panel, the mail server (no root)
 *    only writes a request file; letterbox-update.service (root) takes it and
 *    runs the same apply (`update apply --from-request`, update-request.ts).
 * 3. It takes the inactive slot out of the boot order, streams the images into
 *    its partitions hashing as it writes, fsyncs, and arms one trial boot in
 *    the U-Boot environment (boot-control.ts, uboot-env.ts); every write is a
 *    discrete step of a SystemIo (io.ts), so a power cut between any two is
 *    survivable (test/system/power-cut.test.ts).
 * 4. The boot script spends the trial's one try; after boot
 *    letterbox-health.service checks health (health.ts) and runs
 *    `update commit`: healthy, the new slot becomes the default; not, the
 *    device reboots into the old slot, which records the rollback (state.ts).
 *
 * Running under systemd: notify.ts sends READY=1 and the watchdog pings
 * (Type=notify, WatchdogSec in rootfs-overlay/etc/systemd/system/letterbox.service).
 */

export { DEFAULT_KEYS_DIR } from "./keys.ts";

/** Where the appliance keeps the update state (data partition). */
export const DEFAULT_STATE_DIR = "/data/update";
/** The U-Boot environment on the config partition (rootfs-overlay/etc/fw_env.config). */
export const DEFAULT_ENV_FILE = "/boot/firmware/uboot.env";
