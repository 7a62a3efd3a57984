"""Verify DKIM signatures with Debian's python3-dkim (dkimpy), with DNS answered
from a JSON map {"sel._domainkey.example.org.": "v=DKIM1; ..."} (argv[1]) instead
of the network. Reads the message on stdin; prints one line per signature:
"<index> ok" or "<index> fail", exits 0 when every signature verifies."""
import sys, json, dkim

records = json.loads(sys.argv[1])

def dnsfunc(name, timeout=5):
    if isinstance(name, bytes):
        name = name.decode()
    if not name.endswith("."):
        name += "."
    v = records.get(name)
    return v.encode() if v is not None else None

msg = sys.stdin.buffer.read()
d = dkim.DKIM(msg)
sigs = [h for h in d.headers if h[0].lower() == b"dkim-signature"]
allok = len(sigs) > 0
for i in range(len(sigs)):
    try:
        ok = d.verify(idx=i, dnsfunc=dnsfunc)
    except Exception as e:
        sys.stderr.write("error: %r\n" % (e,))
        ok = False
    print("%d %s" % (i, "ok" if ok else "fail"))
    allok = allok and ok
sys.exit(0 if allok else 1)
