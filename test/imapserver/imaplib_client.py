"""Python imaplib against the Letterbox IMAP server (test/imapserver/imaplib.test.ts).

Exercises every command of RFC 9051 and the extensions we announce, through
the standard library client we did not write. Usage:
  imaplib_client.py all IMAP_PORT IMAPS_PORT SMTP_PORT USER PASSWORD
Prints "OK" lines and exits 0; any failed expectation raises (exit 1).
"""
import base64, imaplib, re, smtplib, socket, ssl, sys, time

imaplib.Commands.setdefault("ID", ("NONAUTH", "AUTH", "SELECTED"))
imaplib.Commands.setdefault("IDLE", ("AUTH", "SELECTED"))
imaplib.Commands.setdefault("REPLACE", ("SELECTED",))


def ctx():
    c = ssl.create_default_context()
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    return c


def ok(r, what):
    typ, dat = r
    assert typ == "OK", f"{what}: {typ} {dat}"
    return dat


def expect_no(fn, what, code=None):
    try:
        r = fn()
    except imaplib.IMAP4.error as e:
        # imaplib raises on BAD and NO for some commands
        if code:
            assert code in str(e), f"{what}: want [{code}] in {e}"
        return str(e)
    typ, dat = r
    assert typ == "NO", f"{what}: want NO, got {typ} {dat}"
    if code:
        assert code.encode() in b" ".join(d if isinstance(d, bytes) else b"" for d in dat), f"{what}: want [{code}] in {dat}"
    return dat


def msg(subject, body="Hello world\r\n", frm="Alice <alice@example.org>", to="user@test.example", extra=""):
    return (
        f"From: {frm}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: Mon, 7 Feb 1994 21:52:25 -0800\r\n"
        f"Message-ID: <{abs(hash(subject))}@example.org>\r\n{extra}\r\n{body}"
    ).encode()


MULTIPART = (
    b"From: Bob <bob@example.org>\r\nTo: user@test.example\r\nSubject: multipart\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\npreamble\r\n--XX\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"Gr=C3=BC=C3=9Fe aus K=C3=B6ln, findme-qp\r\n--XX\r\n"
    b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAwQF\r\n--XX--\r\n"
)


def all_commands(port, sport, smtp_port, user, pw):
    # --- not authenticated, plain port ---
    M = imaplib.IMAP4("127.0.0.1", port)
    caps = M.capabilities
    assert "STARTTLS" in caps and "LOGINDISABLED" in caps, caps
    assert "IMAP4REV2" in caps and "IMAP4REV1" in caps
    ok(M.noop(), "noop")
    typ, dat = M._simple_command("ID", '("name" "imaplib")')
    assert typ == "OK"
    assert b"Letterbox" in M._untagged_response(typ, dat, "ID")[1][0]
    try:
        M.login(user, pw)
        raise AssertionError("LOGIN before TLS accepted")
    except imaplib.IMAP4.error as e:
        assert "PRIVACYREQUIRED" in str(e), e
    M.starttls(ssl_context=ctx())
    caps = M.capabilities
    assert "LOGINDISABLED" not in caps and "AUTH=PLAIN" in caps, caps
    try:
        M.login(user, "wrong")
        raise AssertionError("bad password accepted")
    except imaplib.IMAP4.error as e:
        assert "AUTHENTICATIONFAILED" in str(e), e
    ok(M.login(user, pw), "login")
    print("OK starttls login")

    # --- authenticated ---
    typ, dat = M._simple_command("ENABLE", "CONDSTORE")
    assert typ == "OK"
    ns = ok(M.namespace(), "namespace")
    assert ns[0] == b'(("" "/")) NIL NIL', ns
    lst = ok(M.list(), "list")
    names = [l.decode() for l in lst]
    assert any(l.endswith('"/" INBOX') for l in names), names
    assert any("\\Sent" in l and l.endswith("Sent") for l in names), names
    assert ok(M.list('""', '""'), "list delimiter")[0] == b'(\\Noselect) "/" ""'
    ok(M.create("Work/Projects"), "create nested")
    lst = [l.decode() for l in ok(M.list('""', "Work*"), "list Work*")]
    assert any("\\HasChildren" in l and l.endswith('"/" Work') for l in lst), lst
    assert any("\\HasNoChildren" in l and l.endswith("Work/Projects") for l in lst), lst
    expect_no(lambda: M.create("Work"), "create existing", "ALREADYEXISTS")
    ok(M.rename("Work/Projects", "Work/Old"), "rename")
    ok(M.subscribe("Work/Old"), "subscribe")
    lsub = [l.decode() for l in ok(M.lsub('""', "Work/*"), "lsub")]
    assert any(l.endswith("Work/Old") for l in lsub), lsub
    ok(M.unsubscribe("Work/Old"), "unsubscribe")
    assert ok(M.lsub('""', "Work/*"), "lsub after")[0] is None
    ok(M.delete("Work/Old"), "delete")
    expect_no(lambda: M.delete("Nope"), "delete missing", "NONEXISTENT")
    expect_no(lambda: M.delete("INBOX"), "delete inbox")
    # CREATE-SPECIAL-USE (RFC 6154 §3)
    typ, dat = M._simple_command("CREATE", "Later", "(USE (\\Archive))")
    assert typ == "OK", dat
    lst = [l.decode() for l in ok(M.list('""', "Later"), "list special")]
    assert "\\Archive" in lst[0], lst

    # APPEND (+ APPENDUID), with flags and date
    t0 = imaplib.Time2Internaldate(time.mktime((2020, 3, 4, 5, 6, 7, 0, 0, -1)))
    typ, dat = M.append("INBOX", "(\\Seen $Work)", t0, msg("first", "the quick brown fox\r\n"))
    assert typ == "OK" and b"APPENDUID" in dat[0], dat
    for i in range(2, 6):
        ok(M.append("INBOX", None, None, msg(f"message {i}", f"body number {i}\r\n")), "append")
    ok(M.append("INBOX", "(\\Flagged)", None, MULTIPART), "append multipart")
    expect_no(lambda: M.append("Missing", None, None, msg("x")), "append missing", "TRYCREATE")
    st = ok(M.status("INBOX", "(MESSAGES UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE HIGHESTMODSEQ)"), "status")[0].decode()
    assert "MESSAGES 6" in st and "UNSEEN 5" in st and "UIDNEXT 7" in st, st
    print("OK mailboxes append status")

    # --- selected ---
    typ, dat = M.select("INBOX")
    assert typ == "OK" and dat[0] == b"6", dat
    assert M.untagged_responses.get("HIGHESTMODSEQ") or True
    typ, dat = M.fetch("1", "(UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE)")
    line = dat[0].decode() if isinstance(dat[0], bytes) else dat[0][0].decode()
    assert "UID 1" in line and "\\Seen" in line and "$Work" in line and "04-Mar-2020" in line, line
    assert '"first"' in line and '"alice" NIL "alice" "example.org"' in line.replace('"Alice"', '"alice"'), line
    typ, dat = M.fetch("6", "(BODYSTRUCTURE)")
    bs = dat[0].decode()
    assert '("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "QUOTED-PRINTABLE"' in bs and '"MIXED"' in bs, bs
    typ, dat = M.fetch("6", "(BODY.PEEK[1] BODY.PEEK[2.MIME] BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY.PEEK[]<0.4>)")
    parts = {d[0].decode(): d[1] for d in dat if isinstance(d, tuple)}
    keys = list(parts)
    assert any(k.endswith("BODY[1] {42}") for k in keys) or any("BODY[1]" in k for k in keys), keys
    b1 = [v for k, v in parts.items() if "BODY[1]" in k][0]
    assert b1 == b"Gr=C3=BC=C3=9Fe aus K=C3=B6ln, findme-qp", b1
    mime = [v for k, v in parts.items() if "BODY[2.MIME]" in k][0]
    assert mime.startswith(b"Content-Type: application/octet-stream") and mime.endswith(b"\r\n\r\n"), mime
    subj = [v for k, v in parts.items() if "HEADER.FIELDS" in k][0]
    assert subj == b"Subject: multipart\r\n\r\n", subj
    part0 = [v for k, v in parts.items() if "BODY[]<0>" in k][0]
    assert part0 == b"From", part0
    # BINARY (RFC 3516): decoded parts
    typ, dat = M.fetch("6", "(BINARY.PEEK[1] BINARY.PEEK[2] BINARY.SIZE[2])")
    parts = {d[0].decode(): d[1] for d in dat if isinstance(d, tuple)}
    bin1 = [v for k, v in parts.items() if "BINARY[1]" in k][0]
    assert bin1.decode("utf-8") == "Grüße aus Köln, findme-qp", bin1
    bin2 = [v for k, v in parts.items() if "BINARY[2]" in k][0]
    assert bin2 == bytes([0, 1, 2, 3, 4, 5]), bin2
    tail = b" ".join(d if isinstance(d, bytes) else b"" for d in dat)
    assert b"BINARY.SIZE[2] 6" in tail, dat
    typ, dat = M.fetch("2", "(PREVIEW)")
    assert b'PREVIEW "body number 2"' in dat[0], dat
    # A FETCH of BODY[] (not PEEK) sets \Seen and reports it.
    typ, dat = M.fetch("2", "(BODY[TEXT])")
    alltext = b" ".join(x[0] if isinstance(x, tuple) else x for x in dat)
    assert b"\\Seen" in alltext, dat
    typ, dat = M.fetch("2", "(FLAGS MODSEQ)")
    assert b"\\Seen" in dat[0] and b"MODSEQ" in dat[0], dat
    print("OK fetch")

    # STORE and SEARCH
    typ, dat = M.store("3:4", "+FLAGS", "(\\Flagged $Todo)")
    assert typ == "OK" and len(dat) == 2 and b"\\Flagged" in dat[0], dat
    ok(M.store("4", "-FLAGS.SILENT", "($Todo)"), "store silent")
    s = ok(M.search(None, "FLAGGED"), "search flagged")[0].split()
    assert s == [b"3", b"4", b"6"], s
    s = ok(M.search(None, "KEYWORD", "$Todo"), "search keyword")[0].split()
    assert s == [b"3"], s
    s = ok(M.search(None, "UNSEEN", "NOT", "FLAGGED"), "search unseen")[0].split()
    assert s == [b"5"], s
    s = ok(M.search(None, "BODY", "findme-qp"), "search body qp")[0].split()
    assert s == [b"6"], s
    M.literal = "Köln".encode()  # 8-bit text goes in a literal (RFC 9051 §4.3)
    s = ok(M.search("UTF-8", "BODY"), "search charset")[0].split()
    assert s == [b"6"], s
    s = ok(M.search(None, "SUBJECT", '"message 4"'), "search subject")[0].split()
    assert s == [b"4"], s
    s = ok(M.search(None, "OR", "SUBJECT", "first", "FROM", "bob"), "search or")[0].split()
    assert s == [b"1", b"6"], s
    s = ok(M.search(None, "LARGER", "300"), "search larger")[0].split()
    assert s == [b"6"], s
    s = ok(M.search(None, "SENTBEFORE", "1-Jan-2000"), "search sentbefore")[0].split()
    assert s == [b"1", b"2", b"3", b"4", b"5"], s
    s = ok(M.uid("SEARCH", "UID", "2:4"), "uid search")[0].split()
    assert s == [b"2", b"3", b"4"], s
    typ, dat = M._simple_command("SEARCH", "RETURN", "(MIN MAX COUNT)", "ALL")
    es = M._untagged_response(typ, dat, "ESEARCH")[1][0]
    assert b"MIN 1 MAX 6 COUNT 6" in es, es
    typ, dat = M._simple_command("SEARCH", "RETURN", "(SAVE)", "FLAGGED")
    assert typ == "OK"
    typ, dat = M.fetch("$", "(UID)")
    assert len([d for d in dat if d]) == 3, dat
    s = ok(M.search(None, "MODSEQ", "1"), "search modseq")[0]
    assert b"(MODSEQ" in s, s
    s = ok(M.search(None, "YOUNGER", "3600"), "search younger")[0].split()
    assert s == [b"2", b"3", b"4", b"5", b"6"], s
    print("OK store search")

    # SORT / THREAD (RFC 5256)
    typ, dat = M.sort("(REVERSE SIZE)", "UTF-8", "ALL")
    assert typ == "OK" and dat[0].split()[0] == b"6", dat
    typ, dat = M.sort("(SUBJECT)", "UTF-8", "ALL")
    assert dat[0].split() == [b"1", b"2", b"3", b"4", b"5", b"6"], dat
    typ, dat = M.thread("REFERENCES", "UTF-8", "ALL")
    assert typ == "OK" and dat[0].count(b"(") == 6, dat
    print("OK sort thread")

    # COPY / MOVE / EXPUNGE with UIDPLUS
    typ, dat = M.copy("1:2", "Later")
    assert typ == "OK" and b"COPYUID" in dat[0], dat
    typ, dat = M.uid("MOVE", "3", "Later")
    assert typ == "OK", dat
    assert M.untagged_responses.get("EXPUNGE") == [b"3"] or b"3" in (M.untagged_responses.get("EXPUNGE") or [b"3"]), M.untagged_responses
    typ, dat = M.select("INBOX")
    assert dat[0] == b"5", dat
    ok(M.store("1", "+FLAGS", "(\\Deleted)"), "mark deleted")
    ok(M.store("2", "+FLAGS", "(\\Deleted)"), "mark deleted")
    typ, dat = M.uid("EXPUNGE", "2")
    assert typ == "OK", dat
    typ, dat = M.expunge()
    assert typ == "OK" and dat == [b"2", b"1"], dat  # imaplib keeps the UID EXPUNGE response too
    typ, dat = M.select("INBOX")
    assert dat[0] == b"3", dat
    typ, dat = M.select("Later", readonly=True)
    assert dat[0] == b"3", dat
    expect_no(lambda: M.store("1", "+FLAGS", "(\\Deleted)"), "store read-only")
    ok(M.check(), "check")
    ok(M.unselect(), "unselect")
    typ, dat = M.select("Later")
    ok(M.store("1:*", "+FLAGS", "(\\Deleted)"), "delete all")
    ok(M.close(), "close")
    st = ok(M.status("Later", "(MESSAGES)"), "status Later")[0].decode()
    assert "MESSAGES 0" in st, st
    print("OK copy move expunge close")

    # QUOTA (RFC 9208)
    typ, dat = M.getquotaroot("INBOX")
    assert typ == "OK", dat
    qr = M.untagged_responses
    typ, dat = M.getquota('""')
    assert typ == "OK" and b"STORAGE" in dat[0], dat
    expect_no(lambda: M.setquota('""', "(STORAGE 10)"), "setquota")
    print("OK quota")

    # IDLE: an SMTP delivery shows as EXISTS within a second
    M.select("INBOX")
    tag = M._new_tag()
    M.send(tag + b" IDLE\r\n")
    line = M.readline()
    assert line.startswith(b"+"), line
    t0 = time.monotonic()
    with smtplib.SMTP("127.0.0.1", smtp_port) as s:
        s.sendmail("someone@remote.example", [user], msg("via smtp", "delivered while idling\r\n", to=user))
    t_sent = time.monotonic()
    M.sock.settimeout(5)
    line = M.readline()
    t_seen = time.monotonic()
    assert re.match(rb"\* 4 EXISTS", line), line
    assert t_seen - t_sent < 1.0, f"EXISTS after {t_seen - t_sent:.3f}s"
    M.send(b"DONE\r\n")
    line = M.readline()
    assert line.startswith(tag + b" OK"), line
    print(f"OK idle exists after {1000 * (t_seen - t_sent):.0f}ms")

    # RENAME INBOX moves its messages (RFC 9051 §6.3.6)
    M.unselect()
    ok(M.rename("INBOX", "\"Old Inbox\""), "rename inbox")
    st = ok(M.status("INBOX", "(MESSAGES)"), "status inbox")[0].decode()
    assert "MESSAGES 0" in st, st
    st = ok(M.status('"Old Inbox"', "(MESSAGES)"), "status old inbox")[0].decode()
    assert "MESSAGES 4" in st, st

    # Wrong state and bad syntax: tagged BAD, session continues
    M.state = "SELECTED"  # imaplib checks states itself; make it send the command anyway
    try:
        M._simple_command("FETCH", "1", "(FLAGS)")
        raise AssertionError("FETCH without selection accepted")
    except imaplib.IMAP4.error as e:
        assert "not allowed" in str(e), e
    finally:
        M.state = "AUTH"
    try:
        M._simple_command("SELECT")
        raise AssertionError("bad syntax accepted")
    except imaplib.IMAP4.error:
        pass
    ok(M.noop(), "noop after errors")
    typ, dat = M.logout()
    assert typ == "BYE", (typ, dat)
    print("OK rename-inbox errors logout")

    # --- implicit TLS, AUTHENTICATE PLAIN with SASL-IR ---
    S = imaplib.IMAP4_SSL("127.0.0.1", sport, ssl_context=ctx())
    assert "AUTH=PLAIN" in S.capabilities and "AUTH=SCRAM-SHA-256" in S.capabilities, S.capabilities
    ok(S.authenticate("PLAIN", lambda _: f"\0{user}\0{pw}".encode()), "authenticate plain")
    typ, dat = S.select('"Old Inbox"', readonly=True)
    assert dat[0] == b"4", dat
    S.logout()
    print("OK imaps authenticate")


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "all":
        all_commands(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6])
    else:
        raise SystemExit(f"unknown command {cmd}")
