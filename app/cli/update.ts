/**
 * `letterbox update apply|status|commit`: the device side of signed A/B
 * updates (app/src/system/update.ts tells the flow). Every path has the
 * appliance's default and a flag, so tests run the same code on files.
 */
import { parseArgs } from "node:util";
import { readFile } from "node:fs/promises";
import { applyUpdate, commitBoot, updateStatus, type UpdateDevice } from "../src/system/update.ts";
import { formatProgress, formatRate, openDownload } from "../src/system/download.ts";
import type { ChunkSource } from "../src/system/bundle.ts";
import { UpdateError } from "../src/system/errors.ts";
import { UBootEnvBootControl } from "../src/system/boot-control.ts";
import { nodeSystemIo } from "../src/system/io.ts";
import { DEFAULT_KEYS_DIR, loadTrustedKeys } from "../src/system/keys.ts";
import { boardFromCompatible, bootedSlotFromCmdline, layoutFromCmdline, parseLayout } from "../src/system/slots.ts";
import { checkHealth, listenerProbe, resolverProbe, serviceActiveProbe, storeOpensProbe, type HealthProbe } from "../src/system/health.ts";
import { rootLog } from "../src/log/index.ts";
import { DEFAULT_ENV_FILE, DEFAULT_STATE_DIR } from "../src/system/index.ts";
import { readRequestResult, resultIsRunning, runUpdateRequest, type UpdateRequestResult } from "../src/system/update-request.ts";

const HELP = `usage: letterbox update apply FILE|URL [--reboot] [--retries N] [--stall-timeout SECONDS] [device options]
       letterbox update apply --from-request FILE [--retries N] [--stall-timeout SECONDS] [device options]
       letterbox update status [--json] [device options]
       letterbox update commit [--probes LIST] [--reboot-on-failure] [device options]

apply    Verify a signed update bundle (a file, or an http(s) URL read as a
         stream) and write it into the slot that is not running: signature by
         a key in the key directory, security counter not below the installed
         one, this board, not expired, images that fit. Nothing is written
         before all of that holds. The images are hashed while written; only
         when both match is the slot armed for one trial boot. --reboot
         reboots into it at once; otherwise the next reboot does.
         A download that drops or stalls resumes with an HTTP Range request
         where it stopped (--retries fruitless attempts in a row, default 8;
         --stall-timeout SECONDS without data counts as a drop, default 30).
         --from-request FILE: install the update asked for in the panel
         (admin → System; run as root by letterbox-update.service): the
         request is removed first (a crash never runs it twice), its URL
         checked again, applied as above, the outcome recorded in
         request-result.json in the state directory; it reboots when the
         request asked to. No request: nothing to do, exit 0.
status   Print the running slot, the boot order and tries, the installed
         versions, the security counter, the last update's result, and an
         apply in progress (octets, rate, resumed attempts).
commit   Run the health check (service ready, store opens, unbound answers,
         listeners up) and, when it passes, make the running slot the default.
         After a failed trial on the other slot, record the rollback.
         Run by letterbox-health.service at every boot. Exit 1 when unhealthy;
         with --reboot-on-failure an unhealthy trial boot reboots to the old slot.

Device options (defaults are the appliance's):
  --keys DIR          trusted public keys *.pub (${DEFAULT_KEYS_DIR})
  --state DIR         update state on the data partition (${DEFAULT_STATE_DIR})
  --env FILE          U-Boot environment file (${DEFAULT_ENV_FILE})
  --env-redundant FILE  its second copy, if U-Boot keeps two
  --cmdline FILE      kernel command line (/proc/cmdline): running slot, disk
  --slots FILE        slot layout as JSON instead of the command line's disk
  --board NAME        board name instead of /proc/device-tree/compatible
  --config FILE       letterbox config for commit's probes (/data/letterbox/letterbox.toml)
  --probes LIST       commit's probes, comma-separated: service,store,dns,listeners (all)
  --deadline SECONDS  how long commit retries failing probes (120)
`;

interface Flags {
  keys?: string;
  state?: string;
  env?: string;
  "env-redundant"?: string;
  cmdline?: string;
  slots?: string;
  board?: string;
  config?: string;
  probes?: string;
  deadline?: string;
  retries?: string;
  "stall-timeout"?: string;
  json?: boolean;
  reboot?: boolean;
  "reboot-on-failure"?: boolean;
  "from-request"?: string;
  help?: boolean;
}

class UsageError extends Error {}

/** The running device as the update code sees it (flags override /proc paths); throws UpdateError "device" off the device. */
export async function device(f: Flags = {}): Promise<UpdateDevice> {
  const cmdline = await readFile(f.cmdline ?? "/proc/cmdline", "utf8");
  const booted = bootedSlotFromCmdline(cmdline);
  if (!booted) throw new UpdateError("device", "the kernel command line has no letterbox.slot=A|B: not booted by the Letterbox boot script");
  const layout = f.slots ? parseLayout(await readFile(f.slots, "utf8")) : layoutFromCmdline(cmdline);
  let board = f.board ?? null;
  if (!board) {
    const compat = await readFile("/proc/device-tree/compatible", "utf8").catch(() => "");
    board = boardFromCompatible(compat);
    if (!board) throw new UpdateError("device", "unknown board (no /proc/device-tree/compatible we know): pass --board");
  }
  const envPath = f.env ?? DEFAULT_ENV_FILE;
  return {
    io: nodeSystemIo,
    boot: new UBootEnvBootControl(nodeSystemIo, f["env-redundant"] ? { path: envPath, redundantPath: f["env-redundant"] } : { path: envPath }),
    layout,
    booted,
    board,
    keys: await loadTrustedKeys(f.keys ?? DEFAULT_KEYS_DIR),
    stateDir: f.state ?? DEFAULT_STATE_DIR,
    log: rootLog.child({ room: "update" }),
  };
}

/** The bundle as a stream: a file read in chunks, or an HTTP download that resumes (system/download.ts). */
async function openSource(src: string, f: Flags, dev: UpdateDevice): Promise<ReadableStream<Uint8Array> | ChunkSource> {
  if (/^https?:\/\//i.test(src)) {
    const num = (v: string | undefined, name: string) => {
      if (v === undefined) return undefined;
      const n = Number(v);
      if (!Number.isFinite(n) || n < 0) throw new UsageError(`--${name} takes a non-negative number`);
      return n;
    };
    const stall = num(f["stall-timeout"], "stall-timeout");
    return openDownload(src, { retries: num(f.retries, "retries"), stallMs: stall === undefined ? undefined : Math.max(100, stall * 1000), log: dev.log });
  }
  const file = Bun.file(src);
  if (!(await file.exists())) throw new UsageError(`${src}: no such file`);
  return file.stream();
}

/**
 * `apply --from-request FILE` (update-request.ts runUpdateRequest): exit 0
 * when there was no request or the update is armed, 1 when it was refused
 * or failed (the reason is in the journal and in request-result.json).
 */
async function applyFromRequest(path: string, f: Flags): Promise<number> {
  const log = rootLog.child({ room: "update" });
  const out = await runUpdateRequest({
    io: nodeSystemIo,
    requestPath: path,
    stateDir: f.state ?? DEFAULT_STATE_DIR,
    device: () => device(f),
    open: (url, dev) => openSource(url, f, dev),
    reboot,
    log,
  });
  if (out === null) {
    process.stdout.write(`no update request in ${path}\n`);
    return 0;
  }
  if (out.result === "armed") {
    process.stdout.write(`update ${out.version ?? "?"} from ${out.url ?? "?"} written to slot ${out.slot ?? "?"}; armed for one trial boot${out.rebooting ? "; rebooting" : "; reboot to start it"}\n`);
    return 0;
  }
  process.stderr.write(`letterbox update apply --from-request: ${out.result}${out.code ? `: ${out.code}` : ""}: ${out.reason ?? ""}\n`);
  return 1;
}

async function reboot(): Promise<void> {
  const p = Bun.spawn(["systemctl", "reboot"], { stdio: ["ignore", "inherit", "inherit"] });
  await p.exited;
}

async function probesFor(f: Flags): Promise<HealthProbe[]> {
  const want = new Set((f.probes ?? "service,store,dns,listeners").split(",").map((s) => s.trim()).filter((s) => s !== ""));
  for (const w of want) if (!["service", "store", "dns", "listeners"].includes(w)) throw new UsageError(`unknown probe ${JSON.stringify(w)}`);
  const probes: HealthProbe[] = [];
  if (want.has("service")) probes.push(serviceActiveProbe("letterbox.service"));
  if (want.has("store") || want.has("listeners") || want.has("dns")) {
    const { loadConfig } = await import("../src/config/load.ts");
    const config = await loadConfig(f.config ?? "/data/letterbox/letterbox.toml");
    if (want.has("store")) probes.push(storeOpensProbe(config.dataDir));
    if (want.has("dns")) {
      const s = config.dns?.servers[0] ?? { host: "127.0.0.1", port: 53 };
      probes.push(resolverProbe(s.host, s.port));
    }
    if (want.has("listeners")) {
      for (const l of config.listeners) {
        const ports = [l.smtp, l.submission, l.submissions, l.imap, l.imaps, l.http, l.https].filter((p) => p !== undefined).map((p) => p.port);
        for (const ip of l.ips) {
          // A wildcard listener answers on loopback.
          const host = ip === "0.0.0.0" ? "127.0.0.1" : ip === "::" ? "::1" : ip;
          for (const port of ports) probes.push(listenerProbe(port, host));
        }
      }
    }
  }
  return probes;
}

function printStatus(s: Awaited<ReturnType<typeof updateStatus>>, request: UpdateRequestResult | null): void {
  const lines = [
    `running slot: ${s.booted} (board ${s.board})`,
    `boot order:   ${s.boot.order.join(" ") || "(none)"}; tries left A=${s.boot.left.A} B=${s.boot.left.B}${s.boot.stored ? "" : " (environment missing: boot script defaults)"}`,
    `security counter: ${s.counter}`,
  ];
  for (const slot of ["A", "B"] as const) {
    const r = s.slots[slot];
    lines.push(`slot ${slot}: ${r ? `${r.version} (counter ${r.counter}, installed ${r.installedAt})` : "factory image or unknown"}`);
  }
  if (s.running) {
    const r = s.running;
    const what = r.phase === "verifying" ? "verifying the bundle" : `writing ${r.version ?? "?"} to slot ${r.slot}${r.image ? ` (image ${r.image})` : ""}`;
    lines.push(`running apply: ${what} from ${r.source}, process ${r.pid}`);
    const dl = r.attempt !== undefined ? `; attempt ${r.attempt}, ${r.resumes ?? 0} resumed, ${r.restarts ?? 0} restarted${r.lastError ? `; last error: ${r.lastError}` : ""}` : "";
    lines.push(`  ${r.attempt !== undefined ? "downloaded" : "read"}: ${formatProgress(r.position, r.total)} at ${formatRate(r.rate)}${dl}`);
  }
  if (s.pending) lines.push(`pending: ${s.pending.version} in slot ${s.pending.slot} (${s.pending.phase === "written" ? "armed for a trial boot" : "being written"})`);
  if (s.last) {
    const what = [s.last.code ? `${s.last.result} (${s.last.code})` : s.last.result, s.last.version, s.last.slot ? `slot ${s.last.slot}` : undefined, s.last.at].filter(Boolean).join(", ");
    lines.push(`last update: ${what}${s.last.reason ? `: ${s.last.reason}` : ""}`);
  } else lines.push("last update: none");
  if (request) {
    const live = request.result !== "running" || resultIsRunning(request);
    const what = live ? request.result : "interrupted";
    lines.push(`last panel request: ${what}${request.code ? ` (${request.code})` : ""}, ${request.url ?? "?"} by ${request.requestedBy ?? "?"} at ${request.requestedAt ?? "?"}${request.version ? `, version ${request.version}` : ""}${request.reason ? `: ${request.reason}` : ""}`);
  }
  process.stdout.write(lines.join("\n") + "\n");
}

export async function run(args: string[]): Promise<number> {
  let f: Flags;
  let positionals: string[];
  try {
    const parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        keys: { type: "string" },
        state: { type: "string" },
        env: { type: "string" },
        "env-redundant": { type: "string" },
        cmdline: { type: "string" },
        slots: { type: "string" },
        board: { type: "string" },
        config: { type: "string" },
        probes: { type: "string" },
        deadline: { type: "string" },
        retries: { type: "string" },
        "stall-timeout": { type: "string" },
        json: { type: "boolean" },
        reboot: { type: "boolean" },
        "reboot-on-failure": { type: "boolean" },
        "from-request": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    });
    f = parsed.values;
    positionals = parsed.positionals;
  } catch (e) {
    process.stderr.write(`letterbox update: ${(e as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (f.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const [sub, ...rest] = positionals;
  try {
    switch (sub) {
      case "apply": {
        if (f["from-request"] !== undefined) {
          if (rest.length !== 0) throw new UsageError("apply --from-request takes no FILE or URL");
          return await applyFromRequest(f["from-request"], f);
        }
        if (rest.length !== 1) throw new UsageError("apply takes one FILE or URL");
        const dev = await device(f);
        const out = await applyUpdate(dev, await openSource(rest[0]!, f, dev), { statusFile: true, sourceName: rest[0]! });
        process.stdout.write(`update ${out.manifest.version} (counter ${out.manifest.counter}, signed by ${out.signedBy}) written to slot ${out.slot}; armed for one trial boot\n`);
        if (f.reboot) await reboot();
        else process.stdout.write("reboot to start it\n");
        return 0;
      }
      case "status": {
        if (rest.length !== 0) throw new UsageError("status takes no arguments");
        const s = await updateStatus(await device(f));
        // The panel's last request (update-request.ts), beside the CLI's own status.
        const request = await readRequestResult(nodeSystemIo, f.state ?? DEFAULT_STATE_DIR);
        if (f.json) process.stdout.write(JSON.stringify({ ...s, request }, null, 2) + "\n");
        else printStatus(s, request);
        return 0;
      }
      case "commit": {
        if (rest.length !== 0) throw new UsageError("commit takes no arguments");
        const dev = await device(f);
        const deadline = f.deadline === undefined ? 120 : Number(f.deadline);
        if (!Number.isFinite(deadline) || deadline < 0) throw new UsageError("--deadline takes seconds");
        const report = await checkHealth(await probesFor(f), { deadlineMs: deadline * 1000, intervalMs: Math.min(2000, Math.max(100, deadline * 100)) });
        for (const r of report.results) process.stdout.write(`${r.ok ? "ok  " : "FAIL"} ${r.name}${r.ok ? "" : `: ${r.detail}`}\n`);
        const out = await commitBoot(dev, report.ok, report.reason);
        process.stdout.write(out.message + "\n");
        if (out.action === "reboot" && f["reboot-on-failure"]) await reboot();
        return report.ok && out.action !== "reboot" ? 0 : 1;
      }
      default:
        throw new UsageError(sub === undefined ? "missing apply, status or commit" : `unknown subcommand ${JSON.stringify(sub)}`);
    }
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`letterbox update: ${e.message}\n\n${HELP}`);
      return 2;
    }
    if (e instanceof UpdateError) {
      process.stderr.write(`letterbox update ${sub}: ${e.code}: ${e.message}\n`);
      return 1;
    }
    process.stderr.write(`letterbox update: ${(e as Error).message}\n`);
    return 1;
  }
}
