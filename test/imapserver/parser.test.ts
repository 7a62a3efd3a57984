import { test, expect, describe } from "bun:test";
import fc from "fast-check";
import {
  CommandReader,
  errorResponse,
  ImapParseError,
  parseCommand,
  type Command,
  type ReaderEvent,
  type SearchKey,
} from "../../app/src/imapserver/parser.ts";
import { formatSequenceSet, parseSequenceSet } from "../../app/src/imapserver/sequence.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Feed all bytes at once and collect events until the reader needs more. */
function drain(r: CommandReader): ReaderEvent[] {
  const out: ReaderEvent[] = [];
  let ev: ReaderEvent | null;
  while ((ev = r.next()) !== null) out.push(plain(ev));
  return out;
}

/** Errors as plain objects, so matchers compare their fields. */
function plain(ev: ReaderEvent): ReaderEvent {
  if (ev.kind !== "error") return ev;
  expect(ev.error).toBeInstanceOf(ImapParseError);
  const { bad, tag, code, message } = ev.error;
  return { kind: "error", error: { bad, tag, code, message } as ImapParseError };
}

function feed(input: string | Uint8Array, limits: ConstructorParameters<typeof CommandReader>[0] = {}): ReaderEvent[] {
  const r = new CommandReader(limits);
  r.push(typeof input === "string" ? enc.encode(input) : input);
  return drain(r);
}

/** Feed byte by byte, draining after each byte. */
function feedBytewise(input: Uint8Array, limits: ConstructorParameters<typeof CommandReader>[0] = {}): ReaderEvent[] {
  const r = new CommandReader(limits);
  const out: ReaderEvent[] = [];
  for (let i = 0; i < input.length; i++) {
    r.push(input.subarray(i, i + 1));
    out.push(...drain(r));
  }
  return out;
}

function errOf(f: () => unknown): ImapParseError {
  try {
    f();
  } catch (e) {
    if (e instanceof ImapParseError) return e;
    throw e;
  }
  throw new Error("expected ImapParseError");
}

/** Stable JSON for events (bigint, bytes). */
function norm(v: unknown): unknown {
  return JSON.parse(
    JSON.stringify(v, (_k, x) => (typeof x === "bigint" ? `${x}n` : x instanceof Uint8Array ? `bytes:${dec.decode(x)}` : x instanceof Date ? x.toISOString() : x)),
  );
}

describe("simple commands", () => {
  const table: [string, Partial<Command>][] = [
    ["a CAPABILITY", { tag: "a", name: "CAPABILITY", uid: false, args: {} }],
    ["A1 noop", { tag: "A1", name: "NOOP", args: {} }],
    ["x.y] LOGOUT", { tag: "x.y]", name: "LOGOUT" }],
    ["1 STARTTLS", { name: "STARTTLS" }],
    ["t NAMESPACE", { name: "NAMESPACE" }],
    ["t IDLE", { name: "IDLE" }],
    ["t CHECK", { name: "CHECK" }],
    ["t CLOSE", { name: "CLOSE" }],
    ["t UNSELECT", { name: "UNSELECT" }],
    ["t EXPUNGE", { name: "EXPUNGE", uid: false, args: { set: null } }],
  ];
  for (const [line, want] of table) {
    test(line, () => {
      expect(parseCommand(line)).toMatchObject(want);
    });
  }
});

describe("commands with arguments", () => {
  const table: [string, unknown][] = [
    ['a LOGIN "user name" {8}', null], // literal without data: handled by reader tests
    ['a LOGIN "us\\"er" p\\ss', null],
    ["a LOGIN mox@localhost \"test\\\\pw\"", { username: "mox@localhost", password: "test\\pw" }],
    ["a ENABLE CONDSTORE utf8=accept", { capabilities: ["CONDSTORE", "UTF8=ACCEPT"] }],
    ["a AUTHENTICATE PLAIN", { mechanism: "PLAIN", initialResponse: null }],
    ["a AUTHENTICATE plain =", { mechanism: "PLAIN", initialResponse: new Uint8Array(0) }],
    ["a AUTHENTICATE PLAIN AGEAYg==", { mechanism: "PLAIN", initialResponse: Uint8Array.from([0, 97, 0, 98]) }],
    ["a SELECT inbox", { mailbox: "inbox", condstore: false, qresync: null }],
    ["a EXAMINE \"Sent Items\" (CONDSTORE)", { mailbox: "Sent Items", condstore: true, qresync: null }],
    [
      "a SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))",
      {
        mailbox: "INBOX",
        condstore: false,
        qresync: {
          uidValidity: 67890007,
          modSeq: 20050715194045000n,
          knownUids: parseSequenceSet("41,43:211,214:541"),
          seqMatch: null,
        },
      },
    ],
    [
      "a SELECT INBOX (QRESYNC (1 2 (1:3 5:7)))",
      { qresync: { uidValidity: 1, modSeq: 2n, knownUids: null, seqMatch: { seqs: parseSequenceSet("1:3"), uids: parseSequenceSet("5:7") } } },
    ],
    ["a CREATE Drafts (USE (\\Drafts \\Sent))", { mailbox: "Drafts", specialUse: ["\\Drafts", "\\Sent"] }],
    ["a CREATE a/b", { mailbox: "a/b", specialUse: [] }],
    ["a DELETE x", { mailbox: "x" }],
    ["a RENAME a \"b c\"", { from: "a", to: "b c" }],
    ["a SUBSCRIBE &AOQ-", { mailbox: "&AOQ-" }],
    ["a UNSUBSCRIBE \"ä\"", { mailbox: "ä" }],
    [
      'a LIST "" *',
      { reference: "", patterns: ["*"], selectOptions: [], extended: false, returnOptions: { subscribed: false, children: false, specialUse: false, status: null } },
    ],
    ["a LIST \"\" %/]x", { patterns: ["%/]x"] }],
    [
      'a LIST (SPECIAL-USE) "" ("INBOX" "%") RETURN (SUBSCRIBED CHILDREN SPECIAL-USE STATUS (MESSAGES UNSEEN SIZE))',
      {
        selectOptions: ["SPECIAL-USE"],
        patterns: ["INBOX", "%"],
        extended: true,
        returnOptions: { subscribed: true, children: true, specialUse: true, status: ["MESSAGES", "UNSEEN", "SIZE"] },
      },
    ],
    ["a LSUB \"\" %", { reference: "", pattern: "%" }],
    [
      "a STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE RECENT HIGHESTMODSEQ APPENDLIMIT)",
      { mailbox: "INBOX", items: ["MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "DELETED", "SIZE", "RECENT", "HIGHESTMODSEQ", "APPENDLIMIT"] },
    ],
    ["a COPY 1:3 Archive", { set: parseSequenceSet("1:3"), mailbox: "Archive" }],
    ["a MOVE $ Trash", { set: parseSequenceSet("$"), mailbox: "Trash" }],
    ["a GETQUOTA \"\"", { root: "" }],
    ["a GETQUOTAROOT INBOX", { mailbox: "INBOX" }],
    ["a SETQUOTA \"\" (STORAGE 512)", { root: "", limits: [{ resource: "STORAGE", limit: 512 }] }],
    ["a ID NIL", { params: null }],
    ['a ID ("name" "imapflow" "version" NIL)', { params: [["name", "imapflow"], ["version", null]] }],
    ["a COMPRESS deflate", { mechanism: "DEFLATE" }],
    [
      "a STORE 1,3:* +FLAGS.SILENT (\\seen $Forwarded)",
      { set: parseSequenceSet("1,3:*"), unchangedSince: null, mode: "add", silent: true, flags: ["\\Seen", "$Forwarded"] },
    ],
    ["a STORE 1 -FLAGS \\Deleted \\Draft", { mode: "remove", silent: false, flags: ["\\Deleted", "\\Draft"] }],
    ["a STORE 1 (UNCHANGEDSINCE 0) FLAGS ()", { mode: "replace", unchangedSince: 0n, flags: [] }],
    [
      "a SORT (REVERSE ARRIVAL subject DISPLAYFROM) utf-8 ALL",
      {
        criteria: [
          { key: "ARRIVAL", reverse: true },
          { key: "SUBJECT", reverse: false },
          { key: "DISPLAYFROM", reverse: false },
        ],
        charset: "UTF-8",
        search: { key: "ALL" },
      },
    ],
    ["a THREAD REFERENCES UTF-8 SINCE 5-MAR-2000", { algorithm: "REFERENCES", charset: "UTF-8", search: { key: "DATE", field: "internal", cmp: "since", date: { year: 2000, month: 3, day: 5 } } }],
    ["a THREAD orderedsubject US-ASCII (SEEN)", { algorithm: "ORDEREDSUBJECT", search: { key: "FLAG", flag: "\\Seen", set: true } }],
  ];
  for (const [line, want] of table) {
    if (want === null) continue;
    test(line, () => {
      expect(norm(parseCommand(line).args)).toMatchObject(norm(want) as object);
    });
  }
});

describe("UID commands", () => {
  test("UID forms", () => {
    expect(parseCommand("a UID FETCH 1:* FLAGS")).toMatchObject({ name: "FETCH", uid: true });
    expect(parseCommand("a uid search all")).toMatchObject({ name: "SEARCH", uid: true });
    expect(parseCommand("a UID EXPUNGE 3:5").args).toEqual({ set: parseSequenceSet("3:5")! });
    expect(parseCommand("a UID MOVE 1 x")).toMatchObject({ name: "MOVE", uid: true });
    expect(parseCommand("a UID SORT (SIZE) UTF-8 ALL")).toMatchObject({ name: "SORT", uid: true });
    expect(parseCommand("a UID THREAD REFERENCES UTF-8 ALL")).toMatchObject({ name: "THREAD", uid: true });
  });
  test("UID with a command that has no UID form is BAD", () => {
    for (const l of ["a UID NOOP", "a UID LOGIN a b", "a UID UID FETCH 1 FLAGS", "a UID"]) {
      const e = errOf(() => parseCommand(l));
      expect(e.bad).toBe(true);
      expect(e.tag).toBe("a");
    }
  });
  test("UID EXPUNGE needs a set; plain EXPUNGE takes none", () => {
    expect(errOf(() => parseCommand("a UID EXPUNGE")).bad).toBe(true);
    expect(errOf(() => parseCommand("a EXPUNGE 1")).bad).toBe(true);
  });
});

describe("FETCH", () => {
  test("macros", () => {
    const items = (l: string) => (parseCommand(l) as Extract<Command, { name: "FETCH" }>).args.items.map((i) => i.item);
    expect(items("a FETCH 1 ALL")).toEqual(["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"]);
    expect(items("a FETCH 1 fast")).toEqual(["FLAGS", "INTERNALDATE", "RFC822.SIZE"]);
    expect(items("a FETCH 1 FULL")).toEqual(["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"]);
    expect(items("a FETCH 1 (UID RFC822 RFC822.HEADER RFC822.TEXT RFC822.SIZE BODYSTRUCTURE BODY MODSEQ SAVEDATE)")).toEqual([
      "UID",
      "RFC822",
      "RFC822.HEADER",
      "RFC822.TEXT",
      "RFC822.SIZE",
      "BODYSTRUCTURE",
      "BODY",
      "MODSEQ",
      "SAVEDATE",
    ]);
  });
  test("sections and partials", () => {
    const c = parseCommand(
      "a FETCH 1 (BODY[] BODY.PEEK[HEADER] BODY[TEXT]<10.20> BODY[1.2.3] BODY[4.MIME] BODY[3.HEADER.FIELDS (Subject x-A)] BODY.PEEK[HEADER.FIELDS.NOT (From)] BODY[2.TEXT])",
    ) as Extract<Command, { name: "FETCH" }>;
    expect(norm(c.args.items)).toEqual(
      norm([
        { item: "BODY[]", peek: false, section: { part: [], text: null, fields: [] }, partial: null },
        { item: "BODY[]", peek: true, section: { part: [], text: "HEADER", fields: [] }, partial: null },
        { item: "BODY[]", peek: false, section: { part: [], text: "TEXT", fields: [] }, partial: { offset: 10, count: 20 } },
        { item: "BODY[]", peek: false, section: { part: [1, 2, 3], text: null, fields: [] }, partial: null },
        { item: "BODY[]", peek: false, section: { part: [4], text: "MIME", fields: [] }, partial: null },
        { item: "BODY[]", peek: false, section: { part: [3], text: "HEADER.FIELDS", fields: ["Subject", "x-A"] }, partial: null },
        { item: "BODY[]", peek: true, section: { part: [], text: "HEADER.FIELDS.NOT", fields: ["From"] }, partial: null },
        { item: "BODY[]", peek: false, section: { part: [2], text: "TEXT", fields: [] }, partial: null },
      ]) as unknown[],
    );
  });
  test("BINARY, BINARY.SIZE, PREVIEW", () => {
    const c = parseCommand("a FETCH 1 (BINARY[] BINARY.PEEK[1.2]<0.5> BINARY.SIZE[3] PREVIEW PREVIEW (LAZY))") as Extract<Command, { name: "FETCH" }>;
    expect(c.args.items).toEqual([
      { item: "BINARY[]", peek: false, part: [], partial: null },
      { item: "BINARY[]", peek: true, part: [1, 2], partial: { offset: 0, count: 5 } },
      { item: "BINARY.SIZE", part: [3] },
      { item: "PREVIEW", lazy: false },
      { item: "PREVIEW", lazy: true },
    ]);
  });
  test("modifiers", () => {
    const c = parseCommand("a UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345 VANISHED)") as Extract<Command, { name: "FETCH" }>;
    expect(c.args.changedSince).toBe(12345n);
    expect(c.args.vanished).toBe(true);
    // RFC 7162 §3.2.6: VANISHED only with UID FETCH and CHANGEDSINCE.
    expect(errOf(() => parseCommand("a FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)")).bad).toBe(true);
    expect(errOf(() => parseCommand("a UID FETCH 1:* (FLAGS) (VANISHED)")).bad).toBe(true);
  });
  const bad = [
    "a FETCH 1",
    "a FETCH 0 FLAGS",
    "a FETCH 1 (FLAGS",
    "a FETCH 1 FLAGS)",
    "a FETCH 1 BODY[",
    "a FETCH 1 BODY[0]",
    "a FETCH 1 BODY[1.]",
    "a FETCH 1 BODY[MIME]",
    "a FETCH 1 BODY[1.FOO]",
    "a FETCH 1 BODY[]<1.0>",
    "a FETCH 1 BODY[]<1>",
    "a FETCH 1 BODY.PEEK",
    "a FETCH 1 BINARY",
    "a FETCH 1 BINARY[TEXT]",
    "a FETCH 1 BODY[HEADER.FIELDS ()]",
    "a FETCH 1 BODY[HEADER.FIELDS (a:b)]",
    "a FETCH 1 XYZZY",
    "a FETCH 1 (FLAGS) (CHANGEDSINCE 0)",
    "a FETCH 1 (FLAGS) (FOO)",
    "a FETCH 1 FLAGS trailing",
    "a FETCH 1 (FLAGS  UID)",
    "a FETCH 1 (FLAGS UID) ",
    "a  FETCH 1 FLAGS",
  ];
  for (const l of bad) {
    test(`BAD: ${l}`, () => {
      const e = errOf(() => parseCommand(l));
      expect(e.bad).toBe(true);
      expect(e.tag).toBe("a");
    });
  }
});

describe("SEARCH", () => {
  const key = (l: string): SearchKey => (parseCommand(l) as Extract<Command, { name: "SEARCH" }>).args.criteria;
  test("every key of RFC 9051 §6.4.4 and the extensions", () => {
    const all =
      "a SEARCH ALL ANSWERED BCC b BEFORE 1-Feb-2020 BODY x CC c DELETED DRAFT FLAGGED FROM f HEADER X-Y v KEYWORD $Junk LARGER 10 " +
      "NOT SEEN ON \"02-Mar-2021\" OR SEEN UNSEEN SENTBEFORE 1-Jan-2000 SENTON 2-Jan-2000 SENTSINCE 3-Jan-2000 SINCE 4-Jan-2000 SMALLER 99 " +
      "SUBJECT s TEXT t TO o UID 1:5 UNANSWERED UNDELETED UNDRAFT UNFLAGGED UNKEYWORD k UNSEEN NEW OLD RECENT 1,2:* $ " +
      "MODSEQ 5 OLDER 60 YOUNGER 30 SAVEDBEFORE 1-Jan-2021 SAVEDON 1-Jan-2021 SAVEDSINCE 1-Jan-2021 SAVEDATESUPPORTED (SEEN (DRAFT))";
    const k = key(all);
    expect(k.key).toBe("AND");
    if (k.key !== "AND") return;
    expect(k.keys.length).toBe(44);
    expect(k.keys[2]).toEqual({ key: "HEADER", field: "Bcc", value: "b" });
    expect(k.keys[3]).toEqual({ key: "DATE", field: "internal", cmp: "before", date: { year: 2020, month: 2, day: 1 } });
    expect(k.keys[10]).toEqual({ key: "HEADER", field: "X-Y", value: "v" });
    expect(k.keys[11]).toEqual({ key: "FLAG", flag: "$Junk", set: true });
    expect(k.keys[12]).toEqual({ key: "SIZE", cmp: "larger", size: 10 });
    expect(k.keys[14]).toEqual({ key: "DATE", field: "internal", cmp: "on", date: { year: 2021, month: 3, day: 2 } });
    expect(k.keys[16]).toEqual({ key: "DATE", field: "sent", cmp: "before", date: { year: 2000, month: 1, day: 1 } });
    expect(k.keys[24]).toEqual({ key: "UID", set: parseSequenceSet("1:5")! });
    expect(k.keys[29]).toEqual({ key: "FLAG", flag: "k", set: false });
    expect(k.keys.slice(31, 34)).toEqual([{ key: "NEW" }, { key: "OLD" }, { key: "RECENT" }]);
    expect(k.keys[41]).toEqual({ key: "DATE", field: "saved", cmp: "since", date: { year: 2021, month: 1, day: 1 } });
    expect(k.keys[13]).toEqual({ key: "NOT", inner: { key: "FLAG", flag: "\\Seen", set: true } });
    expect(k.keys[15]).toEqual({ key: "OR", a: { key: "FLAG", flag: "\\Seen", set: true }, b: { key: "FLAG", flag: "\\Seen", set: false } });
    expect(k.keys[34]).toEqual({ key: "SEQ", set: parseSequenceSet("1,2:*")! });
    expect(k.keys[35]).toEqual({ key: "SEQ", set: parseSequenceSet("$")! });
    expect(norm(k.keys[36])).toEqual(norm({ key: "MODSEQ", modseq: 5n, entry: null }) as object);
    expect(k.keys[37]).toEqual({ key: "OLDER", seconds: 60 });
    expect(k.keys[38]).toEqual({ key: "YOUNGER", seconds: 30 });
    expect(k.keys[42]).toEqual({ key: "SAVEDATESUPPORTED" });
    expect(k.keys[43]).toEqual({ key: "AND", keys: [{ key: "FLAG", flag: "\\Seen", set: true }, { key: "FLAG", flag: "\\Draft", set: true }] });
  });
  test("RETURN and CHARSET", () => {
    const c = parseCommand("a SEARCH RETURN (MIN MAX COUNT ALL SAVE) CHARSET utf-8 TEXT \"ä\"") as Extract<Command, { name: "SEARCH" }>;
    expect(c.args.returnOptions).toEqual(["MIN", "MAX", "COUNT", "ALL", "SAVE"]);
    expect(c.args.charset).toBe("UTF-8");
    expect(c.args.criteria).toEqual({ key: "TEXT", value: "ä" });
    const d = parseCommand("a SEARCH RETURN () ALL") as Extract<Command, { name: "SEARCH" }>;
    expect(d.args.returnOptions).toEqual([]);
    const e = parseCommand("a SEARCH ALL") as Extract<Command, { name: "SEARCH" }>;
    expect(e.args.returnOptions).toBeNull();
  });
  test("MODSEQ with entry", () => {
    const k = key('a SEARCH MODSEQ "/flags/\\\\draft" all 620162338');
    expect(norm(k)).toEqual(norm({ key: "MODSEQ", modseq: 620162338n, entry: { name: "/flags/\\draft", type: "all" } }) as object);
  });
  test("unknown charset is NO [BADCHARSET], not BAD (RFC 9051 §6.4.4)", () => {
    const e = errOf(() => parseCommand("a SEARCH CHARSET x-unknown-cs TEXT a"));
    expect(e.bad).toBe(false);
    expect(e.code).toStartWith("BADCHARSET");
  });
  test("ISO-8859-1 charset decodes literal strings with that charset", () => {
    const r = new CommandReader();
    r.push(enc.encode("a SEARCH CHARSET ISO-8859-1 BODY {1+}\r\n"));
    r.push(Uint8Array.from([0xe4]));
    r.push(enc.encode("\r\n"));
    const evs = drain(r);
    expect(evs.length).toBe(1);
    const ev = evs[0]!;
    expect(ev.kind).toBe("command");
    if (ev.kind === "command" && ev.command.name === "SEARCH") expect(ev.command.args.criteria).toEqual({ key: "BODY", value: "ä" });
  });
  const bad = [
    "a SEARCH",
    "a SEARCH FOO",
    "a SEARCH (",
    "a SEARCH ()",
    "a SEARCH (ALL",
    "a SEARCH ALL)",
    "a SEARCH NOT",
    "a SEARCH OR ALL",
    "a SEARCH BEFORE 31-Feb-2020",
    "a SEARCH BEFORE 1-Foo-2020",
    "a SEARCH BEFORE 1-Feb-2020x",
    "a SEARCH BEFORE 1-Feb-20",
    "a SEARCH LARGER x",
    "a SEARCH UID 0",
    "a SEARCH 0:5",
    "a SEARCH 4294967296",
    "a SEARCH OLDER 0",
    "a SEARCH RETURN (FOO) ALL",
    "a SEARCH SUBJECT \"unterminated",
    "a SEARCH SUBJECT \"bad\\escape\"",
    "a SEARCH MODSEQ \"/flags/x\" bogus 5",
  ];
  for (const l of bad) {
    test(`BAD: ${l}`, () => {
      const e = errOf(() => parseCommand(l));
      expect(e.bad).toBe(true);
      expect(e.tag).toBe("a");
    });
  }
  test("deep parentheses and NOT chains are BAD, not a stack overflow", () => {
    expect(errOf(() => parseCommand("a SEARCH " + "(".repeat(1000) + "ALL" + ")".repeat(1000))).bad).toBe(true);
    expect(errOf(() => parseCommand("a SEARCH " + "NOT ".repeat(100_000) + "ALL")).bad).toBe(true);
    expect(errOf(() => parseCommand("a SEARCH " + "OR ALL ".repeat(50_000) + "ALL")).bad).toBe(true);
    // Within the limit it parses.
    expect(parseCommand("a SEARCH " + "(".repeat(50) + "ALL" + ")".repeat(50)).name).toBe("SEARCH");
  });
});

describe("APPEND and REPLACE through the reader", () => {
  test("MULTIAPPEND with flags, date, literal, literal8 and UTF8", () => {
    const input =
      'a APPEND Sent (\\Seen) " 5-Nov-2026 10:20:30 -0130" {5+}\r\nhello ~{3+}\r\na\x00b UTF8 (~{2+}\r\nhi) {0+}\r\n\r\n';
    const evs = feed(input);
    expect(evs.length).toBe(1);
    const ev = evs[0]!;
    if (ev.kind !== "command" || ev.command.name !== "APPEND") throw new Error("expected APPEND");
    const msgs = ev.command.args.messages;
    expect(ev.command.args.mailbox).toBe("Sent");
    expect(msgs.length).toBe(4);
    expect(msgs[0]!.flags).toEqual(["\\Seen"]);
    expect(msgs[0]!.date!.toISOString()).toBe("2026-11-05T11:50:30.000Z");
    expect(dec.decode(msgs[0]!.data)).toBe("hello");
    expect(msgs[1]!.binary).toBe(true);
    expect(Array.from(msgs[1]!.data)).toEqual([97, 0, 98]);
    expect(msgs[2]!.utf8).toBe(true);
    expect(dec.decode(msgs[2]!.data)).toBe("hi");
    expect(msgs[3]!.data.length).toBe(0);
  });
  test("NUL in a plain literal is BAD (RFC 9051: use literal8)", () => {
    const evs = feed("a APPEND x {3+}\r\na\x00b\r\n");
    expect(evs[0]!.kind).toBe("error");
  });
  test("REPLACE and UID REPLACE", () => {
    const evs = feed("a REPLACE 3 Drafts (\\Draft) {2+}\r\nhi\r\nb UID REPLACE * Drafts {2+}\r\nho\r\n");
    expect(evs.map((e) => e.kind)).toEqual(["command", "command"]);
    const a = evs[0]!;
    const b = evs[1]!;
    if (a.kind !== "command" || a.command.name !== "REPLACE" || b.kind !== "command" || b.command.name !== "REPLACE") throw new Error();
    expect(a.command.args.target).toBe(3);
    expect(a.command.args.message.flags).toEqual(["\\Draft"]);
    expect(b.command.uid).toBe(true);
    expect(b.command.args.target).toBe("*");
  });
  test("synchronizing literal over APPENDLIMIT: NO [TOOBIG] instead of +, then in sync", () => {
    const evs = feed("a APPEND INBOX {1000}\r\nb NOOP\r\n", { appendLimit: 999 });
    expect(evs.length).toBe(2);
    const e = evs[0]!;
    expect(e.kind).toBe("error");
    if (e.kind === "error") {
      expect(e.error.bad).toBe(false);
      expect(e.error.code).toBe("TOOBIG");
      expect(e.error.tag).toBe("a");
    }
    expect(evs[1]).toMatchObject({ kind: "command", command: { tag: "b", name: "NOOP" } });
  });
  test("non-synchronizing literal over APPENDLIMIT: BAD [TOOBIG], octets skipped, then in sync", () => {
    const big = "x".repeat(5000);
    const input = `a APPEND INBOX {5000+}\r\n${big} {3+}\r\nabc\r\nb NOOP\r\n`;
    for (const evs of [feed(input, { appendLimit: 4096 }), feedBytewise(enc.encode(input), { appendLimit: 4096 })]) {
      expect(evs.length).toBe(2);
      expect(evs[0]).toMatchObject({ kind: "error", error: { bad: true, code: "TOOBIG", tag: "a" } });
      expect(evs[1]).toMatchObject({ kind: "command", command: { tag: "b", name: "NOOP" } });
    }
  });
  test("a literal within the limit but over 4096 is accepted (we offer LITERAL+, RFC 7888)", () => {
    const big = "y".repeat(10_000);
    const evs = feed(`a APPEND INBOX {10000+}\r\n${big}\r\n`);
    expect(evs[0]).toMatchObject({ kind: "command", command: { name: "APPEND" } });
  });
  test("literals outside APPEND are limited by maxLiteralOctets", () => {
    // Synchronizing: refused instead of "+" (NO [TOOBIG]); non-synchronizing: BAD and skipped.
    const evs = feed("a LOGIN {100}\r\nb NOOP\r\n", { maxLiteralOctets: 50 });
    expect(evs[0]).toMatchObject({ kind: "error", error: { bad: false, code: "TOOBIG", tag: "a" } });
    const evs2 = feed(`a LOGIN {100+}\r\n${"z".repeat(100)} x\r\nb NOOP\r\n`, { maxLiteralOctets: 50 });
    expect(evs2[0]).toMatchObject({ kind: "error", error: { bad: true, code: "TOOBIG", tag: "a" } });
    expect(evs[1]).toMatchObject({ kind: "command", command: { tag: "b" } });
  });
  test("literal size above 2^32-1 is BAD", () => {
    const evs = feed("a APPEND x {99999999999}\r\nb NOOP\r\n");
    expect(evs[0]).toMatchObject({ kind: "error", error: { bad: true } });
    expect(evs[1]).toMatchObject({ kind: "command", command: { tag: "b" } });
  });
  test("a literal for an unknown command or without a tag gets no +", () => {
    const evs = feed("a FROB {5}\r\n+ {5}\r\nb NOOP\r\n");
    expect(evs.map((e) => e.kind)).toEqual(["error", "error", "command"]);
    expect(evs[1]).toMatchObject({ error: { tag: null } });
  });
});

describe("reader framing", () => {
  test("synchronizing literal: continue event, then the command", () => {
    const r = new CommandReader();
    r.push(enc.encode('a LOGIN {4}\r\n'));
    expect(drain(r)).toEqual([{ kind: "continue", tag: "a", name: "LOGIN", uid: false, size: 4 }]);
    r.push(enc.encode('user {6}\r\n'));
    expect(drain(r)).toEqual([{ kind: "continue", tag: "a", name: "LOGIN", uid: false, size: 6 }]);
    r.push(enc.encode("p\r\nass\r\n"));
    const evs = drain(r);
    expect(evs).toEqual([{ kind: "command", command: { tag: "a", name: "LOGIN", uid: false, args: { username: "user", password: "p\r\nass" } } }]);
  });
  test("refuseLiteral: the session answers instead of sending +, the next command is read", () => {
    const r = new CommandReader();
    r.push(enc.encode("a UID REPLACE 4 INBOX {50000}\r\n"));
    expect(drain(r)).toEqual([{ kind: "continue", tag: "a", name: "REPLACE", uid: true, size: 50000 }]);
    r.refuseLiteral(); // e.g. over quota: the session sends "a NO [OVERQUOTA] ..."
    r.push(enc.encode("b NOOP\r\n"));
    expect(drain(r)).toMatchObject([{ kind: "command", command: { tag: "b" } }]);
  });
  test("MULTIAPPEND total is limited too", () => {
    const evs = feed("a APPEND INBOX {6+}\r\n123456 {6}\r\nb NOOP\r\n", { appendLimit: 10, maxAppendTotalOctets: 10 });
    expect(evs).toMatchObject([{ kind: "error", error: { bad: false, code: "TOOBIG", tag: "a" } }, { kind: "command", command: { tag: "b" } }]);
  });
  test("literal8 is only for message data (RFC 3516 §4.4)", () => {
    expect(feed("a LOGIN ~{1+}\r\nu p\r\n")[0]).toMatchObject({ kind: "error", error: { bad: true, tag: "a" } });
  });
  test("errorResponse", () => {
    expect(errorResponse(new ImapParseError(true, "a1", "bad\r\nthing"))).toBe("a1 BAD bad thing");
    expect(errorResponse(new ImapParseError(false, "a1", "too big", "TOOBIG"))).toBe("a1 NO [TOOBIG] too big");
    expect(errorResponse(new ImapParseError(false, null, "x"))).toBe("* BAD x");
  });
  test("8-bit characters in an atom are BAD (they must be quoted, RFC 9051 §9)", () => {
    expect(feed("a SELECT Entwürfe\r\n")[0]).toMatchObject({ kind: "error", error: { bad: true, tag: "a" } });
  });
  test("broken literal markers are BAD and the reader stays in sync", () => {
    for (const l of ["a LOGIN {5\r\n", "a LOGIN {-1}\r\n", "a LOGIN { 5}\r\n", "a LOGIN {5} x\r\n", "a LOGIN {5}x\r\n", "a LOGIN {+}\r\n", "a LOGIN ~{5\r\n"]) {
      const evs = feed(l + "b NOOP\r\n");
      expect(evs).toMatchObject([{ kind: "error", error: { bad: true, tag: "a" } }, { kind: "command", command: { tag: "b" } }]);
    }
  });
  test("a literal shorter than announced swallows what follows (as the protocol says), then resyncs", () => {
    // The 11 octets are "u\r\nb NOOP\r\n": the command continues after them.
    const evs = feed("a LOGIN {11+}\r\nu\r\nb NOOP\r\n p\r\nc NOOP\r\n");
    expect(evs).toMatchObject([{ kind: "command", command: { tag: "a", args: { username: "u\r\nb NOOP\r\n", password: "p" } } }, { kind: "command", command: { tag: "c" } }]);
  });
  test("pipelined commands and empty lines", () => {
    const evs = feed("a NOOP\r\n\r\nb NOOP\nc CAPABILITY\r\n");
    expect(evs.map((e) => (e.kind === "command" ? e.command.tag : e.kind))).toEqual(["a", "b", "c"]);
  });
  test("raw line mode for AUTHENTICATE and IDLE", () => {
    const r = new CommandReader();
    r.push(enc.encode("a IDLE\r\nDONE\r\nb AUTHENTICATE PLAIN\r\nAGEAYg==\r\n*\r\nc NOOP\r\n"));
    expect(r.next()).toMatchObject({ kind: "command", command: { name: "IDLE" } });
    expect(r.next("line")).toEqual({ kind: "line", line: "DONE" });
    expect(r.next()).toMatchObject({ kind: "command", command: { name: "AUTHENTICATE" } });
    expect(r.next("line")).toEqual({ kind: "line", line: "AGEAYg==" });
    expect(r.next("line")).toEqual({ kind: "line", line: "*" });
    expect(r.next()).toMatchObject({ kind: "command", command: { tag: "c" } });
    expect(r.next()).toBeNull();
  });
  test("too-long line: BAD with the tag, then in sync", () => {
    const long = "a SEARCH SUBJECT " + "x".repeat(2000);
    const input = `${long}\r\nb NOOP\r\n`;
    for (const evs of [feed(input, { maxLineOctets: 1000 }), feedBytewise(enc.encode(input), { maxLineOctets: 1000 })]) {
      expect(evs.length).toBe(2);
      expect(evs[0]).toMatchObject({ kind: "error", error: { bad: true, tag: "a" } });
      expect(evs[1]).toMatchObject({ kind: "command", command: { tag: "b" } });
    }
  });
  test("too-long line ending in a non-synchronizing literal: the literal is skipped too", () => {
    const input = `a SEARCH SUBJECT ${"x".repeat(2000)} {5+}\r\nNOOP!\r\nb NOOP\r\n`;
    const evs = feed(input, { maxLineOctets: 1000 });
    expect(evs.map((e) => e.kind)).toEqual(["error", "command"]);
  });
  test("a bad command whose line ends in a non-synchronizing literal skips that literal", () => {
    const evs = feed("a FETCH 0 BODY[HEADER.FIELDS {4+}\r\nb NO)]\r\nc NOOP\r\n");
    expect(evs.map((e) => (e.kind === "command" ? e.command.tag : e.kind))).toEqual(["error", "c"]);
  });
  test("invalid UTF-8 in a quoted string is BAD", () => {
    const evs = feed(Uint8Array.from([...enc.encode('a SELECT "'), 0xff, ...enc.encode('"\r\nb NOOP\r\n')]));
    expect(evs[0]).toMatchObject({ kind: "error", error: { bad: true, tag: "a" } });
    expect(evs[1]).toMatchObject({ kind: "command" });
  });
  test("missing tag: untagged BAD (tag null)", () => {
    for (const l of ["*", " NOOP", "+ NOOP", "a{ NOOP", "a"]) {
      const evs = feed(l + "\r\n");
      expect(evs[0]).toMatchObject({ kind: "error", error: { bad: true } });
    }
    expect(feed("* NOOP\r\n")[0]).toMatchObject({ error: { tag: null } });
  });
});

describe("properties", () => {
  test("sequence sets round trip", () => {
    const num = fc.oneof(fc.integer({ min: 1, max: 4294967295 }), fc.constant("*" as const));
    const item = fc.oneof(
      { weight: 5, arbitrary: fc.tuple(num, num).map(([a, b]) => ({ kind: "range" as const, from: a, to: b })) },
      { weight: 1, arbitrary: fc.constant({ kind: "saved" as const }) },
    );
    fc.assert(
      fc.property(fc.array(item, { minLength: 1, maxLength: 20 }), (items) => {
        const set = { items };
        const text = formatSequenceSet(set);
        expect(parseSequenceSet(text)).toEqual(set);
        // And inside a command.
        const c = parseCommand(`t UID FETCH ${text} UID`);
        expect(c.name === "FETCH" && c.args.set).toEqual(set);
      }),
    );
  });
  test("sequence set validation", () => {
    for (const bad of ["", "0", "1:0", "0:*", ",", "1,", ",1", "1::2", "4294967296", "1:4294967296", "01", "a", "1 2", "$$", "-1"]) {
      expect(parseSequenceSet(bad)).toBeNull();
    }
    for (const good of ["1", "*", "*:1", "9:7", "4,7:9", "$", "1,$", "4294967295", "1:*"]) expect(parseSequenceSet(good)).not.toBeNull();
  });
  test("random input never throws anything but ImapParseError (parseCommand)", () => {
    const pieces = fc.constantFrom(
      "a", " ", "FETCH", "SEARCH", "UID", "(", ")", "[", "]", "<", ">", ".", "\"", "\\", "{", "}", "1", "0", ":", "*", "$", ",",
      "BODY", "HEADER.FIELDS", "NOT", "OR", "ALL", "LIST", "RETURN", "STATUS", "APPEND", "~", "+", "-", "FLAGS", "\\Seen", "ä", "\u0000",
      "SELECT", "QRESYNC", "CHARSET", "MODSEQ", "STORE", "ID", "NIL",
    );
    fc.assert(
      fc.property(fc.array(pieces, { maxLength: 40 }), (arr) => {
        const line = "t " + arr.join("");
        try {
          parseCommand(line);
        } catch (e) {
          expect(e).toBeInstanceOf(ImapParseError);
        }
      }),
      { numRuns: 3000 },
    );
  });
  test("random bytes never throw from the reader and never stall a following NOOP", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        const r = new CommandReader({ maxLineOctets: 200, maxLiteralOctets: 100, appendLimit: 100 });
        r.push(bytes);
        drain(r); // must not throw
        // Whatever state it is in, a CRLF-terminated NOOP after enough line ends is eventually parsed
        // (unless a literal swallowed it): feed a lot of CRLFs to end any literal up to the limits.
        r.push(enc.encode("\r\n".repeat(200) + "z NOOP\r\n"));
        const evs = drain(r);
        const last = evs[evs.length - 1];
        expect(last).toMatchObject({ kind: "command", command: { tag: "z" } });
      }),
      { numRuns: 1500 },
    );
  });
  test("splitting the input at every byte gives the same events", () => {
    const input = enc.encode(
      'a LOGIN {3+}\r\nbob "pw"\r\nb APPEND INBOX (\\Seen) ~{4}\r\nx\x00yz {2+}\r\nab\r\nc SEARCH CHARSET UTF-8 SUBJECT {2}\r\n\xc3\xa4 NOT SEEN\r\nd FETCH 1:* (BODY.PEEK[HEADER.FIELDS ({7}\r\nSubject)])\r\ne BAD(\r\n',
    );
    const whole = norm(feed(input));
    expect((whole as unknown[]).length).toBeGreaterThan(5);
    for (let i = 0; i <= input.length; i++) {
      const r = new CommandReader();
      r.push(input.subarray(0, i));
      const evs = drain(r);
      r.push(input.subarray(i));
      evs.push(...drain(r));
      expect(norm(evs)).toEqual(whole);
    }
    expect(norm(feedBytewise(input))).toEqual(whole);
  });
  test("generated search programs parse back to the program", () => {
    const q = (v: string) => '"' + v.replace(/[\\"]/g, "\\$&") + '"';
    const MON = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    const SYS: Record<string, string> = { "\\Seen": "SEEN", "\\Answered": "ANSWERED", "\\Flagged": "FLAGGED", "\\Deleted": "DELETED", "\\Draft": "DRAFT" };
    const ser = (k: SearchKey): string => {
      switch (k.key) {
        case "FLAG":
          if (k.flag in SYS) return (k.set ? "" : "UN") + SYS[k.flag];
          return `${k.set ? "KEYWORD" : "UNKEYWORD"} ${k.flag}`;
        case "HEADER":
          return `HEADER ${q(k.field)} ${q(k.value)}`;
        case "BODY":
        case "TEXT":
          return `${k.key} ${q(k.value)}`;
        case "DATE":
          return `${{ internal: "", sent: "SENT", saved: "SAVED" }[k.field]}${k.cmp.toUpperCase()} ${k.date.day}-${MON[k.date.month - 1]}-${k.date.year}`;
        case "SIZE":
          return `${k.cmp === "larger" ? "LARGER" : "SMALLER"} ${k.size}`;
        case "NOT":
          return `NOT ${ser(k.inner)}`;
        case "OR":
          return `OR ${ser(k.a)} ${ser(k.b)}`;
        case "AND":
          return `(${k.keys.map(ser).join(" ")})`;
        case "SEQ":
          return formatSequenceSet(k.set);
        case "UID":
          return `UID ${formatSequenceSet(k.set)}`;
        case "MODSEQ":
          return `MODSEQ ${k.modseq}`;
        case "OLDER":
        case "YOUNGER":
          return `${k.key} ${k.seconds}`;
        default:
          return k.key;
      }
    };
    const str = fc.string({ unit: "grapheme", maxLength: 12 }).filter((x) => !/[\r\n\0]/.test(x));
    const set = fc
      .array(fc.tuple(fc.integer({ min: 1, max: 99 }), fc.oneof(fc.integer({ min: 1, max: 99 }), fc.constant("*" as const))), { minLength: 1, maxLength: 3 })
      .map((a) => ({ items: a.map(([x, y]) => ({ kind: "range" as const, from: x, to: y })) }));
    const leaf: fc.Arbitrary<SearchKey> = fc.oneof(
      fc.constantFrom<SearchKey>({ key: "ALL" }, { key: "NEW" }, { key: "OLD" }, { key: "RECENT" }, { key: "SAVEDATESUPPORTED" }),
      fc.record({ flag: fc.constantFrom("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft", "$Junk", "work"), set: fc.boolean() }).map((r): SearchKey => ({ key: "FLAG", ...r })),
      fc.record({ field: fc.constantFrom("Subject", "X-Spam", "List-Id"), value: str }).map((r): SearchKey => ({ key: "HEADER", ...r })),
      fc.record({ key: fc.constantFrom("BODY" as const, "TEXT" as const), value: str }).map((r): SearchKey => r),
      fc
        .record({
          field: fc.constantFrom("internal" as const, "sent" as const, "saved" as const),
          cmp: fc.constantFrom("before" as const, "on" as const, "since" as const),
          date: fc.date({ min: new Date("1970-01-01"), max: new Date("2100-01-01"), noInvalidDate: true }),
        })
        .map((r): SearchKey => ({ key: "DATE", field: r.field, cmp: r.cmp, date: { year: r.date.getUTCFullYear(), month: r.date.getUTCMonth() + 1, day: r.date.getUTCDate() } })),
      fc.record({ cmp: fc.constantFrom("larger" as const, "smaller" as const), size: fc.integer({ min: 0, max: 2 ** 40 }) }).map((r): SearchKey => ({ key: "SIZE", ...r })),
      set.map((x): SearchKey => ({ key: "SEQ", set: x })),
      set.map((x): SearchKey => ({ key: "UID", set: x })),
      fc.bigInt({ min: 0n, max: 2n ** 63n - 1n }).map((m): SearchKey => ({ key: "MODSEQ", modseq: m, entry: null })),
      fc.record({ key: fc.constantFrom("OLDER" as const, "YOUNGER" as const), seconds: fc.integer({ min: 1, max: 2 ** 31 }) }).map((r): SearchKey => r),
    );
    const tree = fc.letrec<{ k: SearchKey }>((tie) => ({
      k: fc.oneof(
        { depthSize: "small", withCrossShrink: true },
        leaf,
        tie("k").map((inner): SearchKey => ({ key: "NOT", inner })),
        fc.tuple(tie("k"), tie("k")).map(([a, b]): SearchKey => ({ key: "OR", a, b })),
        fc.array(tie("k"), { minLength: 2, maxLength: 3 }).map((keys): SearchKey => ({ key: "AND", keys })),
      ),
    })).k;
    fc.assert(
      fc.property(tree, (k) => {
        const c = parseCommand(`t SEARCH ${ser(k)}`);
        expect(c.name === "SEARCH" && norm(c.args.criteria)).toEqual(norm(k));
      }),
      { numRuns: 1000 },
    );
  });
  test("generated valid commands parse to what was generated", () => {
    const flag = fc.constantFrom("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft", "$Forwarded", "work", "$Junk");
    const setText = fc.array(fc.tuple(fc.integer({ min: 1, max: 1000 }), fc.integer({ min: 1, max: 1000 })), { minLength: 1, maxLength: 5 }).map((a) =>
      a.map(([x, y]) => (x === y ? `${x}` : `${x}:${y}`)).join(","),
    );
    fc.assert(
      fc.property(setText, fc.array(flag, { maxLength: 5 }), fc.constantFrom("+", "-", ""), fc.boolean(), (set, flags, op, silent) => {
        const line = `t STORE ${set} ${op}FLAGS${silent ? ".SILENT" : ""} (${flags.join(" ")})`;
        const c = parseCommand(line);
        if (c.name !== "STORE") throw new Error();
        expect(formatSequenceSet(c.args.set)).toBe(set);
        expect(c.args.flags).toEqual(flags);
        expect(c.args.mode).toBe(op === "+" ? "add" : op === "-" ? "remove" : "replace");
        expect(c.args.silent).toBe(silent);
      }),
    );
  });
  test("astrings: any UTF-8 string sent quoted or as a literal comes back unchanged", () => {
    fc.assert(
      fc.property(fc.string({ unit: "grapheme", maxLength: 30 }), fc.boolean(), (s, asLiteral) => {
        const bytes = enc.encode(s);
        const r = new CommandReader();
        if (asLiteral || /[\r\n\0]/.test(s)) {
          r.push(enc.encode(`t SELECT {${bytes.length}+}\r\n`));
          r.push(bytes);
          r.push(enc.encode("\r\n"));
        } else r.push(enc.encode(`t SELECT "${s.replace(/[\\"]/g, "\\$&")}"\r\n`));
        const evs = drain(r);
        if (s.includes("\0") && !asLiteral) return;
        if (s.includes("\0")) {
          expect(evs[0]!.kind).toBe("error");
          return;
        }
        expect(evs).toEqual([{ kind: "command", command: { tag: "t", name: "SELECT", uid: false, args: { mailbox: s, condstore: false, qresync: null } } }]);
      }),
    );
  });
});
