/**
 * Where incoming mail goes, over a real store: rules, reputation from the
 * account's history (changed by real IMAP moves and flag changes), DNSBL
 * through our resolver to a fake list, the Bayesian filter, and the
 * first-time sender delay.
 */
import { test, expect } from "bun:test";
import { Logger, setLogSink } from "../../app/src/log/index.ts";
import { Resolver } from "../../app/src/dns/index.ts";
import { ImapStore } from "../../app/src/store/imap.ts";
import { FLAG_SEEN } from "../../app/src/store/flags.ts";
import type { Store } from "../../app/src/store/store.ts";
import { IncomingFilter, normalizeIp, remoteNet, vote, type IncomingVerdicts, type Decision } from "../../app/src/reputation/index.ts";
import { saveRules } from "../../app/src/rules/index.ts";
import { parseAddress } from "../../app/src/smtp/address.ts";
import { withTempStore, enc } from "../store/helpers.ts";
import { startDnsbl } from "../dnsbl/zone.ts";
import { generateCorpus } from "../junk/corpus.ts";

const DELAY = 15_000;

function mail(from: string, subject: string, body = "Hello, see you tomorrow at the meeting.\r\n", extra = ""): Uint8Array {
  return enc(`From: ${from}\r\nTo: me@letterbox.example\r\nSubject: ${subject}\r\nMessage-ID: <${crypto.randomUUID()}@x.example>\r\n${extra}\r\n${body}`);
}

function verdicts(v: { ip: string; mailFrom: string | null; spf?: IncomingVerdicts["spf"]; dkim?: string[]; dmarc?: IncomingVerdicts["dmarc"] }): IncomingVerdicts {
  return { remoteIp: v.ip, ehlo: "mx.example", mailFrom: v.mailFrom === null ? null : parseAddress(v.mailFrom), spf: v.spf ?? "none", dkimPassDomains: v.dkim ?? [], dmarc: v.dmarc };
}

/** Decide, deliver where decided, record: what smtpserver will do. */
async function receive(store: Store, f: IncomingFilter, accountId: number, data: Uint8Array, v: IncomingVerdicts): Promise<{ d: Decision; uid: number; mailboxId: number }> {
  const d = await f.decide({ accountId, message: data, verdicts: v });
  const delivered = await store.deliver({ data, targets: [{ accountId, mailbox: d.mailbox }] });
  f.record(d, v, delivered);
  return { d, uid: delivered[0]!.uid, mailboxId: delivered[0]!.mailboxId };
}

test("reputation: first-time delay, known good after reading, junk after moving to Junk, forged From does not inherit", async () => {
  const prev = setLogSink(() => {});
  try {
    await withTempStore(async (store) => {
      const acc = await store.addAccount("me@letterbox.example", "pw-123456");
      const imap = new ImapStore(store);
      const f = new IncomingFilter({ store, log: new Logger(), firstTimeDelayMs: DELAY });
      const friendV = verdicts({ ip: "198.51.100.7", mailFrom: "friend@friends.example", spf: "pass", dkim: ["friends.example"], dmarc: "pass" });

      // 1. First message from a friend: untrained filter, no history: Inbox, with the first-time delay.
      const m1 = await receive(store, f, acc.id, mail("Friend <friend@friends.example>", "hi"), friendV);
      expect(m1.d).toMatchObject({ mailbox: "\\Inbox", junk: false, step: "default", delayMs: DELAY });
      expect(m1.d.reputation?.firstTime).toBe(true);
      expect(m1.d.sender.msgFromVerified).toBe(true);
      expect(f.reputation.verdictOf(store.listMessages(m1.mailboxId)[0]!.id)).toMatchObject({ msgFromVerified: true, verifiedDomains: ["friends.example"] });

      // 2. Second message: history exists (not judged yet): inconclusive, no delay.
      const m2 = await receive(store, f, acc.id, mail("Friend <friend@friends.example>", "again"), friendV);
      expect(m2.d).toMatchObject({ mailbox: "\\Inbox", step: "default", delayMs: 0 });
      expect(m2.d.reputation?.kind).toBe("inconclusive");

      // 3. The user reads the first message and keeps it: known good.
      imap.storeFlags(acc.id, m1.mailboxId, [m1.uid], "add", FLAG_SEEN, [], null);
      const m3 = await receive(store, f, acc.id, mail("Friend <friend@friends.example>", "third"), friendV);
      expect(m3.d).toMatchObject({ mailbox: "\\Inbox", step: "reputation", delayMs: 0 });
      expect(m3.d.reputation?.reason).toContain("verified from address friend@friends.example");

      // 4. A spammer with SPF pass; the user moves the message to Junk.
      const spamV = verdicts({ ip: "203.0.113.9", mailFrom: "promo@bad.example", spf: "pass" });
      const s1 = await receive(store, f, acc.id, mail("Promo <promo@bad.example>", "WIN"), spamV);
      expect(s1.d).toMatchObject({ mailbox: "\\Inbox", delayMs: DELAY });
      const junkBox = store.getMailbox(acc.id, "\\Junk")!;
      imap.move(acc.id, s1.mailboxId, [s1.uid], junkBox.id);
      const s2 = await receive(store, f, acc.id, mail("Promo <promo@bad.example>", "WIN again"), spamV);
      expect(s2.d).toMatchObject({ mailbox: "\\Junk", junk: true, step: "reputation", delayMs: 0 });
      expect(s2.d.reputation?.reason).toContain("bad.example");

      // 5. The spammer forges the friend's From from the same IP, without DKIM or SPF for friends.example.
      const forged = await receive(store, f, acc.id, mail("Friend <friend@friends.example>", "urgent"), verdicts({ ip: "203.0.113.9", mailFrom: "x@other.example", spf: "fail" }));
      expect(forged.d.sender.msgFromVerified).toBe(false);
      expect(forged.d).toMatchObject({ mailbox: "\\Junk", step: "reputation" });
      expect(forged.d.reputation?.reason).toContain("remote ip 203.0.113.9");
      // Not a first-time sender: the From address was seen before (even though unverified now).
      expect(forged.d.delayMs).toBe(0);

      // 6. The user rescues a junk message ($NotJunk) and it counts as ham.
      imap.storeFlags(acc.id, junkBox.id, [s2.uid], "add", 0, ["$NotJunk"], null);
      const h = f.reputation.history(acc.id, { kind: "verifiedDomain", domain: "bad.example" }, 10, 1e12);
      expect(h.map((e) => e.class).sort()).toEqual(["ham", "junk"]);
      expect(vote(h)).toBe(null); // tie: inconclusive

      // 7. Writing to someone makes their verified replies welcome.
      f.noteOutgoing(acc.id, [parseAddress("New.Person@Partner.example")]);
      const reply = await receive(store, f, acc.id, mail("<new.person@partner.example>", "Re: hello"), verdicts({ ip: "192.0.2.44", mailFrom: "new.person@partner.example", spf: "pass", dkim: ["partner.example"] }));
      expect(reply.d).toMatchObject({ mailbox: "\\Inbox", step: "reputation", delayMs: 0 });
      expect(reply.d.reputation?.reason).toContain("account wrote to");
      // ... but not when the From is not verified.
      const fake = await f.decide({ accountId: acc.id, message: mail("<new.person@partner.example>", "Re: hello"), verdicts: verdicts({ ip: "192.0.2.45", mailFrom: "a@elsewhere.example" }) });
      expect(fake.reputation?.kind).toBe("inconclusive");
    });
  } finally {
    setLogSink(prev);
  }
});

test("inconclusive reputation: DNSBL listing files into Junk; the Bayesian filter decides the rest", async () => {
  const prev = setLogSink(() => {});
  const dns = await startDnsbl([{ zone: "bl.example", entries: new Map([["66.113.0.203", { a: ["127.0.0.2"], txt: "known spam source" }]]) }]);
  try {
    await withTempStore(async (store) => {
      const acc = await store.addAccount("me@letterbox.example", "pw-123456");
      const resolver = new Resolver({ servers: [{ host: dns.host, port: dns.port }], timeoutMs: 5000, attempts: 1 });
      const f = new IncomingFilter({ store, resolver, dnsblZones: ["bl.example", "down.example"], log: new Logger(), firstTimeDelayMs: DELAY });
      const listed = await f.decide({ accountId: acc.id, message: mail("<a@new.example>", "hello"), verdicts: verdicts({ ip: "203.0.113.66", mailFrom: "a@new.example", spf: "pass" }) });
      expect(listed).toMatchObject({ mailbox: "\\Junk", junk: true, step: "dnsbl", delayMs: DELAY });
      expect(listed.reason).toContain("known spam source");
      expect(dns.queries.some((q) => q.name === "66.113.0.203.bl.example")).toBe(true);

      // Train the filter from generated mail, then unknown senders are judged by content.
      const corpus = generateCorpus(11, { ham: 150, spam: 150 });
      for (const m of corpus) f.junk.train(acc.id, m.data, m.spam ? "spam" : "ham");
      const held = generateCorpus(12, { ham: 20, spam: 20 });
      let right = 0;
      for (const [i, m] of held.entries()) {
        const d = await f.decide({ accountId: acc.id, message: m.data, verdicts: verdicts({ ip: `192.0.2.${i + 1}`, mailFrom: `x${i}@unknown${i}.example` }) });
        expect(["junkfilter"]).toContain(d.step);
        expect(d.classification?.trained).toBe(true);
        // The list that does not answer (REFUSED) decided nothing.
        expect(d.dnsbl.map((r) => r.status)).toEqual(["pass", "temperror"]);
        if (d.junk === m.spam && d.mailbox === (m.spam ? "\\Junk" : "\\Inbox")) right++;
      }
      console.log(`decide on held-out generated mail: ${right}/${held.length} filed right`);
      expect(right).toBeGreaterThanOrEqual(36);
      // A known-good sender is not subject to the content filter.
      const spammy = held.find((m) => m.spam)!;
      f.noteOutgoing(acc.id, [parseAddress("pal@pals.example")]);
      const fromPal = spammy.data.slice();
      const text = new TextDecoder().decode(fromPal).replace(/^From: .*$/m, "From: Pal <pal@pals.example>");
      const d = await f.decide({ accountId: acc.id, message: enc(text), verdicts: verdicts({ ip: "203.0.113.66", mailFrom: "pal@pals.example", spf: "pass", dmarc: "pass" }) });
      expect(d).toMatchObject({ mailbox: "\\Inbox", step: "reputation" });
      // The DNSBL is asked only when reputation is inconclusive.
      expect(d.dnsbl).toEqual([]);
    });
  } finally {
    setLogSink(prev);
    await dns.close();
  }
});

test("rules: trusted list skips junk checks; a rule's mailbox is used for ham; a missing mailbox falls back to Inbox", async () => {
  const lines: string[] = [];
  const prev = setLogSink(() => {});
  try {
    await withTempStore(async (store) => {
      setLogSink((l) => lines.push(l));
      const acc = await store.addAccount("me@letterbox.example", "pw-123456");
      store.createMailbox(acc.id, "Lists");
      store.createMailbox(acc.id, "Receipts");
      const f = new IncomingFilter({ store, log: new Logger(), firstTimeDelayMs: DELAY });
      saveRules(f.rules, acc.id, [
        { mailbox: "Lists", listAllowDomain: "lists.example" },
        { mailbox: "Receipts", msgFromRegexp: "@shop\\.example$" },
        { mailbox: "Gone", msgFromRegexp: "@gone\\.example$" },
      ]);
      // Make everything from 203.0.113.5 junk by history first.
      const junkV = verdicts({ ip: "203.0.113.5", mailFrom: "list-bounces@lists.example", spf: "pass" });
      const j = await receive(store, f, acc.id, mail("<a@spam.example>", "x"), verdicts({ ip: "203.0.113.5", mailFrom: null }));
      new ImapStore(store).storeFlags(acc.id, j.mailboxId, [j.uid], "add", 0, ["$Junk"], null);
      const listMail = mail("Poster <poster@gmail.example>", "[dev] question", undefined, "List-Id: Dev list <dev.lists.example>\r\n");
      const d = await f.decide({ accountId: acc.id, message: listMail, verdicts: junkV });
      expect(d).toMatchObject({ mailbox: "Lists", step: "rule", junk: false, delayMs: 0, ruleIndex: 0 });
      // Same message, list domain not verified: the rule does not apply and the IP's history says junk.
      const d2 = await f.decide({ accountId: acc.id, message: listMail, verdicts: verdicts({ ip: "203.0.113.5", mailFrom: "x@other.example" }) });
      expect(d2).toMatchObject({ mailbox: "\\Junk", step: "reputation" });
      const r = await f.decide({ accountId: acc.id, message: mail("<orders@shop.example>", "Your order"), verdicts: verdicts({ ip: "192.0.2.8", mailFrom: "orders@shop.example" }) });
      expect(r).toMatchObject({ mailbox: "Receipts", junk: false, step: "rule", ruleIndex: 1, delayMs: DELAY });
      const g = await f.decide({ accountId: acc.id, message: mail("<x@gone.example>", "hi"), verdicts: verdicts({ ip: "192.0.2.9", mailFrom: "x@gone.example" }) });
      expect(g).toMatchObject({ mailbox: "\\Inbox", ruleIndex: null });
      expect(lines.some((l) => l.includes("does not exist"))).toBe(true);
    });
  } finally {
    setLogSink(prev);
  }
});

test("remoteNet groups IPv4 /24 and IPv6 /64", () => {
  expect(remoteNet("192.0.2.77")).toBe("192.0.2.0/24");
  expect(remoteNet("2001:db8:1:2:3:4:5:6")).toBe("2001:db8:1:2::/64");
  expect(remoteNet("::ffff:192.0.2.1")).toBe("192.0.2.0/24");
  expect(normalizeIp("::FFFF:192.0.2.1")).toBe("192.0.2.1");
  expect(normalizeIp("2001:db8::1")).toBe("2001:db8::1");
  expect(remoteNet("nonsense")).toBe("");
});
