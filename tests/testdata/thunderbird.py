"""A Thunderbird-like IMAP session against a running Postie, with Python's
imaplib as an independent client. Talks to the Go test over stdin/stdout:
prints "IDLING" when it waits in IDLE for the test to deliver a message and
expects "SENT" back. Exits non-zero with a message on the first surprise."""
import imaplib
import re
import sys

host, port, user, password, expected = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])


def check(cond, what):
    if not cond:
        sys.exit("FAIL: " + what)


def ok(resp, what):
    typ, data = resp
    check(typ == "OK", "%s: %s %r" % (what, typ, data))
    return data


m = imaplib.IMAP4(host, port)
check("STARTTLS" in m.capabilities, "STARTTLS not offered: %r" % (m.capabilities,))
ok(m.login(user, password), "login")
caps = ok(m.capability(), "CAPABILITY")[0].decode().upper().split()
for cap in ("IMAP4REV1", "IDLE", "MOVE", "UIDPLUS", "SPECIAL-USE", "NAMESPACE", "LITERAL+", "ESEARCH", "CHILDREN"):
    check(cap in caps, "capability %s missing after login from %r" % (cap, caps))

# Folder discovery, as Thunderbird does on first start.
data = ok(m.list('""', '"*"'), "LIST")
names = {}
for line in data:
    line = line.decode()
    mm = re.match(r'\((.*?)\) "(.)" "?([^"]*)"?$', line)
    check(mm, "unparsable LIST line %r" % line)
    names[mm.group(3)] = mm.group(1)
for folder, use in (("Sent", "\\Sent"), ("Drafts", "\\Drafts"), ("Trash", "\\Trash"), ("Junk", "\\Junk"), ("Archive", "\\Archive")):
    check(folder in names, "folder %s not listed: %r" % (folder, names))
    check(use in names[folder], "%s lacks %s: %r" % (folder, use, names[folder]))
check("INBOX" in names, "INBOX not listed")

typ, data = m.select("INBOX")
check(typ == "OK" and int(data[0]) == expected, "SELECT INBOX: %s %r, want %d messages" % (typ, data, expected))

# The header sync Thunderbird does on a new folder.
typ, data = m.uid("FETCH", "1:*", "(UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Subject Date Message-ID References In-Reply-To Content-Type)])")
check(typ == "OK", "header sync: %s" % typ)
headers = [d for d in data if isinstance(d, tuple)]
check(len(headers) == expected, "header sync returned %d messages, want %d" % (len(headers), expected))
for meta, hdr in headers:
    check(b"Subject: " in hdr, "no Subject in %r" % hdr)
    check(b"Received:" not in hdr, "a field that was not asked for came back: %r" % hdr)
    check(b"\\Seen" not in meta, "BODY.PEEK set \\Seen: %r" % meta)

# IDLE while a message arrives by SMTP.
tag = m._new_tag().decode()
m.send(("%s IDLE\r\n" % tag).encode())
check(m.readline().startswith(b"+"), "no continuation for IDLE")
print("IDLING", flush=True)
check(sys.stdin.readline().strip() == "SENT", "the test did not send")
exists = None
while exists is None:
    line = m.readline()
    check(line, "connection closed during IDLE")
    mm = re.match(rb"\* (\d+) EXISTS", line)
    if mm:
        exists = int(mm.group(1))
m.send(b"DONE\r\n")
while True:
    line = m.readline()
    if line.startswith(tag.encode()):
        check(b"OK" in line, "IDLE ended badly: %r" % line)
        break
check(exists == expected + 1, "EXISTS %d during IDLE, want %d" % (exists, expected + 1))

# Reading a message sets \Seen.
typ, data = m.fetch(str(exists), "(BODY[])")
check(typ == "OK" and b"Subject: arrived during idle" in data[0][1], "fetch of the new message: %r" % data)
typ, data = m.fetch(str(exists), "(FLAGS)")
check(b"\\Seen" in data[0], "reading did not set \\Seen: %r" % data)

# Saving a sent message, as Thunderbird does after sending.
sent = b"From: ann@example.test\r\nTo: bob@remote.test\r\nSubject: my sent mail\r\n\r\nSent body.\r\n"
typ, data = m.append("Sent", "(\\Seen)", None, sent)
check(typ == "OK" and b"APPENDUID" in data[0], "APPEND to Sent: %s %r" % (typ, data))

# Deleting with Thunderbird's default: MOVE to Trash.
typ, data = m.uid("SEARCH", None, "SUBJECT", '"arrived during idle"')
uids = data[0].split()
check(typ == "OK" and len(uids) == 1, "UID SEARCH SUBJECT: %r" % data)
typ, data = m.uid("MOVE", uids[0].decode(), "Trash")
check(typ == "OK", "UID MOVE: %s %r" % (typ, data))
typ, data = m.status("Trash", "(MESSAGES)")
check(b"MESSAGES 1" in data[0], "Trash after MOVE: %r" % data)

# Old-style delete: flag then expunge.
ok(m.store("1", "+FLAGS", "(\\Deleted)"), "STORE \\Deleted")
typ, data = m.expunge()
# imaplib also hands back the "* 6 EXPUNGE" that the MOVE sent.
check(typ == "OK" and data == [b"6", b"1"], "EXPUNGE: %s %r" % (typ, data))
typ, data = m.select("INBOX")
check(int(data[0]) == expected - 1, "INBOX after MOVE and EXPUNGE has %r messages, want %d" % (data, expected - 1))
typ, data = m.status("Sent", "(MESSAGES)")
check(b"MESSAGES 1" in data[0], "Sent: %r" % data)
m.logout()
print("DONE", flush=True)
