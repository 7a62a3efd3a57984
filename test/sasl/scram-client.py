"""An independent SCRAM-SHA-256 client (RFC 5802/7677) and SASLprep (RFC 4013, via
Python's stringprep tables), for cross-checking Letterbox's server side.
Reads one JSON request on stdin, writes one JSON answer on stdout."""
import base64, hashlib, hmac, json, stringprep, sys, unicodedata


def saslprep(s):
    s = "".join(" " if stringprep.in_table_c12(c) else c for c in s if not stringprep.in_table_b1(c))
    s = unicodedata.ucd_3_2_0.normalize("NFKC", s)
    checks = [stringprep.in_table_c12, stringprep.in_table_c21_c22, stringprep.in_table_c3, stringprep.in_table_c4,
              stringprep.in_table_c5, stringprep.in_table_c6, stringprep.in_table_c7, stringprep.in_table_c8,
              stringprep.in_table_c9]
    for c in s:
        if any(f(c) for f in checks):
            raise ValueError("prohibited")
    if any(stringprep.in_table_d1(c) for c in s):
        if any(stringprep.in_table_d2(c) for c in s):
            raise ValueError("bidi")
        if not stringprep.in_table_d1(s[0]) or not stringprep.in_table_d1(s[-1]):
            raise ValueError("bidi")
    return s


def saslname(s):
    return s.replace("=", "=3D").replace(",", "=2C")


def b64(b):
    return base64.b64encode(b).decode()


req = json.load(sys.stdin)
if req["op"] == "saslprep":
    out = []
    for s in req["inputs"]:
        try:
            out.append(saslprep(s))
        except ValueError:
            out.append(None)
    json.dump(out, sys.stdout)
elif req["op"] == "first":
    json.dump({"message": req["gs2"] + "n=" + saslname(saslprep(req["user"])) + ",r=" + req["cnonce"]}, sys.stdout)
elif req["op"] == "final":
    client_first_bare = req["client_first"][len(req["gs2"]):]
    server_first = req["server_first"]
    attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
    assert attrs["r"].startswith(req["cnonce"])
    salted = hashlib.pbkdf2_hmac("sha256", saslprep(req["password"]).encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    cbind = req.get("cbind_gs2", req["gs2"]).encode() + bytes.fromhex(req.get("cbdata_hex", ""))
    without_proof = "c=" + b64(cbind) + ",r=" + attrs["r"]
    auth_message = (client_first_bare + "," + server_first + "," + without_proof).encode()
    signature = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature))
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    json.dump({"message": without_proof + ",p=" + b64(proof),
               "server_final": "v=" + b64(hmac.new(server_key, auth_message, hashlib.sha256).digest())}, sys.stdout)
