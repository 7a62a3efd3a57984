"""Independent SMTP clients for test/smtpserver/real-clients.test.ts.

Written against the RFCs with Python's smtplib, hashlib and hmac only, so
they share no code with the server they test. Usage:
  clients.py utf8 PORT              SMTPUTF8 delivery to NFC and NFD forms of a UTF-8 local part (MX)
  clients.py starttls-login PORT USER PW      submission: STARTTLS + smtplib login + 8BITMIME send
  clients.py scram PORT USER PW [plus] [badbinding]   SCRAM-SHA-256(-PLUS) over implicit TLS
  clients.py external PORT CERT KEY USER      EXTERNAL with a TLS client certificate (implicit TLS)
  clients.py certonly PORT CERT KEY USER      submission with a client certificate and no AUTH
Prints "OK ..." and exits 0 on success; prints the failure and exits 1 otherwise.
"""
import base64, ctypes, ctypes.util, hashlib, hmac, os, smtplib, ssl, sys, unicodedata


def ctx(cert=None, key=None):
    c = ssl.create_default_context()
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    if cert:
        c.load_cert_chain(cert, key)
    return c


def tls_exporter(sslsock):
    """RFC 9266 tls-exporter via libssl's SSL_export_keying_material (Python's ssl has no API for it)."""
    lib = ctypes.CDLL(ctypes.util.find_library("ssl"))
    # PySSLSocket: PyObject_HEAD (refcnt, type), PyObject *Socket, SSL *ssl
    obj = sslsock._sslobj
    ssl_ptr = ctypes.c_void_p.from_address(id(obj) + 3 * ctypes.sizeof(ctypes.c_void_p)).value
    out = ctypes.create_string_buffer(32)
    label = b"EXPORTER-Channel-Binding"
    f = lib.SSL_export_keying_material
    f.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int]
    rc = f(ssl_ptr, out, 32, label, len(label), None, 0, 0)
    if rc != 1:
        raise RuntimeError("SSL_export_keying_material failed")
    return out.raw


def msg(frm, to, subject, body="hello\r\n"):
    return f"From: {frm}\r\nTo: {to}\r\nSubject: {subject}\r\n\r\n{body}"


def utf8(port):
    nfc = unicodedata.normalize("NFC", "jöran@test.example")
    nfd = unicodedata.normalize("NFD", "jöran@test.example")
    assert nfc != nfd
    with smtplib.SMTP("127.0.0.1", port) as s:
        s.ehlo("client.example")
        assert s.has_extn("smtputf8")
        for to in (nfc, nfd):
            m = msg("sender@remote.example", to, "utf8 " + to, "grüße\r\n").encode("utf-8")
            s.sendmail("séndér@remote.example", [to], m, mail_options=["SMTPUTF8", "BODY=8BITMIME"])
    print("OK utf8")


def starttls_login(port, user, pw):
    with smtplib.SMTP("127.0.0.1", port) as s:
        s.ehlo("client.example")
        assert not s.has_extn("auth"), "AUTH offered before TLS"
        s.starttls(context=ctx())
        s.ehlo("client.example")
        s.login(user, pw)
        m = msg(user, user, "starttls login", "caf\u00e9 8bit body\r\n").encode("utf-8")
        s.sendmail(user, [user], m, mail_options=["BODY=8BITMIME"])
    print("OK starttls-login")


def H(b):
    return hashlib.sha256(b).digest()


def HMAC(k, b):
    return hmac.new(k, b, hashlib.sha256).digest()


def scram(port, user, pw, plus=False, badbinding=False):
    s = smtplib.SMTP_SSL("127.0.0.1", port, context=ctx())
    try:
        s.ehlo("client.example")
        mech = "SCRAM-SHA-256-PLUS" if plus else "SCRAM-SHA-256"
        assert mech in s.esmtp_features.get("auth", "").split(), s.esmtp_features
        if plus:
            gs2 = b"p=tls-exporter,,"
            cb = tls_exporter(s.sock)
            if badbinding:
                cb = bytes(32)
        else:
            gs2 = b"n,,"
            cb = b""
        cnonce = base64.b64encode(os.urandom(18)).decode()
        bare = f"n={user.replace('=', '=3D').replace(',', '=2C')},r={cnonce}".encode()
        code, resp = s.docmd("AUTH", mech + " " + base64.b64encode(gs2 + bare).decode())
        if code != 334:
            raise SystemExit(f"FAIL first: {code} {resp}")
        sfirst = base64.b64decode(resp)
        attrs = dict(kv.split("=", 1) for kv in sfirst.decode().split(","))
        assert attrs["r"].startswith(cnonce)
        salt = base64.b64decode(attrs["s"])
        it = int(attrs["i"])
        salted = hashlib.pbkdf2_hmac("sha256", pw.encode(), salt, it)
        ckey = HMAC(salted, b"Client Key")
        stored = H(ckey)
        final_wo = b"c=" + base64.b64encode(gs2 + cb) + b",r=" + attrs["r"].encode()
        authmsg = bare + b"," + sfirst + b"," + final_wo
        sig = HMAC(stored, authmsg)
        proof = bytes(a ^ b for a, b in zip(ckey, sig))
        code, resp = s.docmd(base64.b64encode(final_wo + b",p=" + base64.b64encode(proof)).decode())
        if code == 334:
            sfinal = base64.b64decode(resp).decode()
            skey = HMAC(salted, b"Server Key")
            expect = "v=" + base64.b64encode(HMAC(skey, authmsg)).decode()
            if sfinal != expect:
                raise SystemExit(f"FAIL server signature {sfinal!r} != {expect!r}")
            code, resp = s.docmd("")
        if code != 235:
            print(f"REFUSED {code} {resp.decode()}")
            sys.exit(1)
        s.sendmail(user, [user], msg(user, user, mech).encode())
        print("OK " + mech)
    finally:
        s.close()


def external(port, cert, key, user):
    s = smtplib.SMTP_SSL("127.0.0.1", port, context=ctx(cert, key))
    try:
        s.ehlo("client.example")
        assert "EXTERNAL" in s.esmtp_features.get("auth", "").split(), s.esmtp_features
        code, resp = s.docmd("AUTH", "EXTERNAL =")
        if code != 235:
            print(f"REFUSED {code} {resp.decode()}")
            sys.exit(1)
        s.sendmail(user, [user], msg(user, user, "external").encode())
        print("OK external")
    finally:
        s.close()


def certonly(port, cert, key, user):
    s = smtplib.SMTP_SSL("127.0.0.1", port, context=ctx(cert, key))
    try:
        s.ehlo("client.example")
        s.sendmail(user, [user], msg(user, user, "cert only").encode())
        print("OK certonly")
    finally:
        s.close()


if __name__ == "__main__":
    a = sys.argv[1:]
    try:
        if a[0] == "utf8":
            utf8(int(a[1]))
        elif a[0] == "starttls-login":
            starttls_login(int(a[1]), a[2], a[3])
        elif a[0] == "scram":
            scram(int(a[1]), a[2], a[3], "plus" in a[4:], "badbinding" in a[4:])
        elif a[0] == "external":
            external(int(a[1]), a[2], a[3], a[4])
        elif a[0] == "certonly":
            certonly(int(a[1]), a[2], a[3], a[4])
        else:
            raise SystemExit("unknown command")
    except smtplib.SMTPException as e:
        print(f"REFUSED {e}")
        sys.exit(1)
