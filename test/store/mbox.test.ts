import { test, expect } from "bun:test";
import fc from "fast-check";
import { asctime, flagsFromHeaders, mboxrdRecord, parseFromLineDate, parseMboxrd, MboxError, type MboxMessage } from "../../app/src/store/mbox.ts";
import { dec, enc } from "./helpers.ts";

async function parseAll(chunks: Uint8Array[]): Promise<MboxMessage[]> {
  const out: MboxMessage[] = [];
  for await (const m of parseMboxrd(chunks)) out.push(m);
  return out;
}

test("asctime and From_ line dates (RFC 4155)", () => {
  const d = new Date("1993-06-09T21:49:08Z");
  expect(asctime(d)).toBe("Wed Jun  9 21:49:08 1993");
  expect(parseFromLineDate(`From MAILER-DAEMON ${asctime(d)}`)?.getTime()).toBe(d.getTime());
  expect(parseFromLineDate("From someone@example.org Sat Jan  3 01:05:34 1996")?.toISOString()).toBe("1996-01-03T01:05:34.000Z");
  expect(parseFromLineDate("From x garbage")).toBeUndefined();
});

test("mboxrd quoting: every /^>*From / line gets one more >, and reading removes exactly one", async () => {
  const cases: [string, string][] = [
    ["From here\r\n", ">From here\n"],
    [">From here\r\n", ">>From here\n"],
    [">>From here\r\n", ">>>From here\n"],
    ["From: header-like\r\n", "From: header-like\n"],
    ["Fromage\r\n", "Fromage\n"],
    [" From indented\r\n", " From indented\n"],
    [">not from\r\n", ">not from\n"],
  ];
  for (const [line, quoted] of cases) {
    const data = enc(`Subject: q\r\n\r\n${line}`);
    const rec = dec(mboxrdRecord(data, new Date(0)));
    expect(rec).toBe(`From MAILER-DAEMON Thu Jan  1 00:00:00 1970\nSubject: q\n\n${quoted}\n`);
    const [m] = await parseAll([enc(rec)]);
    expect(dec(m!.data)).toBe(dec(data));
  }
});

test("parse: separators, LF to CRLF, missing final newline, several messages, received dates", async () => {
  const text = "From a Mon Jan  1 00:00:00 2024\nSubject: 1\n\nbody1\n\nFrom b Tue Jan  2 00:00:00 2024\nSubject: 2\n\n>From quoted\nlast line";
  const ms = await parseAll([enc(text)]);
  expect(ms.map((m) => dec(m.data))).toEqual(["Subject: 1\r\n\r\nbody1\r\n", "Subject: 2\r\n\r\nFrom quoted\r\nlast line\r\n"]);
  expect(ms[1]!.receivedAt?.toISOString()).toBe("2024-01-02T00:00:00.000Z");
  expect(await parseAll([])).toEqual([]);
  expect(await parseAll([enc("\n\n")])).toEqual([]);
  await expect(parseAll([enc("Subject: not mbox\n\nbody\n")])).rejects.toBeInstanceOf(MboxError);
});

test("flags from Status/X-Status/X-Keywords headers", () => {
  const m = enc("Status: RO\r\nX-Status: AF\r\nX-Keywords: $Junk, work\r\nSubject: x\r\n\r\nStatus: ignored in body\r\n");
  expect(flagsFromHeaders(m)).toEqual({ flags: ["\\Seen", "\\Answered", "\\Flagged"], keywords: ["$Junk", "work"] });
  expect(flagsFromHeaders(enc("Subject: x\r\n\r\nStatus: R\r\n"))).toEqual({ flags: [], keywords: [] });
});

test("property: any CRLF messages survive export + import, however the stream is chunked", async () => {
  const line = fc.oneof(
    fc.constantFrom("From x", ">From y", ">>From z", "", "From", "From:", ".", "a\tb"),
    fc.string({ unit: fc.constantFrom("a", "F", "r", "o", "m", " ", ">", "é", "\t"), maxLength: 12 }),
  );
  const msg = fc.array(line, { minLength: 1, maxLength: 8 }).map((ls) => enc(ls.map((l) => l + "\r\n").join("")));
  await fc.assert(
    fc.asyncProperty(fc.array(msg, { minLength: 1, maxLength: 4 }), fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 10 }), async (msgs, cuts) => {
      const parts = msgs.map((m) => mboxrdRecord(m, new Date(86400_000)));
      const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
      let o = 0;
      for (const p of parts) {
        all.set(p, o);
        o += p.length;
      }
      const chunks: Uint8Array[] = [];
      let pos = 0;
      for (let i = 0; pos < all.length; i++) {
        const n = cuts[i % cuts.length]!;
        chunks.push(all.subarray(pos, pos + n));
        pos += n;
      }
      const back = await parseAll(chunks);
      expect(back.map((m) => dec(m.data))).toEqual(msgs.map(dec));
    }),
    { numRuns: 200 },
  );
});

test("export writes Status/X-Status/X-Keywords in front of the header; import reads and removes them", async () => {
  const data = enc("Subject: s\r\nFrom: a@example.org\r\n\r\nStatus: RO stays in the body\r\n");
  const rec = dec(mboxrdRecord(data, new Date(0), undefined, { flags: ["\\Seen", "\\Flagged", "\\Answered"], keywords: ["$Junk", "work"] }));
  expect(rec).toBe(
    "From MAILER-DAEMON Thu Jan  1 00:00:00 1970\nStatus: RO\nX-Status: AF\nX-Keywords: $Junk work\nSubject: s\nFrom: a@example.org\n\nStatus: RO stays in the body\n\n",
  );
  const [m] = await parseAll([enc(rec)]);
  expect(dec(m!.data)).toBe(dec(data));
  expect(m!.flags.sort()).toEqual(["\\Answered", "\\Flagged", "\\Seen"]);
  expect(m!.keywords).toEqual(["$Junk", "work"]);
  // unread, no keywords: only "Status: O" (seen by the client as old, unread)
  const plain = dec(mboxrdRecord(data, new Date(0), undefined, { flags: [], keywords: [] }));
  expect(plain.split("\n")[1]).toBe("Status: O");
  const [p] = await parseAll([enc(plain)]);
  expect(p!.flags).toEqual([]);
  expect(dec(p!.data)).toBe(dec(data));
});

test("import: Thunderbird's X-Mozilla-Status and -Keys, folded metadata fields, a message without header", async () => {
  const text = "From - Mon Jan  1 00:00:00 2024\nX-Mozilla-Status: 0005\nX-Mozilla-Status2: 00000000\nX-Mozilla-Keys: todo\nX-Keywords: a,\n b\nSubject: t\n\nbody\n\nFrom - Mon Jan  1 00:00:00 2024\n\nStatus: R\n";
  const [a, b] = await parseAll([enc(text)]);
  expect(dec(a!.data)).toBe("Subject: t\r\n\r\nbody\r\n");
  expect(a!.flags.sort()).toEqual(["\\Flagged", "\\Seen"]);
  expect(a!.keywords.sort()).toEqual(["a", "b", "todo"]);
  expect(dec(b!.data)).toBe("\r\nStatus: R\r\n"); // no header: the body's "Status:" line is content
  expect(b!.flags).toEqual([]);
});
