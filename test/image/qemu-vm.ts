/**
 * A Letterbox image running in `qemu-system-aarch64 -M virt`, for the boot test.
 *
 * 1. `startVm(opts)` boots the disk image with Debian's U-Boot for qemu
 *    (u-boot-qemu, qemu_arm64) as the firmware, so the image's own boot.scr
 *    chooses the slot, exactly as on a Pi. The disk is opened with
 *    `-snapshot`: the guest's writes (updates, the boot environment) live for
 *    the life of the qemu process, across guest reboots, and the built image
 *    stays untouched.
 * 2. Networking is qemu's user mode with `restrict=on`: the guest reaches
 *    nothing outside. Only explicit forwards exist: host 127.0.0.1 ports to the
 *    guest's SMTP (25), HTTP (80) and SSH (22). Files for the guest come on
 *    extra read-only virtio disks (/dev/vdb, …), or over HTTP from a host
 *    server through an SSH reverse tunnel on the forwarded SSH port (the guest
 *    fetches from its own 127.0.0.1; boot.test.ts). A bundle of about 900 MB
 *    through a slirp `guestfwd` command was cut off (ECONNRESET) after some
 *    130 MB, which is why downloads now resume (app/src/system/download.ts).
 * 3. The serial console is a unix socket (and a log file): `waitFor` watches
 *    its output, `run` types a shell command (the test image logs root in on
 *    the serial console) and returns its output and exit code.
 * 4. `stop()` kills qemu and closes the socket; always call it (finally).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { connect, type Socket } from "node:net";
import { appendFileSync } from "node:fs";
import { join } from "node:path";
import { freePort } from "../helpers/ports.ts";

export interface VmOptions {
  image: string;
  /** Folder for the console socket, log and qemu's snapshot file. */
  dir: string;
  /** Extra disk images, read-only, in order: /dev/vdb, /dev/vdc, … in the guest. */
  disks?: string[];
  memoryMiB?: number;
  cpus?: number;
}

export interface Vm {
  smtpPort: number;
  httpPort: number;
  /** Host port forwarded to the guest's SSH (22), closed there unless the panel has a key. */
  sshPort: number;
  consoleLog: string;
  /** Everything the console printed so far (since start). */
  output(): string;
  /** Resolves with the text matched once `re` matches console output printed after `from` (an offset into output()). */
  waitFor(re: RegExp, timeoutMs: number, from?: number): Promise<{ match: RegExpExecArray; end: number }>;
  /** Types a line into the console, waiting for nothing (for commands that do not come back, like reboot). */
  type(line: string): void;
  /** Types `cmd` into the root shell; resolves with its output and exit code. */
  run(cmd: string, timeoutMs?: number): Promise<{ out: string; code: number }>;
  stop(): Promise<void>;
}

export const UBOOT_QEMU = "/usr/lib/u-boot/qemu_arm64/u-boot.bin";

export async function startVm(opts: VmOptions): Promise<Vm> {
  const smtpPort = await freePort();
  const httpPort = await freePort();
  const sshPort = await freePort();
  const sock = join(opts.dir, "console.sock");
  const consoleLog = join(opts.dir, "console.log");
  const fwds = [`hostfwd=tcp:127.0.0.1:${smtpPort}-:25`, `hostfwd=tcp:127.0.0.1:${httpPort}-:80`, `hostfwd=tcp:127.0.0.1:${sshPort}-:22`];
  const args = [
    "-M", "virt", "-cpu", "cortex-a72", "-m", String(opts.memoryMiB ?? 1024), "-smp", String(opts.cpus ?? 2),
    "-bios", UBOOT_QEMU,
    "-drive", `file=${opts.image},format=raw,if=virtio,snapshot=on`,
    ...(opts.disks ?? []).flatMap((d) => ["-drive", `file=${d},format=raw,if=virtio,readonly=on`]),
    // restrict=on: the guest cannot reach the host or the outside, only the forwards below.
    "-netdev", ["user,id=n0,restrict=on", ...fwds].join(","),
    "-device", "virtio-net-pci,netdev=n0,romfile=",
    // The hardware watchdog systemd pings (RuntimeWatchdogSec), as bcm2835-wdt on a Pi.
    "-device", "i6300esb",
    "-chardev", `socket,id=con0,path=${sock},server=on,wait=off,logfile=${consoleLog}`,
    "-serial", "chardev:con0",
    "-display", "none", "-monitor", "none",
  ];
  const qemu: ChildProcess = spawn("qemu-system-aarch64", args, {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, TMPDIR: opts.dir },
  });
  let qemuErr = "";
  qemu.stdout?.on("data", (d: Buffer) => (qemuErr += d.toString()));
  qemu.stderr?.on("data", (d: Buffer) => (qemuErr += d.toString()));
  let exited: number | null | undefined;
  const waiters = new Set<() => void>();
  qemu.on("exit", (code) => {
    exited = code;
    for (const w of waiters) w();
  });

  // The socket appears once qemu is up.
  let socket: Socket | undefined;
  for (let i = 0; i < 100 && !socket; i++) {
    if (exited !== undefined) throw new Error(`qemu exited (${exited}): ${qemuErr}`);
    try {
      socket = await new Promise<Socket>((resolve, reject) => {
        const s = connect({ path: sock });
        s.once("connect", () => resolve(s));
        s.once("error", reject);
      });
    } catch {
      await Bun.sleep(100);
    }
  }
  if (!socket) {
    qemu.kill("SIGKILL");
    throw new Error(`qemu console socket never appeared: ${qemuErr}`);
  }
  let text = "";
  // Console output mixes CRLF and terminal escape sequences (systemd colours
  // "Started \e[0;1;39mletterbox.service"): both are dropped, so patterns
  // match the plain text. An escape cut by a chunk boundary waits for the next chunk.
  let partial = "";
  socket.on("data", (d: Buffer) => {
    let chunk = partial + d.toString("latin1");
    partial = "";
    const esc = chunk.lastIndexOf("\x1b");
    if (esc >= 0 && !/^\x1b(\[[0-9;:?!]*[A-Za-z@`~]|[^[])/.test(chunk.slice(esc)) && chunk.length - esc < 32) {
      partial = chunk.slice(esc);
      chunk = chunk.slice(0, esc);
    }
    text += chunk.replace(/\x1b\[[0-9;:?!]*[A-Za-z@`~]/g, "").replace(/\x1b[^[]/g, "").replace(/\r/g, "");
    for (const w of waiters) w();
  });
  socket.on("error", () => {});

  const vm: Vm = {
    smtpPort,
    httpPort,
    sshPort,
    consoleLog,
    output: () => text,
    waitFor(re, timeoutMs, from = 0) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const flags = re.flags.includes("g") ? re.flags : re.flags + "g";
          const g = new RegExp(re.source, flags);
          g.lastIndex = from;
          const m = g.exec(text);
          if (m) {
            done();
            resolve({ match: m, end: m.index + m[0].length });
          } else if (exited !== undefined) {
            done();
            reject(new Error(`qemu exited (${exited}) while waiting for ${re}: ${qemuErr}`));
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`no ${re} on the console within ${timeoutMs} ms; last output:\n${text.slice(-3000)}`));
        }, timeoutMs);
        const done = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
    type(line) {
      socket!.write(line + "\n");
    },
    async run(cmd, timeoutMs = 60_000) {
      const id = Math.random().toString(36).slice(2, 10);
      const from = text.length;
      // The echo of the typed line shows the quotes; only the command's output has the joined marker.
      socket!.write(`echo "@@B""${id}@@"; ${cmd}; echo "@@E""${id}@@ $?"\n`);
      const begin = await vm.waitFor(new RegExp(`@@B${id}@@\\n`), timeoutMs, from);
      const end = await vm.waitFor(new RegExp(`@@E${id}@@ (\\d+)`), timeoutMs, begin.end);
      const out = text.slice(begin.end, end.match.index);
      return { out, code: Number(end.match[1]) };
    },
    async stop() {
      socket!.destroy();
      if (exited === undefined) {
        const gone = new Promise<void>((r) => qemu.once("exit", () => r()));
        qemu.kill("SIGTERM");
        const t = setTimeout(() => qemu.kill("SIGKILL"), 5000);
        await gone;
        clearTimeout(t);
      }
      appendFileSync(consoleLog, "");
    },
  };
  return vm;
}
