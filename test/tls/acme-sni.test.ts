/**
 * SNI selection and certificate hot swap under Bun, over real TLS
 * connections (the Bun behaviours acme-sni.ts relies on).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { X509Certificate } from "node:crypto";
import * as tls from "node:tls";
import { Logger, setLogSink } from "../../app/src/log/index.ts";
import type { TlsPair } from "../../app/src/tls/acme-alpn.ts";
import { bunServeTlsEntries, certificateForServerName, hotSwapOnCertificateChange } from "../../app/src/tls/acme-sni.ts";
import { generateCertificate } from "../../app/src/tls/generate.ts";

const prevSink = setLogSink(() => {});
afterAll(() => setLogSink(prevSink));

const pairs = new Map<string, TlsPair>();
async function make(name: string): Promise<TlsPair> {
  const g = await generateCertificate({ commonName: name, dnsNames: [name], ipAddresses: [], days: 1, usage: "server" });
  return { certPem: g.certPem, keyPem: g.keyPem };
}

/** A stand-in manager: certificates by host, listeners told on `set`. */
class FakeManager {
  certs = new Map<string, TlsPair>();
  private cbs = new Set<(h: string) => void>();
  getCertificate(h: string): TlsPair | null {
    return this.certs.get(h) ?? null;
  }
  onChange(cb: (h: string) => void): () => void {
    this.cbs.add(cb);
    return () => this.cbs.delete(cb);
  }
  set(h: string, p: TlsPair): void {
    this.certs.set(h, p);
    for (const cb of this.cbs) cb(h);
  }
}

beforeAll(async () => {
  for (const n of ["mail.example.org", "autoconfig.example.org", "mail2.example.org"]) pairs.set(n, await make(n));
});

function cn(p: TlsPair): string {
  return new X509Certificate(p.certPem).subject.replace("CN=", "");
}

function peer(port: number, servername: string | undefined): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: "127.0.0.1", port, ...(servername ? { servername } : {}), rejectUnauthorized: false }, () => {
      resolve(new X509Certificate(s.getPeerCertificate(true).raw).subject.replace("CN=", ""));
      s.destroy();
    });
    s.on("error", reject);
    s.setTimeout(5000, () => reject(new Error("timeout")));
  });
}

test("certificateForServerName: own certificate, else the default host's", () => {
  const m = new FakeManager();
  m.certs.set("mail.example.org", pairs.get("mail.example.org")!);
  m.certs.set("autoconfig.example.org", pairs.get("autoconfig.example.org")!);
  expect(cn(certificateForServerName(m, "AutoConfig.Example.org.", "mail.example.org")!)).toBe("autoconfig.example.org");
  expect(cn(certificateForServerName(m, "unknown.example", "mail.example.org")!)).toBe("mail.example.org");
  expect(cn(certificateForServerName(m, null, "mail.example.org")!)).toBe("mail.example.org");
  expect(certificateForServerName(new FakeManager(), "x", "mail.example.org")).toBeNull();
});

test("Bun.serve with bunServeTlsEntries: SNI picks the host; no or unknown SNI gets the default host", async () => {
  const m = new FakeManager();
  m.certs.set("mail.example.org", pairs.get("mail.example.org")!);
  m.certs.set("autoconfig.example.org", pairs.get("autoconfig.example.org")!);
  const entries = bunServeTlsEntries(m, ["autoconfig.example.org", "mail.example.org", "nocert.example.org"], "mail.example.org");
  expect(entries.map((e) => e.serverName)).toEqual(["mail.example.org", "autoconfig.example.org"]);
  const srv = Bun.serve({ hostname: "127.0.0.1", port: 0, tls: entries, fetch: () => new Response("ok") });
  try {
    expect(await peer(srv.port!, "autoconfig.example.org")).toBe("autoconfig.example.org");
    expect(await peer(srv.port!, "mail.example.org")).toBe("mail.example.org");
    expect(await peer(srv.port!, "unknown.example.org")).toBe("mail.example.org");
    expect(await peer(srv.port!, undefined)).toBe("mail.example.org");
  } finally {
    srv.stop(true);
  }
});

test("Bun facts: server.reload keeps the old certificate (why hot swap exists)", async () => {
  const a = pairs.get("mail.example.org")!;
  const b = pairs.get("mail2.example.org")!;
  const srv = Bun.serve({ hostname: "127.0.0.1", port: 0, tls: { cert: a.certPem, key: a.keyPem }, fetch: () => new Response("1") });
  try {
    srv.reload({ fetch: () => new Response("2"), tls: { cert: b.certPem, key: b.keyPem } } as Parameters<typeof srv.reload>[0]);
    expect(await peer(srv.port!, "mail.example.org")).toBe("mail.example.org");
  } finally {
    srv.stop(true);
  }
});

for (const kind of ["Bun.serve", "Bun.listen"] as const) {
  test(`hot swap (${kind}): new connections get the new certificate, none refused, open ones keep working`, async () => {
    const m = new FakeManager();
    m.certs.set("mail.example.org", pairs.get("mail.example.org")!);
    type S = { port: number; stop(closeActive?: boolean): unknown };
    const start = (prev: S | null): S => {
      const p = m.getCertificate("mail.example.org")!;
      if (kind === "Bun.serve") {
        const s = Bun.serve({ hostname: "127.0.0.1", port: prev?.port ?? 0, reusePort: true, tls: { cert: p.certPem, key: p.keyPem }, fetch: () => new Response("ok") });
        return { port: s.port!, stop: (c?: boolean) => s.stop(c) };
      }
      // reusePort works on Bun.listen at run time; bun-types lists it for connect options only.
      return Bun.listen({ hostname: "127.0.0.1", port: prev?.port ?? 0, ...({ reusePort: true } as {}), tls: { cert: p.certPem, key: p.keyPem }, socket: { data(s, d) { s.write(d); } } });
    };
    const hs = hotSwapOnCertificateChange<S>(m, start, new Logger());
    const port = hs.current().port;
    // A connection opened before the swap.
    const early = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const s = tls.connect({ host: "127.0.0.1", port, servername: "mail.example.org", rejectUnauthorized: false }, () => resolve(s));
      s.on("error", reject);
    });
    try {
      expect(await peer(port, "mail.example.org")).toBe("mail.example.org");
      // Connect continuously while swapping.
      let stop = false;
      const seen: string[] = [];
      const failures: string[] = [];
      const loop = (async () => {
        while (!stop) {
          try {
            seen.push(await peer(port, "mail.example.org"));
          } catch (e) {
            failures.push((e as Error).message);
          }
        }
      })();
      await Bun.sleep(50);
      m.set("mail.example.org", pairs.get("mail2.example.org")!); // "renewed"
      await Bun.sleep(100);
      stop = true;
      await loop;
      // A connection sitting in the old socket's accept queue at the instant it closes is reset
      // (Linux SO_REUSEPORT; net.ipv4.tcp_migrate_req=1 moves it to the new socket instead).
      // One sequential client can hit that window at most once; nothing else may fail.
      expect(failures.length).toBeLessThanOrEqual(1);
      for (const f of failures) expect(f).toMatch(/ECONNRESET|socket hang up|disconnected/);
      expect(seen.length).toBeGreaterThan(2);
      expect(seen.at(-1)).toBe("mail2.example.org");
      expect(hs.current().port).toBe(port);
      expect(await peer(port, "mail.example.org")).toBe("mail2.example.org");
      // The early connection still talks (Bun.listen echoes; Bun.serve answers HTTP).
      const reply = await new Promise<string>((resolve, reject) => {
        early.once("data", (d) => resolve(d.toString()));
        early.once("error", reject);
        early.write(kind === "Bun.serve" ? "GET / HTTP/1.1\r\nHost: x\r\n\r\n" : "ping");
        setTimeout(() => reject(new Error("no reply on the early connection")), 3000);
      });
      expect(reply).toContain(kind === "Bun.serve" ? "ok" : "ping");
    } finally {
      early.destroy();
      hs.close();
    }
  });
}
