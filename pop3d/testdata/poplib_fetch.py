"""Fetch and delete every message of a POP3 maildrop with Python's poplib.

Usage: poplib_fetch.py HOST PORT USER PASSWORD OUTDIR [CAFILE]

With CAFILE the session is upgraded with STLS first and the server's
certificate is checked against CAFILE. Each message is written to
OUTDIR/<n>.eml as received (lines joined with CRLF after poplib has undone
the dot-stuffing); OUTDIR/uidl.txt and OUTDIR/list.txt keep the UIDL and
LIST answers. The script checks that the octets poplib counted for each
RETR equal the size LIST announced.
"""
import os
import poplib
import ssl
import sys


def main():
    host, port, user, password, outdir = sys.argv[1:6]
    cafile = sys.argv[6] if len(sys.argv) > 6 else None
    # poplib refuses lines over 2048 octets; mail may have longer ones.
    poplib._MAXLINE = 1 << 20
    pop = poplib.POP3(host, int(port), timeout=30)
    caps = pop.capa()
    if cafile:
        if "STLS" not in caps:
            sys.exit("server does not offer STLS: %r" % caps)
        ctx = ssl.create_default_context(cafile=cafile)
        ctx.check_hostname = False
        pop.stls(ctx)
    pop.user(user)
    pop.pass_(password)
    count, size = pop.stat()
    _, listing, _ = pop.list()
    sizes = {}
    with open(os.path.join(outdir, "list.txt"), "wb") as f:
        for line in listing:
            f.write(line + b"\n")
            n, s = line.split()
            sizes[int(n)] = int(s)
    _, uidls, _ = pop.uidl()
    with open(os.path.join(outdir, "uidl.txt"), "wb") as f:
        for line in uidls:
            f.write(line + b"\n")
    total = 0
    for n in range(1, count + 1):
        _, lines, octets = pop.retr(n)
        data = b"\r\n".join(lines) + b"\r\n" if lines else b""
        if octets != sizes[n]:
            sys.exit("message %d: RETR gave %d octets, LIST said %d" % (n, octets, sizes[n]))
        total += octets
        with open(os.path.join(outdir, "%d.eml" % n), "wb") as f:
            f.write(data)
        pop.dele(n)
    if total != size:
        sys.exit("STAT said %d octets, RETR gave %d" % (size, total))
    pop.quit()
    print("fetched %d messages, %d octets" % (count, total))


if __name__ == "__main__":
    main()
