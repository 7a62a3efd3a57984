/**
 * Drives agent.ts (our queue, inside the client namespace) from the test
 * process: one JSON command per line out, one JSON answer per line back.
 *
 * 1. `startAgent(world, transport)` writes the agent's config into a new
 *    temp folder and starts `ip netns exec CLIENT bun agent.ts CONFIG`.
 * 2. `call(cmd)` sends a command and resolves with its result (rejects with
 *    the agent's error, or with its stderr when it died).
 * 3. `stop()` asks the agent to stop (the store is verified there), kills it
 *    if it does not exit, and removes the folder. Safe to call twice.
 */
import { join } from "node:path";
import { writeFileSync } from "node:fs";
import { tmpDir } from "../../helpers/tmp.ts";
import type { AgentCommand, AgentConfig, AgentTransport } from "./agent.ts";
import type { World } from "./world.ts";

export interface QueuedRecipientJson {
  id: number;
  attempts: number;
  nextAttempt: string;
  lastError: string | null;
}

export interface Agent {
  call<T = unknown>(cmd: AgentCommand): Promise<T>;
  /** The agent's log so far. */
  stderr(): string;
  /** Stops the agent; resolves with the store problems verifyData found (empty when consistent). */
  stop(): Promise<unknown[]>;
}

export async function startAgent(world: World, transport: AgentTransport): Promise<Agent> {
  const tmp = tmpDir("outgoing-agent");
  const config: AgentConfig = { dir: join(tmp.path, "data"), resolver: world.resolver, transport };
  const configFile = join(tmp.path, "config.json");
  writeFileSync(configFile, JSON.stringify(config));
  const proc = Bun.spawn([...world.client.wrap, process.execPath, join(import.meta.dir, "agent.ts"), configFile], {
    stdin: "pipe",
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, LETTERBOX_LOG_LEVEL: "debug" },
  });
  let err = "";
  void (async () => {
    const d = new TextDecoder();
    for await (const chunk of proc.stderr) err += d.decode(chunk, { stream: true });
  })();
  const waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  let dead: Error | null = null;
  void (async () => {
    const d = new TextDecoder();
    let buf = "";
    for await (const chunk of proc.stdout) {
      buf += d.decode(chunk, { stream: true });
      let i: number;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (!line.trim()) continue;
        const a = JSON.parse(line) as { seq: number; ok: boolean; result?: unknown; error?: string };
        const w = waiting.get(a.seq);
        waiting.delete(a.seq);
        if (a.ok) w?.resolve(a.result);
        else w?.reject(new Error(`agent: ${a.error}`));
      }
    }
  })();
  void proc.exited.then((code) => {
    dead = new Error(`agent exited ${code}:\n${err.slice(-4000)}`);
    for (const w of waiting.values()) w.reject(dead);
    waiting.clear();
  });
  let next = 1;
  const call = <T>(cmd: AgentCommand): Promise<T> => {
    if (dead) return Promise.reject(dead);
    const seq = next++;
    return new Promise<T>((resolve, reject) => {
      waiting.set(seq, { resolve: resolve as (v: unknown) => void, reject });
      proc.stdin.write(JSON.stringify({ ...cmd, seq }) + "\n");
      proc.stdin.flush();
    });
  };
  let stopped: Promise<unknown[]> | null = null;
  const stop = () =>
    (stopped ??= (async () => {
      let problems: unknown[] = [];
      try {
        if (!dead) {
          const r = await Promise.race([call<{ problems: unknown[] }>({ op: "stop" }), Bun.sleep(15_000).then(() => null)]);
          if (r) problems = r.problems;
        }
      } catch {}
      if (proc.exitCode === null) {
        const t = setTimeout(() => proc.kill("SIGKILL"), 5_000);
        proc.kill("SIGTERM");
        await proc.exited;
        clearTimeout(t);
      }
      tmp.cleanup();
      return problems;
    })());
  return { call, stderr: () => err, stop };
}
