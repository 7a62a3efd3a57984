/**
 * The webmail page (/webmail/): mailboxes, a message list, a message view
 * and a compose form, on a phone as on a desktop. It uses the account
 * session and API (`/account/api/`, the same login as the account page).
 *
 * Safety: message content never becomes markup of this page. Header fields
 * and text are text nodes (dom.ts `h`); an HTML part is shown only in an
 * `<iframe sandbox>` without allow-scripts and allow-same-origin, whose
 * document the server sends with its own strict CSP (webmail-message.ts);
 * remote images load only after "Load remote images".
 *
 * 1. Start: mailboxes and the Inbox's first page; an EventSource on
 *    /account/webmail/events refreshes both when the store changes (new
 *    mail, other clients' changes).
 * 2. A message opens in place of the list; its buttons reply, reply to
 *    all, forward, flag, Junk / Not junk (keywords, move and training as
 *    IMAP does them, server side), move, delete. A message in Drafts opens
 *    in the compose form instead.
 * 3. Compose: attachments upload as soon as they are chosen
 *    (`POST /account/webmail/upload`, streamed to the server, any size up
 *    to the message size limit); "Save draft" stores the form in Drafts
 *    (replacing the earlier save); Send names the uploads and the draft.
 * 1a. Conversations: a toggle (kept in this browser's localStorage) shows
 *    the list as conversations (RFC 5256 REFERENCES threads, server side:
 *    webmail-threads.ts) with their size and unread count; one opens as
 *    its messages in the order written, each of which opens as usual.
 * 4. Keys (not while typing in a field): j/k next/previous message, r
 *    reply, a reply to all, f forward, c compose, / search, # delete,
 *    ! junk, ? this list as an overlay, Escape back to the list.
 */
import { ApiClient, ApiFailure } from "./api.ts";
import { field, formatBytes, h, render, type Child } from "./dom.ts";
import { loginPrompt, setWho } from "./login.ts";
import { errText } from "./forms.ts";

interface MailboxInfo {
  id: number;
  name: string;
  specialUse: string | null;
  total: number;
  unseen: number;
}
interface ListItem {
  id: number;
  mailboxId: number;
  from: string;
  fromAddress: string;
  to: string;
  subject: string;
  date: string;
  size: number;
  flags: string[];
  preview: string;
  hasAttachments: boolean;
  /** Conversation rows only: messages in it, how many unread, any flagged, the senders. */
  count?: number;
  unseen?: number;
  flagged?: boolean;
  participants?: string[];
}
interface ListPage {
  mailbox: { id: number; name: string; specialUse: string | null };
  total: number;
  offset: number;
  items: ListItem[];
}
interface Attachment {
  path: string;
  name: string;
  type: string;
  size: number;
  inline: boolean;
  url: string;
}
interface OpenMessage {
  id: number;
  mailboxId: number;
  flags: string[];
  headers: { from: string; to: string; cc: string; subject: string; date: string; replyTo: string };
  text: string | null;
  htmlUrl: string | null;
  rawUrl: string;
  attachments: Attachment[];
}
interface UploadedFile {
  id: string;
  name: string;
  type: string;
  size: number;
}
interface Draft {
  from?: string;
  to: string;
  cc: string;
  bcc?: string;
  subject: string;
  text: string;
  replyToId: number | null;
  /** The message forwarded (it gets $Forwarded once sent); a reopened draft names it itself. */
  forwardOfId?: number | null;
  /** The saved draft this form came from (replaced on save, removed on send). */
  draftId?: number | null;
  attachments?: UploadedFile[];
}

/** The keyboard shortcuts, as the "?" overlay lists them. */
const SHORTCUTS: [string, string][] = [
  ["j / k", "next / previous message"],
  ["r", "reply"],
  ["a", "reply to all"],
  ["f", "forward"],
  ["c", "compose"],
  ["/", "search"],
  ["#", "delete"],
  ["!", "junk"],
  ["Escape", "back to the list"],
  ["?", "this help"],
];

const PAGE_SIZE = 50;
/** localStorage key of the conversations toggle ("1": on). */
const THREADED_KEY = "letterbox.webmail.conversations";

function loadThreaded(): boolean {
  try {
    return localStorage.getItem(THREADED_KEY) === "1";
  } catch {
    return false;
  }
}

function saveThreaded(on: boolean): void {
  try {
    localStorage.setItem(THREADED_KEY, on ? "1" : "0");
  } catch {
    // Storage refused (private mode): the toggle lasts for this page only.
  }
}


function shortDate(iso: string): string {
  const d = new Date(iso);
  const now = new Date();
  if (d.toDateString() === now.toDateString()) return d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
  return d.toLocaleDateString(undefined, { year: d.getFullYear() === now.getFullYear() ? undefined : "numeric", month: "short", day: "numeric" });
}

/** Upload one file (the request body is the file: the browser streams it); resolves with its upload id. */
async function uploadFile(api: ApiClient, f: File): Promise<UploadedFile> {
  const send = () =>
    fetch(`/account/webmail/upload?name=${encodeURIComponent(f.name)}`, {
      method: "POST",
      headers: { "Content-Type": f.type || "application/octet-stream", "x-csrf": api.csrf },
      body: f,
      credentials: "same-origin",
    });
  let res = await send();
  if (res.status === 403) {
    // Session gone or CSRF value stale: an API call brings the login form, then once more.
    await api.call("info");
    res = await send();
  }
  let body: { id?: string; name?: string; type?: string; size?: number; message?: string; code?: string };
  try {
    body = (await res.json()) as typeof body;
  } catch {
    throw new ApiFailure("server:error", `upload failed: HTTP ${res.status}`);
  }
  if (!res.ok) throw new ApiFailure((body.code as "user:error") ?? "server:error", body.message ?? `upload failed: HTTP ${res.status}`);
  return { id: body.id!, name: body.name ?? f.name, type: body.type ?? f.type, size: body.size ?? f.size };
}

export function startWebmail(app: HTMLElement): void {
  const api = new ApiClient("/account/", loginPrompt("Log in to your mail", true));
  let mailboxes: MailboxInfo[] = [];
  let current = 0;
  let offset = 0;
  let page: ListPage | null = null;
  let query = "";
  let openId: number | null = null;
  let view: "list" | "conversation" | "message" | "compose" = "list";
  let threaded = loadThreaded();
  /** The list call: conversations or single messages. */
  const listPage = (mailboxId: number, from: number) => api.call<ListPage>(threaded ? "conversations" : "messages", { mailboxId, offset: from, limit: PAGE_SIZE });

  const nav = h("nav", { class: "wm-boxes", id: "mailboxes", "aria-label": "Mailboxes" });
  const main = h("section", { class: "wm-main", id: "wm-main" });
  const status = h("p", { class: "status", role: "status", id: "wm-status" });
  const searchForm = h(
    "form",
    { class: "wm-search", id: "search-form", role: "search" },
    h("input", { name: "q", id: "search", type: "search", placeholder: "Search subject, sender, text", "aria-label": "Search" }),
  );
  const toolbar = h(
    "div",
    { class: "wm-toolbar" },
    h("button", { type: "button", id: "compose", onclick: () => compose({ to: "", cc: "", subject: "", text: "", replyToId: null }) }, "Compose"),
    searchForm,
    h("a", { href: "/account/", class: "wm-account", id: "account-link" }, "Account"),
  );
  render(app, h("div", { class: "wm" }, toolbar, status, h("div", { class: "wm-body" }, nav, main)));

  const say = (text: string, error = false) => {
    status.className = error ? "status error" : "status";
    status.textContent = text;
  };
  const fail = (e: unknown) => say(errText(e), true);

  const mailboxLabel = (m: MailboxInfo) => m.name;

  const renderMailboxes = () => {
    render(
      nav,
      h(
        "ul",
        {},
        mailboxes.map((m) =>
          h(
            "li",
            {},
            h(
              "button",
              {
                type: "button",
                class: `wm-box${m.id === current && query === "" ? " active" : ""}`,
                "data-mailbox": m.name,
                onclick: () => {
                  query = "";
                  (searchForm.elements.namedItem("q") as HTMLInputElement).value = "";
                  void showList(m.id, 0).catch(fail);
                },
              },
              h("span", { class: "name" }, mailboxLabel(m)),
              m.unseen > 0 ? h("span", { class: "count", title: `${m.unseen} unread of ${m.total}` }, String(m.unseen)) : null,
            ),
          ),
        ),
      ),
    );
  };

  const loadMailboxes = async () => {
    const order = ["\\Inbox", "\\Drafts", "\\Sent", "\\Archive", "\\Junk", "\\Trash"];
    const rank = (m: MailboxInfo) => (m.specialUse && order.includes(m.specialUse) ? order.indexOf(m.specialUse) : order.length);
    mailboxes = (await api.call<MailboxInfo[]>("mailboxes")).sort((a, b) => rank(a) - rank(b) || a.name.localeCompare(b.name));
    renderMailboxes();
  };

  /** In Sent and Drafts the list shows whom a message is for. */
  const outgoing = () => !query && (page?.mailbox.specialUse === "\\Sent" || page?.mailbox.specialUse === "\\Drafts");

  const row = (m: ListItem) => {
    const conv = m.count !== undefined;
    const unread = conv ? (m.unseen ?? 0) > 0 : !m.flags.includes("\\Seen");
    const flagged = conv ? m.flagged === true : m.flags.includes("\\Flagged");
    const who = outgoing() ? `To: ${m.to || "(no recipient)"}` : conv && m.participants?.length ? m.participants.join(", ") : m.from || m.fromAddress || "(no sender)";
    const open = () => (conv && (m.count ?? 1) > 1 ? openConversation(m.id) : openMessage(m.id));
    return h(
      "li",
      { class: `wm-msg${unread ? " unread" : ""}${m.id === openId ? " current" : ""}`, "data-id": m.id, ...(conv ? { "data-count": m.count } : {}) },
      h(
        "button",
        { type: "button", class: "wm-open", onclick: () => void open().catch(fail) },
        h(
          "span",
          { class: "line1" },
          h(
            "span",
            { class: "from" },
            who,
            // "Ann, Bob (3)", as mail clients show a conversation's size.
            conv && (m.count ?? 1) > 1 ? h("span", { class: "thread-count muted", title: `${m.count} messages, ${m.unseen} unread` }, ` (${m.count})`) : null,
          ),
          h("span", { class: "date" }, shortDate(m.date)),
        ),
        h(
          "span",
          { class: "line2" },
          flagged ? h("span", { class: "star", title: "Flagged" }, "★ ") : null,
          m.hasAttachments ? h("span", { class: "clip", title: "Attachments" }, "file") : null,
          h("span", { class: "subject" }, m.subject || "(no subject)"),
        ),
        h("span", { class: "preview" }, m.preview),
      ),
    );
  };

  const renderList = () => {
    if (!page) return;
    const p = page;
    const title = query ? `Search: ${query}` : p.mailbox.name;
    const more = !query && p.offset + p.items.length < p.total;
    const unit = threaded && !query ? "conversation" : "message";
    const toggle = query
      ? null
      : h(
          "button",
          {
            type: "button",
            class: "link wm-thread-toggle",
            id: "thread-toggle",
            "aria-pressed": threaded ? "true" : "false",
            onclick: () => {
              threaded = !threaded;
              saveThreaded(threaded);
              void showList(current, 0).catch(fail);
            },
          },
          threaded ? "Show single messages" : "Show conversations",
        );
    render(
      main,
      h("h1", { class: "wm-title" }, title, h("span", { class: "muted" }, ` ${p.total} ${unit}${p.total === 1 ? "" : "s"}`)),
      toggle ? h("p", { class: "wm-listbar" }, toggle) : null,
      p.items.length ? h("ul", { class: "wm-list", id: "message-list" }, p.items.map(row)) : h("p", { class: "muted", id: "empty" }, query ? "Nothing found." : "No messages."),
      h(
        "div",
        { class: "wm-pager" },
        !query && p.offset > 0 ? h("button", { type: "button", class: "link", onclick: () => void showList(current, Math.max(0, p.offset - PAGE_SIZE)).catch(fail) }, "Newer") : null,
        more ? h("button", { type: "button", class: "link", id: "older", onclick: () => void showList(current, p.offset + PAGE_SIZE).catch(fail) }, "Older") : null,
      ),
    );
  };

  const showList = async (mailboxId: number, from: number) => {
    current = mailboxId;
    offset = from;
    view = "list";
    openId = null;
    page = await listPage(mailboxId, from);
    renderMailboxes();
    renderList();
    say("");
  };

  const refreshList = async () => {
    await loadMailboxes();
    if (view !== "list") return;
    if (query) return void (await runSearch(query));
    const [mailboxId, from, wasThreaded] = [current, offset, threaded];
    const next = await listPage(mailboxId, from);
    // A message opened (or another mailbox, page or search shown) while the page was asked for stays: a late
    // refresh must not put the list back over it.
    if (view !== "list" || current !== mailboxId || offset !== from || threaded !== wasThreaded || query !== "") return;
    page = next;
    renderList();
  };

  const runSearch = async (q: string) => {
    query = q;
    view = "list";
    const r = await api.call<{ items: ListItem[] }>("search", { query: q });
    // Likewise: a message opened, or another search or list shown, while this search ran stays.
    if (view !== "list" || query !== q) return;
    page = { mailbox: { id: current, name: "", specialUse: null }, total: r.items.length, offset: 0, items: r.items };
    renderMailboxes();
    renderList();
  };

  searchForm.addEventListener("submit", (e) => {
    e.preventDefault();
    const q = field(searchForm, "q").trim();
    if (q === "") void showList(current, 0).catch(fail);
    else void runSearch(q).catch(fail);
  });

  const special = (use: string) => mailboxes.find((m) => m.specialUse === use) ?? null;

  const move = async (id: number, to: number, note: string) => {
    await api.call("move", { ids: [id], mailboxId: to });
    await loadMailboxes();
    await showList(current, offset);
    say(note);
  };

  /** Junk / Not junk: the server sets the keyword, moves and trains (as IMAP would). */
  const judge = async (id: number, junk: boolean) => {
    const r = await api.call<{ moved: number }>("junk", { ids: [id], junk });
    await loadMailboxes();
    await showList(current, offset);
    say(junk ? "Marked as junk." : r.moved ? "Not junk: moved to the Inbox." : "Marked as not junk.");
  };

  const removeMessage = async (id: number) => {
    const r = await api.call<{ deleted: number }>("remove", { ids: [id] });
    await loadMailboxes();
    await showList(current, offset);
    say(r.deleted ? "Deleted for good." : "Moved to Trash.");
  };

  const replyForm = (id: number, mode: "reply" | "replyAll" | "forward") => api.call<Draft>("composeDraft", { id, mode }).then(compose);

  /** The message body: the HTML in the sandboxed frame, or the text as text. */
  const bodyOf = (m: OpenMessage): Child => {
    const box = h("div", { class: "wm-content" });
    const showText = () => render(box, h("pre", { class: "mail-text", id: "mail-text" }, m.text ?? ""));
    const showHtml = (remote: boolean) => {
      const frame = h("iframe", {
        class: "mail-html",
        id: "mail-html",
        // No allow-scripts, no allow-same-origin: the document runs nothing and has an opaque origin.
        sandbox: "allow-popups allow-popups-to-escape-sandbox",
        referrerpolicy: "no-referrer",
        src: remote ? `${m.htmlUrl}?remote=1` : m.htmlUrl!,
        title: "Message",
      });
      const bar = h(
        "p",
        { class: "wm-htmlbar" },
        remote ? h("span", { class: "muted" }, "Remote images are shown.") : h("button", { type: "button", class: "link", id: "load-remote", onclick: () => showHtml(true) }, "Load remote images"),
        m.text !== null ? h("button", { type: "button", class: "link", id: "show-text", onclick: () => showText() }, "Plain text") : null,
      );
      render(box, bar, frame);
    };
    if (m.htmlUrl) showHtml(false);
    else showText();
    return box;
  };

  /** A conversation: its messages in the order written, each opening as a message (step 1a). */
  const openConversation = async (id: number) => {
    const c = await api.call<{ total: number; items: ListItem[] }>("conversation", { id });
    openId = id;
    view = "conversation";
    const first = c.items[0];
    render(
      main,
      h(
        "section",
        { class: "wm-conversation", id: "conversation-view" },
        h("div", { class: "wm-actions" }, h("button", { type: "button", class: "link", id: "back", onclick: () => void showList(current, offset).catch(fail) }, "← Back")),
        h("h1", { class: "wm-title" }, first?.subject || "(no subject)", h("span", { class: "muted" }, ` ${c.total} message${c.total === 1 ? "" : "s"}`)),
        c.total > c.items.length ? h("p", { class: "muted" }, `The latest ${c.items.length} are shown.`) : null,
        h("ul", { class: "wm-list", id: "conversation-list" }, c.items.map(row)),
      ),
    );
    say("");
  };

  const openMessage = async (id: number) => {
    const item = page?.items.find((x) => x.id === id);
    const drafts = special("\\Drafts");
    if (drafts && (item?.mailboxId ?? current) === drafts.id && item) {
      // A draft opens in the compose form, with its attachments.
      openId = id;
      compose(await api.call<Draft>("openDraft", { id }));
      return;
    }
    const m = await api.call<OpenMessage>("message", { id });
    openId = id;
    view = "message";
    const hd = m.headers;
    const flagged = m.flags.includes("\\Flagged");
    const inJunk = special("\\Junk")?.id === m.mailboxId;
    const moveSelect = h(
      "select",
      { id: "move-to", "aria-label": "Move to" },
      h("option", { value: "" }, "Move to…"),
      mailboxes.filter((b) => b.id !== m.mailboxId).map((b) => h("option", { value: b.id }, b.name)),
    );
    moveSelect.addEventListener("change", () => {
      const to = Number(moveSelect.value);
      if (to) void move(m.id, to, "Moved.").catch(fail);
    });
    const draft = (mode: "reply" | "replyAll" | "forward") => () => void replyForm(m.id, mode).catch(fail);
    render(
      main,
      h(
        "article",
        { class: "wm-view", id: "message-view", "data-id": m.id },
        h("div", { class: "wm-actions" }, [
          h("button", { type: "button", class: "link", id: "back", onclick: () => void showList(current, offset).catch(fail) }, "← Back"),
          h("button", { type: "button", id: "reply", onclick: draft("reply") }, "Reply"),
          h("button", { type: "button", id: "reply-all", onclick: draft("replyAll") }, "Reply all"),
          h("button", { type: "button", id: "forward", onclick: draft("forward") }, "Forward"),
          h(
            "button",
            {
              type: "button",
              id: "flag",
              onclick: () =>
                void api
                  .call("setFlags", { ids: [m.id], flagged: !flagged })
                  .then(() => openMessage(m.id))
                  .catch(fail),
            },
            flagged ? "Unflag" : "Flag",
          ),
          h(
            "button",
            {
              type: "button",
              id: "mark-unread",
              onclick: () =>
                void api
                  .call("setFlags", { ids: [m.id], seen: false })
                  .then(() => showList(current, offset))
                  .then(() => say("Marked unread."))
                  .catch(fail),
            },
            "Unread",
          ),
          inJunk || m.flags.includes("$Junk")
            ? h("button", { type: "button", id: "not-junk", onclick: () => void judge(m.id, false).catch(fail) }, "Not junk")
            : h("button", { type: "button", id: "junk", onclick: () => void judge(m.id, true).catch(fail) }, "Junk"),
          h("button", { type: "button", class: "danger", id: "delete", onclick: () => void removeMessage(m.id).catch(fail) }, "Delete"),
          moveSelect,
        ]),
        h("h1", { class: "wm-subject", id: "subject" }, hd.subject || "(no subject)"),
        h(
          "dl",
          { class: "facts wm-headers" },
          h("dt", {}, "From"),
          h("dd", { id: "hdr-from" }, hd.from),
          h("dt", {}, "To"),
          h("dd", {}, hd.to),
          hd.cc ? [h("dt", {}, "Cc"), h("dd", {}, hd.cc)] : null,
          h("dt", {}, "Date"),
          h("dd", {}, hd.date),
        ),
        m.attachments.length
          ? h(
              "ul",
              { class: "wm-attachments", id: "attachments" },
              m.attachments.map((a) => h("li", {}, h("a", { href: a.url, download: a.name }, a.name), h("span", { class: "muted" }, ` ${a.type}, ${formatBytes(a.size)}`))),
            )
          : null,
        bodyOf(m),
        h("p", {}, h("a", { href: m.rawUrl, class: "muted", download: "" }, "Download the original message")),
      ),
    );
    say("");
    void loadMailboxes().catch(fail);
  };

  const compose = (d: Draft) => {
    view = "compose";
    let draftId = d.draftId ?? null;
    const files: UploadedFile[] = [...(d.attachments ?? [])];
    let uploading = 0;
    /** Uploads still on their way: Send and Save wait for them. */
    const pending = new Set<Promise<void>>();
    const settled = async () => {
      while (pending.size) await Promise.all([...pending]);
    };
    const fileList = h("ul", { class: "wm-files", id: "compose-files" });
    const renderFiles = () =>
      render(
        fileList,
        files.map((u) =>
          h(
            "li",
            { "data-upload": u.id },
            h("span", { class: "name" }, u.name),
            h("span", { class: "muted" }, ` ${formatBytes(u.size)} `),
            h(
              "button",
              {
                type: "button",
                class: "link",
                title: `Remove ${u.name}`,
                onclick: () => {
                  files.splice(files.indexOf(u), 1);
                  renderFiles();
                  void api.call("discardUploads", { uploads: [u.id] }).catch(fail);
                },
              },
              "Remove",
            ),
          ),
        ),
        uploading ? h("li", { class: "muted", id: "uploading" }, `Uploading ${uploading} file${uploading === 1 ? "" : "s"}…`) : null,
      );
    const picker = h("input", { name: "files", id: "compose-attach", type: "file", multiple: true });
    picker.addEventListener("change", () => {
      const chosen = picker.files ? [...picker.files] : [];
      picker.value = "";
      for (const file of chosen) {
        uploading++;
        renderFiles();
        const p: Promise<void> = uploadFile(api, file)
          .then((u) => {
            files.push(u);
            say(`Attached ${u.name}.`);
          })
          .catch(fail)
          .finally(() => {
            uploading--;
            pending.delete(p);
            renderFiles();
          });
        pending.add(p);
      }
    });
    const title = h("h1", {}, draftId ? "Draft" : d.replyToId ? "Reply" : "New message");
    const f = h(
      "form",
      { class: "wm-compose card", id: "compose-form" },
      title,
      h("label", {}, "From", h("select", { name: "from", id: "compose-from" })),
      h("label", {}, "To", h("input", { name: "to", value: d.to, autocomplete: "email", multiple: true })),
      h("label", {}, "Cc", h("input", { name: "cc", value: d.cc })),
      h("label", {}, "Bcc", h("input", { name: "bcc", value: d.bcc ?? "" })),
      h("label", {}, "Subject", h("input", { name: "subject", value: d.subject })),
      h("label", {}, "Message", h("textarea", { name: "text", rows: 14 }, d.text)),
      h("label", {}, "Attachments", picker),
      fileList,
      h(
        "div",
        { class: "wm-actions" },
        h("button", { type: "submit", id: "send" }, "Send"),
        h("button", { type: "button", id: "save-draft", onclick: () => void saveDraft().catch(fail) }, "Save draft"),
        h(
          "button",
          {
            type: "button",
            class: "link",
            id: "discard",
            onclick: () => {
              void (async () => {
                if (files.length) await api.call("discardUploads", { uploads: files.map((u) => u.id) });
                await showList(current, offset);
              })().catch(fail);
            },
          },
          "Close",
        ),
        h(
          "button",
          {
            type: "button",
            class: "danger",
            id: "delete-draft",
            hidden: draftId === null,
            onclick: () => {
              if (draftId === null) return;
              void (async () => {
                await api.call("deleteDraft", { id: draftId });
                if (files.length) await api.call("discardUploads", { uploads: files.map((u) => u.id) });
                await loadMailboxes();
                await showList(current, offset);
                say("Draft deleted.");
              })().catch(fail);
            },
          },
          "Delete draft",
        ),
      ),
    );
    renderFiles();
    void api.call<string[]>("fromAddresses").then((addrs) => {
      const sel = f.elements.namedItem("from") as HTMLSelectElement;
      for (const a of addrs) sel.appendChild(h("option", { value: a }, a));
      if (d.from && addrs.includes(d.from)) sel.value = d.from;
    }, fail);
    const fields = () => ({
      from: field(f, "from") || undefined,
      to: field(f, "to"),
      cc: field(f, "cc"),
      bcc: field(f, "bcc"),
      subject: field(f, "subject"),
      text: field(f, "text"),
      replyToId: d.replyToId,
      forwardOfId: d.forwardOfId ?? null,
      draftId,
      uploads: files.map((u) => u.id),
    });
    const saveDraft = async () => {
      await settled();
      const r = await api.call<{ id: number }>("saveDraft", fields());
      draftId = r.id;
      // The uploads now live in the draft; reopening it gives fresh ones, so the form keeps working with the saved copy.
      const again = await api.call<Draft>("openDraft", { id: r.id });
      files.splice(0, files.length, ...(again.attachments ?? []));
      renderFiles();
      title.textContent = "Draft";
      (f.querySelector("#delete-draft") as HTMLButtonElement).hidden = false;
      await loadMailboxes();
      say("Draft saved.");
    };
    f.addEventListener("submit", (e) => {
      e.preventDefault();
      const send = f.querySelector("#send") as HTMLButtonElement;
      void (async () => {
        send.disabled = true;
        if (pending.size) say("Waiting for the attachments to upload…");
        await settled();
        await api.call("send", fields());
        await loadMailboxes();
        await showList(current, offset);
        say("Sent.");
      })().catch((err: unknown) => {
        send.disabled = false;
        fail(err);
      });
    });
    render(main, f);
    (f.elements.namedItem(d.to ? "text" : "to") as HTMLElement).focus();
  };

  /** The "?" overlay: the shortcuts; any key or a click closes it. */
  let help: HTMLElement | null = null;
  const closeHelp = () => {
    help?.remove();
    help = null;
  };
  const showHelp = () => {
    if (help) return closeHelp();
    help = h(
      "div",
      { class: "wm-help", id: "shortcut-help", role: "dialog", "aria-label": "Keyboard shortcuts", onclick: () => closeHelp() },
      h(
        "div",
        { class: "card" },
        h("h2", {}, "Keyboard shortcuts"),
        h(
          "dl",
          { class: "facts" },
          SHORTCUTS.map(([k, what]) => [h("dt", {}, h("kbd", {}, k)), h("dd", {}, what)]),
        ),
        h("p", { class: "muted" }, "Press any key to close."),
      ),
    );
    document.body.appendChild(help);
  };

  // Keys (step 4): only when no field has the focus.
  document.addEventListener("keydown", (e) => {
    const t = e.target as HTMLElement | null;
    if (e.ctrlKey || e.metaKey || e.altKey || (t && (/^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName) || t.isContentEditable))) return;
    if (help) {
      e.preventDefault();
      return closeHelp();
    }
    const items = page?.items ?? [];
    const at = items.findIndex((m) => m.id === openId);
    const opened = view === "message" && openId !== null ? openId : null;
    const k = e.key;
    if (k === "j" || k === "k") {
      const next = items[k === "j" ? at + 1 : at <= 0 ? 0 : at - 1];
      if (next) void openMessage(next.id).catch(fail);
    } else if ((k === "r" || k === "a" || k === "f") && opened !== null) {
      void replyForm(opened, k === "r" ? "reply" : k === "a" ? "replyAll" : "forward").catch(fail);
    } else if (k === "c" && view !== "compose") {
      compose({ to: "", cc: "", subject: "", text: "", replyToId: null });
    } else if (k === "/") {
      const q = searchForm.elements.namedItem("q") as HTMLInputElement;
      q.focus();
      q.select();
    } else if (k === "#" && opened !== null) {
      void removeMessage(opened).catch(fail);
    } else if (k === "!" && opened !== null) {
      void judge(opened, true).catch(fail);
    } else if (k === "?") {
      showHelp();
    } else if (k === "Escape" && view !== "list") {
      void showList(current, offset).catch(fail);
    } else return;
    e.preventDefault();
  });

  // Updates (step 1): refresh on the store's changes, a burst at a time.
  let pending: ReturnType<typeof setTimeout> | null = null;
  const startEvents = () => {
    const es = new EventSource("/account/webmail/events");
    const soon = () => {
      if (pending) return;
      pending = setTimeout(() => {
        pending = null;
        void refreshList().catch(fail);
      }, 150);
    };
    es.addEventListener("change", soon);
    // On every (re)connection: changes made before the stream listened (or while it was down) are fetched.
    es.addEventListener("hello", soon);
  };

  void (async () => {
    // The first call logs in when needed; the event stream starts with the session.
    const info = await api.call<{ name: string }>("info");
    setWho(api, info.name);
    await loadMailboxes();
    const inbox = special("\\Inbox") ?? mailboxes[0];
    if (!inbox) return void render(main, h("p", {}, "No mailboxes."));
    await showList(inbox.id, 0);
    startEvents();
  })().catch(fail);
}
