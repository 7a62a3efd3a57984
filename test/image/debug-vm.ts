/**
 * Developer aid, not a test: boot the boot-test image and run shell commands
 * on its console, printing their output.
 *   LETTERBOX_BOOT_TEST_DIR=image/cache/boot-test bun test/image/debug-vm.ts 'systemctl --failed' ...
 */
import { join } from "node:path";
import { tmpDir } from "../helpers/tmp.ts";
import { startVm } from "./qemu-vm.ts";

const dir = process.env.LETTERBOX_BOOT_TEST_DIR ?? join(import.meta.dir, "../../image/cache/boot-test");
const tmp = tmpDir("letterbox-debug-vm-");
const vm = await startVm({ image: join(dir, "image.img"), dir: tmp.path });
try {
  const t0 = Date.now();
  const login = await vm.waitFor(/root@letterbox:~# /, 10 * 60_000);
  console.log(`shell after ${Math.round((Date.now() - t0) / 1000)} s`);
  void login;
  await vm.run("dmesg -n 1; export SYSTEMD_PAGER= SYSTEMD_COLORS=0 TERM=dumb");
  for (const cmd of process.argv.slice(2)) {
    const r = await vm.run(cmd, 5 * 60_000);
    console.log(`$ ${cmd}  (exit ${r.code})\n${r.out}`);
  }
} finally {
  await vm.stop();
  tmp.cleanup();
}
