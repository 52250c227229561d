# Python's imaplib against the server: PREVIEW and NOTIFY (RFC 8970, RFC 5465).
# Usage: notifypreview.py HOST PORT USER PASS; prints one line per check and OK at the end.
# Between NOTIFY and the NOOP it prints WAITING and waits for a line on stdin (the test delivers).
import imaplib
import sys

imaplib.Commands.setdefault('NOTIFY', ('AUTH', 'SELECTED'))

host, port, user, password = sys.argv[1:5]
m = imaplib.IMAP4(host, int(port))
m.login(user, password)
m.select('INBOX')
typ, dat = m.fetch('1', '(PREVIEW)')
print('PREVIEW', typ, dat[0].decode())
typ, dat = m._simple_command('NOTIFY', 'SET STATUS (MAILBOXES Sent (MessageNew MessageExpunge))')
print('NOTIFY', typ, [d.decode() for d in m.untagged_responses.pop('STATUS', [])])
print('WAITING', flush=True)
sys.stdin.readline()
typ, dat = m.noop()
print('NOOP', typ, [d.decode() for d in m.untagged_responses.pop('STATUS', [])])
m.logout()
print('OK')
