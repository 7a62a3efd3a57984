/**
 * The webmail in the real program (`letterbox localserve`, as `npm start`
 * runs it): run-server wires the outgoing queue into the webmail, so a
 * message to another domain goes through the queue and, in
 * local mode, comes back into the account (queue/local.ts); the Sent copy
 * is there too.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { LOCAL_ACCOUNT, LOCAL_PASSWORD, LOCALSERVE_BASE_PORTS, startLocalserve, type Localserve } from "../helpers/letterbox.ts";
import { tmpDir, type TmpDir } from "../helpers/tmp.ts";
import { Client } from "./harness.ts";

let dir: TmpDir;
let ls: Localserve;

beforeAll(async () => {
  dir = tmpDir("webmail-localserve");
  ls = await startLocalserve({ dir: dir.path });
}, 90_000);

afterAll(async () => {
  await ls?.stop();
  dir?.cleanup();
});

test("send from the webmail through the queue of a running localserve", async () => {
  const client = new Client(`http://127.0.0.1:${LOCALSERVE_BASE_PORTS.http + ls.offset}`);
  const csrf = await client.login("/account/", LOCAL_PASSWORD, LOCAL_ACCOUNT);
  const call = async (method: string, params: object = {}) => {
    const r = await client.api("/account/", method, params, { csrf });
    if (r.status !== 200) throw new Error(`${method}: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  };
  const page = await client.request("/webmail/");
  expect(page.status).toBe(200);
  const r = await call("send", { to: "someone@elsewhere.example", subject: "through the queue", text: "queued by the webmail" });
  expect(r.queued).toBe(true);
  const boxes: { id: number; specialUse: string | null }[] = await call("mailboxes");
  const inbox = boxes.find((b) => b.specialUse === "\\Inbox")!;
  const sent = boxes.find((b) => b.specialUse === "\\Sent")!;
  expect((await call("messages", { mailboxId: sent.id })).items[0].subject).toBe("through the queue");
  // Local mode delivers "remote" mail back into the account through the queue (r.queued above: the queue took it).
  const deadline = Date.now() + 20_000;
  let found: { id: number } | undefined;
  while (!found && Date.now() < deadline) {
    found = (await call("messages", { mailboxId: inbox.id })).items.find((i: { subject: string }) => i.subject === "through the queue");
    if (!found) await Bun.sleep(200);
  }
  expect(found).toBeDefined();
  const raw = await (await client.request(`/account/webmail/msg/${found!.id}/raw`)).text();
  expect(raw).toContain("Subject: through the queue");
}, 60_000);
