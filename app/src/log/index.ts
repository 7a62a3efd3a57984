/**
 * Structured logging: one logfmt line per event on stdout.
 *
 * On the device stdout is the systemd journal; locally it is the terminal.
 * 1. A `Logger` carries fixed fields (room, connection id `cid`, account).
 * 2. `child()` adds fields; every line of a session carries its `cid`.
 * 3. Levels: error < warn < info < debug < trace. `trace` shows protocol lines;
 *    callers must redact secrets before logging (AUTH exchanges are never logged,
 *    see `redactedTrace`).
 */

export type Level = "error" | "warn" | "info" | "debug" | "trace";

const LEVEL_RANK: Record<Level, number> = { error: 0, warn: 1, info: 2, debug: 3, trace: 4 };

export function isLevel(s: string): s is Level {
  return s in LEVEL_RANK;
}

export type Fields = Record<string, string | number | bigint | boolean | null | undefined | Error>;

type Sink = (line: string) => void;

let globalLevel: Level = (process.env.LETTERBOX_LOG_LEVEL as Level | undefined) ?? "info";
if (!isLevel(globalLevel)) globalLevel = "info";
let sink: Sink = (line) => {
  process.stdout.write(line + "\n");
};

/** Set the level for all loggers (from config or `--loglevel`). */
export function setLogLevel(level: Level): void {
  globalLevel = level;
}

export function getLogLevel(): Level {
  return globalLevel;
}

/** Replace the output (tests capture lines with this). Returns the previous sink. */
export function setLogSink(s: Sink): Sink {
  const prev = sink;
  sink = s;
  return prev;
}

const SAFE = /^[A-Za-z0-9_.:/@+\-=,]+$/;

/** Format one logfmt value: bare when safe, quoted with escapes otherwise. */
export function logfmtValue(v: unknown): string {
  let s: string;
  if (v instanceof Error) s = v.message;
  else if (typeof v === "string") s = v;
  else s = String(v);
  if (s !== "" && SAFE.test(s)) return s;
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === '"') out += '\\"';
    else if (ch === "\\") out += "\\\\";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (c < 0x20 || c === 0x7f) out += "\\x" + c.toString(16).padStart(2, "0");
    else out += ch;
  }
  return out + '"';
}

export class Logger {
  constructor(private readonly fields: Fields = {}) {}

  child(fields: Fields): Logger {
    return new Logger({ ...this.fields, ...fields });
  }

  enabled(level: Level): boolean {
    return LEVEL_RANK[level] <= LEVEL_RANK[globalLevel];
  }

  private emit(level: Level, msg: string, fields?: Fields): void {
    if (!this.enabled(level)) return;
    let line = `time=${new Date().toISOString()} level=${level} msg=${logfmtValue(msg)}`;
    for (const src of [this.fields, fields]) {
      if (!src) continue;
      for (const k in src) {
        const v = src[k];
        if (v === undefined) continue;
        line += ` ${k}=${logfmtValue(v)}`;
      }
    }
    sink(line);
  }

  error(msg: string, fields?: Fields): void {
    this.emit("error", msg, fields);
  }
  warn(msg: string, fields?: Fields): void {
    this.emit("warn", msg, fields);
  }
  info(msg: string, fields?: Fields): void {
    this.emit("info", msg, fields);
  }
  debug(msg: string, fields?: Fields): void {
    this.emit("debug", msg, fields);
  }
  /** Protocol lines. Pass already-redacted text only. */
  trace(msg: string, fields?: Fields): void {
    this.emit("trace", msg, fields);
  }
}

export const rootLog = new Logger();

let cidCounter = 0;
const cidBase = Date.now().toString(36);
/** A short unique connection id for correlating all lines of one session. */
export function newCid(): string {
  cidCounter++;
  return `${cidBase}-${cidCounter.toString(36)}`;
}

/** The last lines written, oldest first: what the admin panel's log page shows. */
export class LogRing {
  private readonly buf: string[] = [];
  private start = 0;

  constructor(readonly capacity: number) {
    if (!Number.isSafeInteger(capacity) || capacity < 1) throw new RangeError("log ring capacity must be a positive integer");
  }

  push(line: string): void {
    if (this.buf.length < this.capacity) this.buf.push(line);
    else {
      this.buf[this.start] = line;
      this.start = (this.start + 1) % this.capacity;
    }
  }

  /** At most `limit` of the newest lines (all by default), oldest first. */
  lines(limit = this.capacity): string[] {
    const all = [...this.buf.slice(this.start), ...this.buf.slice(0, this.start)];
    return limit >= all.length ? all : all.slice(all.length - Math.max(0, limit));
  }
}

/**
 * Keep the last `capacity` log lines in a ring while every line still goes
 * to the sink that was in place (chained through setLogSink). `stop()` puts
 * that sink back.
 */
export function startLogRing(capacity = 2000): { ring: LogRing; stop(): void } {
  const ring = new LogRing(capacity);
  const prev = setLogSink((line) => {
    ring.push(line);
    prev(line);
  });
  return { ring, stop: () => void setLogSink(prev) };
}
