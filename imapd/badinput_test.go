package imapd

import (
	"strings"
	"testing"
	"time"
)

func TestBadInput(t *testing.T) {
	ts := newTestServer(t, func(o *Options) { o.AppendLimit = 1000 })
	ts.deliver(testMessage(1, "x"))
	r := ts.raw(true)
	r.cmd("s SELECT INBOX")
	cases := []struct{ cmd, want string }{
		{"b1 FROBNICATE", "b1 BAD"},
		{"b2 FETCH 1 (BODY[1.x])", "b2 BAD"},
		{"b3 FETCH x:y (UID)", "b3 BAD [CLIENTBUG]"}, // the parser would say NO [SERVERBUG]: the guard answers
		{"b4 STORE 1 FLAGS.WHAT (\\Seen)", "b4 BAD"},
		{"b5 SEARCH FOO bar", "b5 "}, // BAD or NO: go-imap answers an unknown key NO [SERVERBUG] (its bug)
		{"b6 SELECT \"../../etc\"", "b6 NO"},
		{"b7 CREATE \"a/../b\"", "b7 NO"},
		{"b8 RENAME INBOX \"../escape\"", "b8 NO"},
		{"s2 SELECT INBOX", "s2 OK"}, // a failed SELECT leaves no mailbox selected
		{"b9 FETCH 99 (UID)", "b9 OK"},
		{"b10 FETCH 1 (BODY.PEEK[99.1] BODY.PEEK[1.MIME] BINARY.PEEK[7])", "b10 OK"},
		{"b11 UID FETCH 4000000000:* (UID)", "b11 OK"},
		{"b12 STATUS INBOX (BOGUS)", "b12 BAD"},
		{"b13 APPEND INBOX {100000}", "b13 NO [TOOBIG]"},
		{"b14 LIST \"\" \"%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%*\"", "b14 OK"},
		{"b15 STORE 1 +FLAGS (\\Bogus)", "b15 BAD"},
		{"b16 COPY 1 \"\"", "b16 NO"},
		// A partial window the size of int64: offset+size overflows.
		{"b17 FETCH 1 (BODY.PEEK[HEADER.FIELDS (Subject)]<1.9223372036854775807>)", "b17 OK"},
		{"b18 FETCH 1 (BODY.PEEK[]<1.9223372036854775807> BODY.PEEK[TEXT]<9223372036854775807.9223372036854775807>)", "b18 OK"},
	}
	for _, c := range cases {
		lines := r.cmd(c.cmd)
		got := last(lines)
		if !strings.HasPrefix(got, c.want) {
			t.Errorf("%s: got %q, want %s...", c.cmd, got, c.want)
		}
		if strings.HasSuffix(c.want, " ") && strings.HasPrefix(got, c.want+"OK") {
			t.Errorf("%s: got %q, want BAD or NO", c.cmd, got)
		}
		for _, l := range lines {
			if i := strings.LastIndex(l, "{"); i >= 0 && strings.HasSuffix(l, "}") && len(l)-i > 8 {
				t.Errorf("%s: a literal far larger than the message: %q", c.cmd, l)
			}
		}
	}
	// A pattern that makes a backtracking matcher take exponential time.
	long := strings.Repeat("a", 60)
	r.cmd("c1 CREATE " + long)
	start := time.Now()
	if got := last(r.cmd(`c2 LIST "" "` + strings.Repeat("*a", 20) + `*b"`)); !strings.HasPrefix(got, "c2 OK") {
		t.Errorf("LIST: %q", got)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("LIST took %v", d)
	}
	if got := last(r.cmd("z NOOP")); !strings.HasPrefix(got, "z OK") {
		t.Errorf("session did not survive: %q", got)
	}
	// Before login, one unknown command ends the connection (cross-protocol attacks).
	r2 := ts.raw(false)
	r2.send("GET / HTTP/1.0\r\n")
	if l := r2.line(); !strings.Contains(l, "BAD") && !strings.Contains(l, "BYE") {
		t.Errorf("pre-auth junk: %q", l)
	}
}
