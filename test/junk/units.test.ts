import { test, expect } from "bun:test";
import fc from "fast-check";
import { classify, spamicity, tokenize, words, trainingClass, keywordsForMove, applyKeywordChange, DEFAULT_JUNK_PARAMS, parseJunkParams, JunkParamsError, type WordCounts } from "../../app/src/junk/index.ts";

const enc = (s: string) => new TextEncoder().encode(s);

test("words: case folded, NFC, numbers by shape, overlong runs dropped", () => {
  expect(words("Hello WORLD, it's 2026! Call 0612345678 now")).toEqual(["hello", "world", "it's", "2026", "call", "#digits10", "now"]);
  expect(words("Cafe\u0301 café")).toEqual(["café", "café"]);
  expect(words("x " + "a".repeat(31))).toEqual([]);
});

test("tokenize: header tokens, decoded bodies (base64, HTML), link hosts, bigrams; Received and Message-ID ignored", () => {
  const body = Buffer.from("Buy cheap pills at https://pills.example/x today").toString("base64");
  const m = enc(
    [
      "Received: from evil by us",
      "Message-ID: <abc123unique@x.example>",
      'From: "Prize Dept" <win@lucky.example>',
      "Reply-To: claims@other.example",
      "Subject: =?utf-8?B?WW91IFdPTg==?=",
      "X-Mailer: MassMailer 3",
      'Content-Type: multipart/alternative; boundary="b"',
      "",
      "--b",
      "Content-Type: text/plain",
      "Content-Transfer-Encoding: base64",
      "",
      body,
      "--b",
      "Content-Type: text/html",
      "",
      '<p>Click <a href="https://claim.example/now">here</a> &amp; win</p><script>var evil=1</script>',
      "--b",
      'Content-Type: application/octet-stream; name="prize.EXE"',
      "",
      "AAAA",
      "--b--",
      "",
    ].join("\r\n"),
  );
  const t = tokenize(m);
  for (const w of ["s:you", "s:won", "fromname:prize", "fromdom:lucky.example", "replytodom:other.example", "mailer:massmailer", "mime:text/html", "attach:exe", "url:pills.example", "url:claim.example", "cheap", "pills", "2:buy cheap", "click", "win"]) {
    expect(t.has(w)).toBe(true);
  }
  for (const w of ["evil", "abc123unique", "script"]) expect(t.has(w)).toBe(false);
});

test("tokenize never throws on arbitrary octets", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 2000 }), (b) => {
      expect(tokenize(b).size).toBeGreaterThanOrEqual(0);
    }),
    { numRuns: 200 },
  );
});

test("spamicity: shares not counts, clamped, rare words pulled to 0.5, neutral words ignored", () => {
  const totals = { hams: 100, spams: 10 };
  // 10 of 100 ham vs 1 of 10 spam: equal shares → 0.5 → ignored.
  expect(spamicity({ ham: 10, spam: 1 }, totals, DEFAULT_JUNK_PARAMS)).toBe(null);
  expect(spamicity({ ham: 0, spam: 10 }, totals, DEFAULT_JUNK_PARAMS)).toBeCloseTo(0.99);
  expect(spamicity({ ham: 50, spam: 0 }, totals, DEFAULT_JUNK_PARAMS)).toBeCloseTo(0.01);
  // Seen once: 0.99 pulled 2/10 of the way to 0.5.
  expect(spamicity({ ham: 0, spam: 1 }, totals, DEFAULT_JUNK_PARAMS)).toBeCloseTo(0.99 + (2 * (0.5 - 0.99)) / 10);
  expect(spamicity({ ham: 1, spam: 1 }, { hams: 0, spams: 5 }, DEFAULT_JUNK_PARAMS)).toBe(null);
});

test("classify: untrained says nothing; top words combine; twograms only when enabled", () => {
  const counts = new Map<string, WordCounts>([
    ["viagra", { ham: 0, spam: 40 }],
    ["meeting", { ham: 40, spam: 0 }],
    ["2:buy now", { ham: 0, spam: 40 }],
  ]);
  expect(classify(["viagra"], counts, { hams: 0, spams: 50 }, DEFAULT_JUNK_PARAMS)).toMatchObject({ trained: false, isJunk: false, probability: 0.5 });
  const totals = { hams: 50, spams: 50 };
  const spam = classify(["viagra", "unknownword"], counts, totals, DEFAULT_JUNK_PARAMS);
  expect(spam.isJunk).toBe(true);
  expect(spam.unknownWords).toBe(1);
  expect(spam.spamWords.map((w) => w.word)).toEqual(["viagra"]);
  const ham = classify(["meeting"], counts, totals, DEFAULT_JUNK_PARAMS);
  expect(ham.isJunk).toBe(false);
  expect(ham.probability).toBeLessThan(0.05);
  const mixed = classify(["viagra", "meeting"], counts, totals, DEFAULT_JUNK_PARAMS);
  expect(mixed.probability).toBeCloseTo(0.5);
  expect(classify(["2:buy now"], counts, totals, DEFAULT_JUNK_PARAMS).spamWords).toEqual([]);
  expect(classify(["2:buy now"], counts, totals, { ...DEFAULT_JUNK_PARAMS, twograms: true }).isJunk).toBe(true);
  // topWords limits the evidence taken.
  const many = new Map<string, WordCounts>(Array.from({ length: 30 }, (_, i) => [`w${i}`, { ham: 0, spam: 30 }] as const));
  expect(classify([...many.keys()], many, totals, { ...DEFAULT_JUNK_PARAMS, topWords: 3 }).spamWords.length).toBe(3);
});

test("parseJunkParams", () => {
  expect(parseJunkParams({})).toEqual({ ...DEFAULT_JUNK_PARAMS });
  expect(() => parseJunkParams([])).toThrow(JunkParamsError);
  expect(() => parseJunkParams({ maxPower: 0.6 })).toThrow(/maxPower/);
  expect(() => parseJunkParams({ twograms: "yes" })).toThrow(/twograms/);
  expect(parseJunkParams({ rareWords: 0, ignoreWords: 0 })).toMatchObject({ rareWords: 0, ignoreWords: 0 });
});

test("training class from keywords and moves", () => {
  expect(trainingClass(["$junk"])).toBe("spam");
  expect(trainingClass(["$NotJunk", "$Forwarded"])).toBe("ham");
  expect(trainingClass(["$Junk", "$NotJunk"])).toBe("spam");
  expect(trainingClass([])).toBe(null);
  expect(keywordsForMove("\\Inbox", "\\Junk")).toEqual({ add: ["$Junk"], remove: ["$NotJunk"] });
  expect(keywordsForMove("\\Junk", "\\Inbox")).toEqual({ add: ["$NotJunk"], remove: ["$Junk"] });
  expect(keywordsForMove("\\Inbox", "\\Archive")).toEqual({ add: ["$NotJunk"], remove: ["$Junk"] });
  expect(keywordsForMove("\\Inbox", null)).toEqual({ add: ["$NotJunk"], remove: ["$Junk"] });
  expect(keywordsForMove("\\Inbox", "\\Trash")).toEqual({ add: [], remove: [] });
  expect(keywordsForMove("\\Sent", "\\Inbox")).toEqual({ add: [], remove: [] });
  expect(applyKeywordChange(["$junk", "$Forwarded"], keywordsForMove("\\Junk", "\\Inbox"))).toEqual(["$Forwarded", "$NotJunk"]);
  expect(trainingClass(applyKeywordChange(["$NotJunk"], keywordsForMove(null, "\\Junk")))).toBe("spam");
});
