/**
 * Maildir, for export and import.
 *
 * A maildir is a directory with tmp/, new/ and cur/; each message is one file
 * (https://cr.yp.to/proto/maildir.html). A message in cur/ carries its flags
 * after ":2," in its file name, as letters in ASCII order: D draft, F flagged,
 * P passed (forwarded), R replied, S seen, T trashed (\Deleted). Keywords are
 * the lower-case letters a..z, numbered by the `dovecot-keywords` file ("0
 * $Junk" = a), Dovecot's convention, which other tools read too.
 *
 * Export writes the stored bytes unchanged (CRLF) into cur/ and sets each
 * file's mtime to the received date; import reads new/ and cur/, converts bare
 * LF line endings to CRLF (RFC 5322 §2.1) and takes the received date from
 * the mtime. So export then import keeps every byte, the flags, up to 26
 * keywords and the received date (to the second).
 */
import { mkdir, open, readdir, readFile, stat, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";

const LETTERS: readonly [string, string][] = [
  ["D", "\\Draft"],
  ["F", "\\Flagged"],
  ["P", "$Forwarded"],
  ["R", "\\Answered"],
  ["S", "\\Seen"],
  ["T", "\\Deleted"],
];

export interface MaildirMessage {
  data: Uint8Array;
  receivedAt: Date;
  flags: string[];
  keywords: string[];
}

/** Writes messages into a maildir, creating tmp/, new/ and cur/. Call finish() at the end. */
export class MaildirWriter {
  private keywordIndex = new Map<string, number>();
  private keywordNames: string[] = [];
  private seq = 0;

  private constructor(readonly dir: string) {}

  static async create(dir: string): Promise<MaildirWriter> {
    for (const sub of ["tmp", "new", "cur"]) await mkdir(join(dir, sub), { recursive: true });
    return new MaildirWriter(dir);
  }

  /** Letters for flags and keywords; keywords beyond the 26 letters are dropped (reported via return). */
  private suffix(flags: string[], keywords: string[]): { info: string; dropped: string[] } {
    const set = new Set([...flags, ...keywords].map((f) => f.toLowerCase()));
    let info = "";
    for (const [letter, name] of LETTERS) if (set.has(name.toLowerCase())) info += letter;
    const dropped: string[] = [];
    const kw: string[] = [];
    for (const k of keywords) {
      if (k.toLowerCase() === "$forwarded") continue;
      let i = this.keywordIndex.get(k.toLowerCase());
      if (i === undefined && this.keywordNames.length < 26) {
        i = this.keywordNames.length;
        this.keywordNames.push(k);
        this.keywordIndex.set(k.toLowerCase(), i);
      }
      if (i === undefined) dropped.push(k);
      else kw.push(String.fromCharCode(0x61 + i));
    }
    return { info: info + kw.sort().join(""), dropped };
  }

  /** Add one message to cur/; returns its file name and the keywords that did not fit. */
  async add(m: MaildirMessage, uniq: string): Promise<{ name: string; dropped: string[] }> {
    const { info, dropped } = this.suffix(m.flags, m.keywords);
    const secs = Math.floor(m.receivedAt.getTime() / 1000);
    const name = `${secs}.${uniq}_${++this.seq}.letterbox:2,${info}`;
    const path = join(this.dir, "cur", name);
    const fh = await open(path, "wx", 0o600);
    try {
      await fh.writeFile(m.data);
    } finally {
      await fh.close();
    }
    await utimes(path, m.receivedAt, m.receivedAt);
    return { name, dropped };
  }

  /** Write dovecot-keywords (when keywords were used). */
  async finish(): Promise<void> {
    if (this.keywordNames.length === 0) return;
    await writeFile(join(this.dir, "dovecot-keywords"), this.keywordNames.map((k, i) => `${i} ${k}\n`).join(""));
  }
}

/** Bare LF → CRLF; CRLF stays. */
export function toCRLF(data: Uint8Array): Uint8Array {
  let bare = 0;
  for (let i = 0; i < data.length; i++) if (data[i] === 0x0a && (i === 0 || data[i - 1] !== 0x0d)) bare++;
  if (bare === 0) return data;
  const out = new Uint8Array(data.length + bare);
  let o = 0;
  for (let i = 0; i < data.length; i++) {
    if (data[i] === 0x0a && (i === 0 || data[i - 1] !== 0x0d)) out[o++] = 0x0d;
    out[o++] = data[i]!;
  }
  return out;
}

/** Parse the flags part of a maildir file name ("...:2,FRS"), with dovecot keyword letters. */
export function flagsFromName(name: string, keywordNames: Map<string, string>): { flags: string[]; keywords: string[] } {
  const i = name.lastIndexOf(":2,");
  const flags: string[] = [];
  const keywords: string[] = [];
  if (i === -1) return { flags, keywords };
  for (const ch of name.slice(i + 3)) {
    const sys = LETTERS.find(([l]) => l === ch);
    if (sys) {
      if (sys[1].startsWith("\\")) flags.push(sys[1]);
      else keywords.push(sys[1]);
    } else if (ch >= "a" && ch <= "z") {
      const k = keywordNames.get(ch);
      if (k) keywords.push(k);
    }
  }
  return { flags, keywords };
}

/** Read a maildir's messages: new/ (no flags) then cur/, each in file-name order. */
export async function* readMaildir(dir: string): AsyncGenerator<MaildirMessage & { name: string }> {
  const kwNames = new Map<string, string>();
  try {
    const text = await readFile(join(dir, "dovecot-keywords"), "utf8");
    for (const line of text.split("\n")) {
      const m = /^(\d+) (.+)$/.exec(line.trim());
      if (m && Number(m[1]) < 26) kwNames.set(String.fromCharCode(0x61 + Number(m[1])), m[2]!);
    }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
  }
  let found = false;
  for (const sub of ["new", "cur"]) {
    let names: string[];
    try {
      names = await readdir(join(dir, sub));
      found = true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") continue;
      throw e;
    }
    names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    for (const name of names) {
      if (name.startsWith(".")) continue;
      const path = join(dir, sub, name);
      const st = await stat(path);
      if (!st.isFile()) continue;
      const data = toCRLF(new Uint8Array(await readFile(path)));
      const { flags, keywords } = sub === "cur" ? flagsFromName(name, kwNames) : { flags: [], keywords: [] };
      yield { name, data, receivedAt: st.mtime, flags, keywords };
    }
  }
  if (!found) throw new Error(`${dir} is not a maildir: no new/ or cur/`);
}
