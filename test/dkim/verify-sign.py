"""Sign a message with Debian's python3-dkim (dkimpy): a third-party signer
for our verifier's tests. argv[1] is JSON: {"selector", "domain", "key"
(PEM for RSA, base64 seed for Ed25519), "algorithm" ("rsa-sha256" or
"ed25519-sha256"), "canon" (["relaxed","simple"]), "length" (bool),
"headers" (list or null)}. Reads the message on stdin, writes the signed
message (the DKIM-Signature field prepended) on stdout."""
import sys, json, dkim

p = json.loads(sys.argv[1])
msg = sys.stdin.buffer.read()
sig = dkim.sign(
    msg,
    p["selector"].encode(),
    p["domain"].encode(),
    p["key"].encode(),
    signature_algorithm=p["algorithm"].encode(),
    canonicalize=tuple(c.encode() for c in p["canon"]),
    include_headers=[h.encode() for h in p["headers"]] if p.get("headers") else None,
    length=bool(p.get("length")),
)
sys.stdout.buffer.write(sig + msg)
