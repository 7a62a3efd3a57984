/**
 * The admin API's SSH methods (admin → System → SSH): list, add and remove
 * the SSH public keys that may log in to the device (as root), and show what
 * the device did with them.
 *
 * 1. `sshKeyAdd` parses the pasted key (system/ssh-keys.ts: type, blob,
 *    RSA ≥ 2048 bits) and writes the list atomically to
 *    `<data_dir>/ssh/authorized_keys`; `sshKeyRemove` takes a key out by its
 *    SHA256 fingerprint. Both answer only once the file is durable.
 * 2. On the device, a root path unit sees the file change and runs ssh-apply:
 *    sshd runs (and TCP 22 is open) while there is at least one key. Its
 *    report (running or stopped, host key fingerprints) is in
 *    /data/ssh, which `sshKeys` reads: the panel shows the host key
 *    fingerprints to compare on the first connection.
 * 3. In local mode (localserve) the file is written all the same, and the
 *    answer says SSH applies on the device only.
 * Every method needs an admin session and its CSRF header (api.ts).
 */
import { DEFAULT_SSH_STATE_DIR, readSshDeviceState, sshKeyFilePath, SshKeyError, SshKeyFile, type SshDeviceState } from "../system/ssh-keys.ts";
import type { ApiMethods } from "./api.ts";
import { str } from "./api.ts";
import type { WebContext } from "./context.ts";
import { ApiError } from "./http.ts";

/** The user the keys log in as (rootfs-overlay/etc/ssh/sshd_config.d/letterbox.conf). */
export const SSH_LOGIN_USER = "root";

export interface SshKeyView {
  type: string;
  bits: number;
  label: string;
  fingerprint: string;
  comment: string;
}

export interface SshView {
  /** False in local mode: the keys are kept, but no sshd is started. */
  device: boolean;
  login: string;
  keys: SshKeyView[];
  /** What the device's ssh-apply last did, with the host key fingerprints; null in local mode. */
  sshd: SshDeviceState | null;
}

export interface SshApiOptions {
  /** Where ssh-apply reports (default /data/ssh). */
  stateDir?: string;
}

export function sshApi(c: WebContext, opts: SshApiOptions = {}): ApiMethods {
  const file = new SshKeyFile(sshKeyFilePath(c.config.dataDir));
  const stateDir = opts.stateDir ?? DEFAULT_SSH_STATE_DIR;
  const view = async (): Promise<SshView> => ({
    device: !c.config.localserve,
    login: SSH_LOGIN_USER,
    keys: (await file.list()).map((k) => ({ type: k.type, bits: k.bits, label: k.label, fingerprint: k.fingerprint, comment: k.comment })),
    sshd: c.config.localserve ? null : readSshDeviceState(stateDir),
  });
  const userError = (e: unknown): never => {
    if (e instanceof SshKeyError) throw new ApiError("user:error", e.message);
    throw e;
  };
  return {
    sshKeys: { handler: view },
    sshKeyAdd: {
      handler: async ({ ctx, params }) => {
        const k = await file.add(str(params, "key", { max: 16 * 1024 })).catch(userError);
        ctx.log.info("ssh key added", { fingerprint: k.fingerprint, type: k.type, comment: k.comment });
        return view();
      },
    },
    sshKeyRemove: {
      handler: async ({ ctx, params }) => {
        const fp = str(params, "fingerprint", { max: 100 });
        if (!(await file.remove(fp))) throw new ApiError("user:error", `no key with fingerprint ${fp}`);
        ctx.log.info("ssh key removed", { fingerprint: fp });
        return view();
      },
    },
  };
}
