import { test, expect, describe } from "bun:test";
import fc from "fast-check";
import {
  baseSubject,
  compareAsciiCasemap,
  formatThreads,
  sortMessages,
  threadOrderedSubject,
  threadReferences,
  type ThreadMessage,
  type ThreadNode,
} from "../../app/src/imapserver/thread.ts";
import { parseCommand, type SortCriterion } from "../../app/src/imapserver/parser.ts";

interface Spec {
  subject?: string;
  date?: string;
  from?: string;
  to?: string;
  cc?: string;
  id?: string;
  refs?: string;
  irt?: string;
  size?: number;
  arrival?: string;
}

function msgs(specs: Spec[]): ThreadMessage[] {
  return specs.map((s, i) => {
    const h: Record<string, string[]> = {};
    const put = (k: string, v: string | undefined) => {
      if (v !== undefined) h[k.toLowerCase()] = [v];
    };
    put("Subject", s.subject);
    put("Date", s.date);
    put("From", s.from);
    put("To", s.to);
    put("Cc", s.cc);
    put("Message-ID", s.id === undefined ? undefined : `<${s.id}>`);
    put("References", s.refs);
    put("In-Reply-To", s.irt);
    return {
      seq: i + 1,
      uid: 100 + i,
      size: s.size ?? 100,
      internalDate: new Date(s.arrival ?? `2024-01-01T00:00:${String(59 - i).padStart(2, "0")}Z`),
      header: (n: string) => h[n.toLowerCase()] ?? [],
    };
  });
}

describe("base subject (RFC 5256 §2.1)", () => {
  const table: [string, string, boolean][] = [
    ["Hello", "Hello", false],
    ["Re: Hello", "Hello", true],
    ["RE: re: Fwd: Hello", "Hello", true],
    ["Fw: Hello", "Hello", true],
    ["Re[2]: Hello", "Hello", true],
    ["Re [2]: Hello", "Hello", true],
    ["[list] Re: Hello", "Hello", true],
    ["[list] Hello", "Hello", false],
    ["[list]", "[list]", false], // a blob is only removed when something is left
    ["Hello (fwd)", "Hello", true],
    ["Hello (FWD) (fwd)  ", "Hello", true],
    ["[Fwd: Re: Hello]", "Hello", true],
    ["[fwd: [fwd: Hello]]", "Hello", true],
    ["Re:Hello\t world  again", "Hello world again", true],
    ["=?utf-8?q?Re=3A_caf=C3=A9?=", "café", true],
    ["", "", false],
    ["Re:", "", true],
    ["Rest of it", "Rest of it", false],
    ["Fwdx: y", "Fwdx: y", false],
  ];
  for (const [input, base, refwd] of table) {
    test(JSON.stringify(input), () => expect(baseSubject(input)).toEqual({ base, replyOrForward: refwd }));
  }
  test("idempotent and never throws", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 40 }), (s) => {
        const once = baseSubject(s).base;
        expect(baseSubject(once).base).toBe(once);
      }),
      { numRuns: 3000 },
    );
  });
});

describe("SORT (RFC 5256 §3)", () => {
  const M = msgs([
    { subject: "Re: banana", date: "Mon, 1 Jan 2024 12:00:00 +0000", from: "Zed <z@x.org>", to: "b@x.org", size: 300, arrival: "2024-01-03T00:00:00Z" },
    { subject: "apple", date: "Mon, 1 Jan 2024 11:00:00 -0200", from: "a@x.org", to: "Carl <c@x.org>", cc: "m@x.org", size: 100, arrival: "2024-01-01T00:00:00Z" },
    { subject: "Cherry", from: "Bob <B@x.org>", size: 200, arrival: "2024-01-02T00:00:00Z" }, // no Date: internal date
    { subject: "[list] APPLE", date: "garbage", from: "y@x.org", cc: "a@x.org", size: 100, arrival: "2024-01-04T00:00:00Z" },
  ]);
  const sort = (criteria: string) => {
    const c = parseCommand(`t SORT (${criteria}) UTF-8 ALL`);
    if (c.name !== "SORT") throw new Error();
    return sortMessages(M, c.args.criteria).map((m) => m.seq);
  };
  const table: [string, number[]][] = [
    ["ARRIVAL", [2, 3, 1, 4]],
    ["REVERSE ARRIVAL", [4, 1, 3, 2]],
    // M2 is 13:00 UTC, M1 12:00 UTC; M3 and M4 fall back to internal dates (Jan 2, Jan 4).
    ["DATE", [1, 2, 3, 4]],
    ["SIZE", [2, 4, 3, 1]], // ties in mailbox order
    ["REVERSE SIZE", [1, 3, 2, 4]], // REVERSE does not reverse the tie order
    ["SUBJECT", [2, 4, 1, 3]],
    ["SUBJECT REVERSE ARRIVAL", [4, 2, 1, 3]],
    ["FROM", [2, 3, 4, 1]], // addr-mailbox: a, B, y, z (case-insensitive)
    ["TO", [3, 4, 1, 2]], // missing sorts first (""), then b, c
    ["CC", [1, 3, 4, 2]],
    ["DISPLAYFROM", [2, 3, 4, 1]], // "a@x.org", "Bob", "y@x.org", "Zed"
    ["DISPLAYTO", [3, 4, 1, 2]], // "", "", "b@x.org", "Carl"
  ];
  for (const [criteria, want] of table) {
    test(criteria, () => expect(sort(criteria)).toEqual(want));
  }
  test("i;ascii-casemap", () => {
    expect(compareAsciiCasemap("abc", "ABC")).toBe(0);
    expect(compareAsciiCasemap("a", "B")).toBeLessThan(0);
    expect(compareAsciiCasemap("[", "a")).toBeGreaterThan(0); // "[" (0x5b) after "A" (0x41)
    expect(compareAsciiCasemap("ä", "Ä")).not.toBe(0); // only ASCII is folded
  });
  test("sorting is a permutation and stable by sequence number", () => {
    const keys = fc.constantFrom<SortCriterion["key"]>("ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO");
    fc.assert(
      fc.property(fc.array(fc.record({ key: keys, reverse: fc.boolean() }), { minLength: 1, maxLength: 3 }), (criteria) => {
        const out = sortMessages(M, criteria).map((m) => m.seq);
        expect([...out].sort()).toEqual([1, 2, 3, 4]);
        expect(sortMessages([...M].reverse(), criteria).map((m) => m.seq)).toEqual(out);
      }),
    );
  });
});

function shape(nodes: readonly ThreadNode[]): string {
  return formatThreads(nodes, false);
}

describe("THREAD=ORDEREDSUBJECT", () => {
  test("groups by base subject, oldest first, children flat", () => {
    const M = msgs([
      { subject: "Re: a", date: "1 Jan 2024 10:00:00 +0000" },
      { subject: "b", date: "1 Jan 2024 09:00:00 +0000" },
      { subject: "a", date: "1 Jan 2024 08:00:00 +0000" },
      { subject: "Re: a", date: "1 Jan 2024 11:00:00 +0000" },
      { subject: "Fwd: b", date: "1 Jan 2024 12:00:00 +0000" },
      { subject: "c", date: "1 Jan 2024 13:00:00 +0000" },
    ]);
    expect(shape(threadOrderedSubject(M))).toBe("(3 (1)(4))(2 5)(6)");
  });
});

describe("THREAD=REFERENCES (RFC 5256 §4)", () => {
  test("a reply chain with a branch", () => {
    const M = msgs([
      { id: "1", subject: "topic", date: "1 Jan 2024 10:00 +0000" },
      { id: "2", subject: "Re: topic", refs: "<1>", date: "1 Jan 2024 11:00 +0000" },
      { id: "3", subject: "Re: topic", refs: "<1> <2>", date: "1 Jan 2024 12:00 +0000" },
      { id: "4", subject: "Re: topic", refs: "<1>", date: "1 Jan 2024 13:00 +0000" },
      { id: "5", subject: "other", date: "1 Jan 2024 09:00 +0000" },
    ]);
    expect(shape(threadReferences(M))).toBe("(5)(1 (2 3)(4))");
  });
  test("In-Reply-To when there is no References", () => {
    const M = msgs([
      { id: "a", subject: "x", date: "1 Jan 2024 10:00 +0000" },
      { id: "b", subject: "y", irt: "<a> (comment) <zzz>", date: "1 Jan 2024 11:00 +0000" },
    ]);
    expect(shape(threadReferences(M))).toBe("(1 2)");
  });
  test("a missing parent with one child is pruned; with several children it stays as a placeholder", () => {
    const one = msgs([{ id: "c1", refs: "<gone>", subject: "s1", date: "1 Jan 2024 10:00 +0000" }]);
    expect(shape(threadReferences(one))).toBe("(1)");
    const two = msgs([
      { id: "c1", refs: "<gone>", subject: "s1", date: "1 Jan 2024 10:00 +0000" },
      { id: "c2", refs: "<gone>", subject: "s2", date: "1 Jan 2024 11:00 +0000" },
    ]);
    expect(shape(threadReferences(two))).toBe("((1)(2))");
  });
  test("a missing intermediate message: its child is promoted", () => {
    const M = msgs([
      { id: "r", subject: "s", date: "1 Jan 2024 10:00 +0000" },
      { id: "c", subject: "Re: s", refs: "<r> <missing>", date: "1 Jan 2024 11:00 +0000" },
    ]);
    expect(shape(threadReferences(M))).toBe("(1 2)");
  });
  test("roots with the same base subject are merged", () => {
    const M = msgs([
      { id: "a", subject: "meeting", date: "1 Jan 2024 10:00 +0000" },
      { id: "b", subject: "Re: meeting", date: "1 Jan 2024 11:00 +0000" }, // reply without references
      { id: "c", subject: "meeting", date: "1 Jan 2024 12:00 +0000" }, // same subject, not a reply
    ]);
    // b goes under a (reply under original); a and c get a common placeholder parent.
    expect(shape(threadReferences(M))).toBe("((1 2)(3))");
  });
  test("loops in References do not hang or lose messages", () => {
    const M = msgs([
      { id: "a", refs: "<b>", subject: "x", date: "1 Jan 2024 10:00 +0000" },
      { id: "b", refs: "<a>", subject: "y", date: "1 Jan 2024 11:00 +0000" },
      { id: "a", subject: "dup id", date: "1 Jan 2024 12:00 +0000" }, // duplicate Message-ID
      { id: "s", refs: "<s>", subject: "self", date: "1 Jan 2024 13:00 +0000" },
    ]);
    const out = threadReferences(M);
    const seen: number[] = [];
    const walk = (n: ThreadNode) => {
      if (n.message) seen.push(n.message.seq);
      n.children.forEach(walk);
    };
    out.forEach(walk);
    expect(seen.sort()).toEqual([1, 2, 3, 4]);
  });
  test("every message appears exactly once for random reference graphs", () => {
    const spec = fc.record({
      id: fc.constantFrom("a", "b", "c", "d", "e", "f"),
      refs: fc.array(fc.constantFrom("a", "b", "c", "d", "e", "f", "g"), { maxLength: 4 }),
      subject: fc.constantFrom("s", "Re: s", "t", "Fwd: t", "", "[l] s"),
      hour: fc.integer({ min: 0, max: 23 }),
    });
    fc.assert(
      fc.property(fc.array(spec, { maxLength: 12 }), (specs) => {
        const M = msgs(
          specs.map((s) => ({
            id: s.id,
            refs: s.refs.map((r) => `<${r}>`).join(" "),
            subject: s.subject,
            date: `1 Jan 2024 ${String(s.hour).padStart(2, "0")}:00 +0000`,
          })),
        );
        const seen: number[] = [];
        const walk = (n: ThreadNode, depth: number) => {
          expect(depth).toBeLessThan(50);
          if (n.message) seen.push(n.message.seq);
          else expect(n.children.length).toBeGreaterThan(0);
          n.children.forEach((c) => walk(c, depth + 1));
        };
        const threads = threadReferences(M);
        threads.forEach((t) => walk(t, 0));
        expect(seen.sort((a, b) => a - b)).toEqual(M.map((m) => m.seq));
        // The response always parses as balanced parentheses.
        const s = formatThreads(threads, true);
        let depth = 0;
        for (const ch of s) {
          depth += ch === "(" ? 1 : ch === ")" ? -1 : 0;
          expect(depth).toBeGreaterThanOrEqual(0);
        }
        expect(depth).toBe(0);
      }),
      { numRuns: 500 },
    );
  });
});

describe("deep threads", () => {
  test("a 20000-message reply chain threads and formats without recursion limits", () => {
    const N = 20_000;
    const M = msgs(Array.from({ length: N }, (_, i) => ({ id: `m${i}`, refs: i > 0 ? `<m${i - 1}>` : undefined, subject: "chain", date: "1 Jan 2024 10:00 +0000" })));
    const out = formatThreads(threadReferences(M), false);
    expect(out).toBe("(" + Array.from({ length: N }, (_, i) => i + 1).join(" ") + ")");
    // And a deep tree that branches at every level: spine message 2L+1 has children 2L+3 (spine) and 2L+2 (leaf).
    const L = 5000;
    const B = msgs(
      Array.from({ length: 2 * L + 1 }, (_, i) => {
        const parent = i === 0 ? undefined : i % 2 === 1 ? i - 1 : i - 2; // indexes: leaf 2L+1 and spine 2L+2 under spine 2L
        return { id: `n${i}`, refs: parent === undefined ? undefined : `<n${parent}>`, subject: "tree", date: "1 Jan 2024 10:00 +0000", arrival: undefined };
      }),
    );
    const t = formatThreads(threadReferences(B), false);
    // Siblings of equal date are in mailbox order: the leaf (even seq) before the spine (odd seq).
    expect(t.startsWith("(1 (2)(3 (4)(5 (6)(7 ")).toBe(true);
    expect(t.endsWith(`(${2 * L})(${2 * L + 1})` + ")".repeat(L))).toBe(true);
  });
});

describe("THREAD response format (RFC 5256 §4)", () => {
  test("the RFC's example shape (3 6 (4 23)(44 7 96))", () => {
    const n = (seq: number, children: ThreadNode[] = []): ThreadNode => ({
      message: { seq, uid: seq * 10, size: 0, internalDate: new Date(0), header: () => [] },
      children,
    });
    const tree = n(3, [n(6, [n(4, [n(23)]), n(44, [n(7, [n(96)])])])]);
    expect(formatThreads([tree], false)).toBe("(3 6 (4 23)(44 7 96))");
    expect(formatThreads([n(2), tree], true)).toBe("(20)(30 60 (40 230)(440 70 960))");
    const dummy: ThreadNode = { message: null, children: [n(3), n(5)] };
    expect(formatThreads([dummy], false)).toBe("((3)(5))");
    expect(formatThreads([], false)).toBe("");
  });
});
