"""A Thunderbird-like IMAP session with Python's imaplib, driven by TestPythonClient.

Usage: thunderbird.py HOST PORT USER PASSWORD
Prints IDLING when it waits in IDLE for the test to deliver a message, then reads one line on
stdin; prints OK at the end. Any failure raises (non-zero exit).
"""

import imaplib
import re
import sys
import time

host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]


def ok(res, what):
    typ, data = res
    if typ != "OK":
        raise SystemExit("%s failed: %s %r" % (what, typ, data))
    return data


m = imaplib.IMAP4(host, port)
ok(m.login(user, password), "LOGIN")
caps = ok(m.capability(), "CAPABILITY")[0].decode().upper().split()
for c in ("IDLE", "MOVE", "UIDPLUS", "SPECIAL-USE"):
    if c not in caps:
        raise SystemExit("capability %s missing: %r" % (c, caps))

boxes = ok(m.list('""', "*"), "LIST")
names = [b.decode() for b in boxes]
if not any('"/" INBOX' in n for n in names) or not any("\\Sent" in n and "Sent" in n for n in names):
    raise SystemExit("LIST: %r" % names)

data = ok(m.select("INBOX"), "SELECT")
count = int(data[0])
if count != 3:
    raise SystemExit("SELECT: %d messages, want 3" % count)

# Thunderbird's header sync.
hdrs = ok(m.uid("FETCH", "1:*", "(UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Subject Date "
                "Message-ID References In-Reply-To Content-Type)])"), "header sync")
subjects = []
for item in hdrs:
    if isinstance(item, tuple):
        meta, body = item
        if b"RFC822.SIZE" not in meta or b"UID" not in meta:
            raise SystemExit("header sync item: %r" % meta)
        mt = re.search(rb"Subject: (.*)\r\n", body)
        subjects.append(mt.group(1).decode())
        if b"Received:" in body:
            raise SystemExit("unrequested field in HEADER.FIELDS: %r" % body)
        if not body.endswith(b"\r\n\r\n"):
            raise SystemExit("HEADER.FIELDS must end with the blank line: %r" % body)
if subjects != ["first", "second", "third"]:
    raise SystemExit("subjects %r" % subjects)

# Open a message: BODY[] without PEEK sets \Seen.
data = ok(m.uid("FETCH", "2", "(FLAGS BODY[])"), "FETCH BODY[]")
if b"\\Seen" not in data[0][0] and b"\\Seen" not in b"".join(x if isinstance(x, bytes) else x[0] for x in data):
    raise SystemExit("\\Seen not reported: %r" % (data,))

# IDLE while a message arrives.
tag = m._new_tag()
m.send(tag + b" IDLE\r\n")
line = m.readline()
if not line.startswith(b"+"):
    raise SystemExit("IDLE: %r" % line)
print("IDLING", flush=True)
sys.stdin.readline()
deadline = time.time() + 10
got = False
while time.time() < deadline:
    line = m.readline()
    if re.match(rb"\* 4 EXISTS", line):
        got = True
        break
if not got:
    raise SystemExit("no EXISTS during IDLE")
m.send(b"DONE\r\n")
while True:
    line = m.readline()
    if line.startswith(tag):
        if b"OK" not in line:
            raise SystemExit("IDLE end: %r" % line)
        break

# Save a sent message (APPENDUID), move a message to Trash, expunge.
msg = b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: sent from python\r\n\r\nHi Bob.\r\n"
typ, data = m.append("Sent", "(\\Seen)", imaplib.Time2Internaldate(time.time()), msg)
if typ != "OK" or b"APPENDUID" not in data[0]:
    raise SystemExit("APPEND: %s %r" % (typ, data))
typ, data = m.uid("MOVE", "1", "Trash")
if typ != "OK":
    raise SystemExit("MOVE: %s %r" % (typ, data))
ok(m.uid("STORE", "3", "+FLAGS.SILENT", "(\\Deleted)"), "STORE")
ok(m.expunge(), "EXPUNGE")
data = ok(m.uid("SEARCH", None, "ALL"), "SEARCH")
if data[0].split() != [b"2", b"4"]:
    raise SystemExit("left in INBOX: %r" % data)
m.logout()
print("OK", flush=True)
