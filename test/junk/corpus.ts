/**
 * A reproducible corpus of realistic ham and spam messages for the junk
 * filter tests: templated sentences with varied wording, random names,
 * domains and numbers, shared "noise" words in both classes, some words of
 * the other class mixed in, HTML and base64 bodies. Seeded: the same seed
 * gives the same messages.
 */

/** mulberry32: small, fast, good enough for test data. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface CorpusMessage {
  spam: boolean;
  data: Uint8Array;
  subject: string;
}

const FIRST = ["anna", "bram", "chloe", "daan", "emma", "finn", "greta", "hugo", "iris", "jonas", "karin", "lucas", "mila", "noah", "olga", "pieter", "quinn", "rosa", "sven", "tess"];
const LAST = ["jansen", "de vries", "bakker", "visser", "smit", "meijer", "mulder", "bos", "vos", "peters", "hendriks", "dekker"];
const HAM_DOMAINS = ["example.org", "family.example", "work.example.com", "uni.example.edu", "opensource.example.net", "club.example"];
const SPAM_DOMAINS = ["best-deals.example", "crypto-win.example", "pharma-direct.example", "lucky-prize.example", "secure-verify.example", "cheap-meds.example", "yield-max.example"];
const NOISE = ["the", "and", "you", "for", "this", "with", "that", "have", "will", "your", "about", "today", "please", "just", "more", "time", "here", "now", "also", "know", "get", "like", "new", "see", "some"];

const HAM_SUBJECTS = [
  "Meeting on {day} about the {project} roadmap",
  "Re: code review for {project} pull request #{num}",
  "Dinner at {first}'s place on {day}?",
  "Photos from the {event}",
  "Minutes of the {project} planning call",
  "Re: question about the {project} release",
  "Can we move our {day} call?",
  "{event} plans for next month",
  "Your invoice {num} from {org}",
  "Re: homework help for {first}",
];
const HAM_SENTENCES = [
  "Could we meet on {day} at {hour} to go over the {project} roadmap?",
  "I left a few comments on your pull request, mostly about error handling in the parser.",
  "The tests pass locally now, but the build on the CI server still times out.",
  "Mom asked whether you are coming for dinner on {day}; she is making lasagna.",
  "I uploaded the photos from the {event} to the shared album.",
  "Let's keep the agenda short: status, blockers, and the release date.",
  "Thanks for the quick review, I pushed a fix for the off-by-one in the loop.",
  "The kids loved the {event}, {first} still talks about the boat trip.",
  "Can you send me the slides before the meeting so I can prepare questions?",
  "I think we should refactor the storage layer before adding more features.",
  "Attached are the minutes; action items are assigned to {first} and me.",
  "The library meeting moved to room {num} on the second floor.",
  "Grandpa's birthday is on {day}, shall we get him a book about gardening?",
  "Please rebase on main, there was a conflict in the config loader.",
  "Your invoice for the {project} subscription is attached, payment is due in 30 days.",
  "Do you still have the recipe for the apple pie from last summer?",
  "The benchmark shows the new index makes queries about twice as fast.",
  "I will be out of office until {day}; {first} can answer urgent questions.",
  "We could offer the new intern a desk near the window.",
  "Free parking is available behind the community center on weekends.",
  // Newsletters the user subscribed to: promotional words in ham.
  "Our spring sale starts {day}: {pct}% off all garden tools, order online.",
  "As a member you get free shipping on your next order, offer ends {day}.",
  "Click the link below to confirm your registration for the {event}.",
  "Your bank statement for this month is available, log in to the app to view it.",
];
const SPAM_SUBJECTS = [
  "CONGRATULATIONS! You have won {money}",
  "Cheap {pill} without prescription - {pct}% OFF",
  "Turn {money} into a fortune with {coin}",
  "Urgent: verify your account now",
  "Your exclusive prize is waiting, claim today",
  "Limited offer: {pill} delivered discreetly",
  "Make {money} per week from home",
  "Re: your wallet has been selected for the {coin} airdrop",
  "FINAL NOTICE: unclaimed reward {num}",
  "Lose weight fast with this one trick",
];
const SPAM_SENTENCES = [
  "Buy {pill} online now at the lowest price guaranteed, no prescription needed.",
  "You have been selected as the lucky winner of {money} in our international lottery.",
  "Invest in {coin} today and earn {pct}% returns every single week, guaranteed.",
  "Click the link below to claim your prize before it expires.",
  "Your account will be suspended unless you verify your password immediately.",
  "Discreet shipping worldwide, order {pill} and save {pct}% today only.",
  "Our trading bot doubled the deposit of thousands of satisfied investors.",
  "Act now, this exclusive offer is limited to the first {num} customers.",
  "Send your bank details to receive the transfer of {money} within 24 hours.",
  "Enlarge your results with our clinically proven formula, money back guarantee.",
  "Dear friend, I am a barrister and I need your help to move {money} abroad.",
  "Unsubscribe is not needed, you are receiving this because you are a winner.",
  "Withdraw your {coin} bonus now, the airdrop closes tonight.",
  "Hot singles in your area want to meet you, click here.",
  "Get a loan approved in minutes with no credit check, rates from {pct}%.",
  // Spam dressed up as personal mail.
  "Hi, are you available? I need a quick favor, can you buy gift cards for the meeting on {day}?",
  "I saw your profile on the {project} website and would like to discuss a business opportunity.",
  "Please review the attached invoice {num} and confirm the payment today.",
  "Your package could not be delivered on {day}, pay the customs fee to reschedule.",
];
const PILLS = ["viagra", "cialis", "tramadol", "xanax", "phentermine", "valium"];
const COINS = ["bitcoin", "ethereum", "dogecoin", "solana", "the new token"];
const DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday"];
const PROJECTS = ["letterbox", "website", "billing", "mobile app", "backup tool", "search"];
const EVENTS = ["wedding", "holiday", "school play", "birthday party", "hiking trip", "concert"];
const ORGS = ["the water company", "your ISP", "the sports club", "the dentist"];

export function generateCorpus(seed: number, counts: { ham: number; spam: number }): CorpusMessage[] {
  const r = rng(seed);
  const pick = <T>(a: readonly T[]): T => a[Math.floor(r() * a.length)]!;
  const int = (lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));
  const fill = (s: string) =>
    s
      .replace(/\{day\}/g, () => pick(DAYS))
      .replace(/\{project\}/g, () => pick(PROJECTS))
      .replace(/\{event\}/g, () => pick(EVENTS))
      .replace(/\{first\}/g, () => cap(pick(FIRST)))
      .replace(/\{org\}/g, () => pick(ORGS))
      .replace(/\{hour\}/g, () => `${int(9, 17)}:${pick(["00", "15", "30", "45"])}`)
      .replace(/\{num\}/g, () => String(int(2, 9999)))
      .replace(/\{pill\}/g, () => pick(PILLS))
      .replace(/\{coin\}/g, () => pick(COINS))
      .replace(/\{pct\}/g, () => String(int(10, 95)))
      .replace(/\{money\}/g, () => `$${int(1, 999)},${String(int(0, 999)).padStart(3, "0")}`);
  const cap = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);
  const out: CorpusMessage[] = [];
  const make = (spam: boolean) => {
    const subject = fill(pick(spam ? SPAM_SUBJECTS : HAM_SUBJECTS));
    const first = pick(FIRST);
    const last = pick(LAST);
    // Spam also comes from hijacked accounts at ordinary domains.
    const domain = spam ? (r() < 0.5 ? pick(SPAM_DOMAINS) : r() < 0.5 ? `mail${int(1, 999)}.example` : pick(HAM_DOMAINS)) : pick(HAM_DOMAINS);
    const fromName = spam && r() < 0.4 ? pick(["Customer Service", "Prize Department", "Security Team", "Pharmacy"]) : `${cap(first)} ${cap(last)}`;
    const sentences: string[] = [];
    const n = int(3, 8);
    for (let i = 0; i < n; i++) {
      let s = fill(pick(spam ? SPAM_SENTENCES : HAM_SENTENCES));
      // Noise shared by both classes, and now and then a sentence of the other class.
      if (r() < 0.5) s += " " + Array.from({ length: int(2, 6) }, () => pick(NOISE)).join(" ") + ".";
      if (r() < 0.2) s = fill(pick(spam ? HAM_SENTENCES : SPAM_SENTENCES));
      sentences.push(s);
    }
    if (spam && r() < 0.6) sentences.push(`Visit https://${pick(SPAM_DOMAINS)}/${int(100, 99999)} now.`);
    if (!spam && r() < 0.3) sentences.push(`See https://${pick(["docs.example.org", "git.example.org", "photos.family.example"])}/${int(1, 500)} for details.`);
    const greeting = spam ? pick(["Dear customer,", "Hello friend,", "Attention:", "Hi,"]) : pick(["Hi,", "Hello,", `Hey ${cap(pick(FIRST))},`, "Dear all,"]);
    const closing = spam ? pick(["Best regards, The Team", "Sincerely, Management", "Thanks, Support"]) : pick([`Cheers, ${cap(first)}`, `Thanks, ${cap(first)}`, `Love, ${cap(first)}`, `Best, ${cap(first)} ${cap(last)}`]);
    const text = [greeting, "", ...sentences, "", closing].join("\r\n");
    const headers = [
      `From: "${fromName}" <${first}.${last.replace(/ /g, "")}${int(1, 99)}@${domain}>`,
      `To: me@letterbox.example`,
      `Subject: ${subject}`,
      `Date: ${new Date(Date.UTC(2026, int(0, 10), int(1, 28), int(0, 23), int(0, 59))).toUTCString()}`,
      `Message-ID: <${int(1, 1e9)}.${int(1, 1e9)}@${domain}>`,
      "MIME-Version: 1.0",
    ];
    let body: string;
    const style = r();
    if (spam && style < 0.3) {
      headers.push('Content-Type: text/html; charset="utf-8"');
      body = `<html><body><p>${sentences.map((s) => s.replace(/&/g, "&amp;")).join("</p><p>")}</p><a href="https://${pick(SPAM_DOMAINS)}/c/${int(1, 9999)}">CLICK HERE</a></body></html>\r\n`;
    } else if (style < 0.45) {
      headers.push('Content-Type: text/plain; charset="utf-8"', "Content-Transfer-Encoding: base64");
      body = (Buffer.from(text, "utf8").toString("base64").match(/.{1,76}/g) ?? []).join("\r\n") + "\r\n";
    } else {
      headers.push('Content-Type: text/plain; charset="utf-8"');
      body = text + "\r\n";
    }
    out.push({ spam, subject, data: new TextEncoder().encode(headers.join("\r\n") + "\r\n\r\n" + body) });
  };
  for (let i = 0; i < counts.ham; i++) make(false);
  for (let i = 0; i < counts.spam; i++) make(true);
  // Interleave deterministically.
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}
