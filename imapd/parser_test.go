package imapd

import (
	"crypto/tls"
	"strconv"
	"strings"
	"testing"
	"time"
)

// answer sends raw bytes (one or more lines, literals included) and returns the line tagged tag.
func (r *rawConn) answer(raw, tag string) string {
	r.t.Helper()
	if raw != "" {
		r.send(raw)
	}
	for {
		if l := r.line(); strings.HasPrefix(l, tag+" ") {
			return strings.TrimRight(l, "\r\n")
		}
	}
}

// Issue 9 item 7, issue 13: client errors that go-imap's parser meets first answered NO [SERVERBUG],
// and a LITERAL+ literal after such a refusal was read as the next command. The fork's parser now
// answers them itself (third_party/go-imap/internal/imapwire). Each case must get its own answer,
// and the connection must go on: a NOOP, then a command with a literal.
func TestClientErrorsKeepTheConnection(t *testing.T) {
	ts := newTestServer(t)
	ts.deliver(testMessage(1, "x"))
	long := strings.Repeat("1,", 60000) + "1"
	deep := strings.Repeat("(", 1100) + "ALL" + strings.Repeat(")", 1100)
	cases := []struct{ name, raw, want string }{
		{"NUL in a name", "t CREATE \"a\x00b\"\r\n", "t NO [CANNOT]"},
		{"tab in a name", "t CREATE \"a\tb\"\r\n", "t NO [CANNOT]"},
		{"invalid UTF-8", "t SELECT \"a\xffb\"\r\n", "t NO [CANNOT]"},
		{"bad UTF-7", "t STATUS \"a&bad\" (MESSAGES)\r\n", "t NO [CANNOT]"},
		{"lone surrogate", "t DELETE \"a&2AA-b\"\r\n", "t NO [CANNOT]"},
		{"second name", "t RENAME INBOX/x \"a\x01\"\r\n", "t NO [CANNOT]"},
		{"copy target", "t COPY 1 a\x7fb\r\n", "t BAD"}, // DEL is no atom char: a syntax error
		{"APPEND with LITERAL+", "t APPEND \"a&bad\" {5+}\r\nhello\r\n", "t NO [CANNOT]"},
		{"name as LITERAL+", "t CREATE {5+}\r\nab\x00cd\r\n", "t NO [CANNOT]"},
		{"name as LITERAL+, then more", "t RENAME {3+}\r\nx\x00y {1+}\r\nz\r\n", "t NO [CANNOT]"},
		{"100k ranges", "t FETCH " + long + " (UID)\r\n", "t BAD [TOOBIG]"},
		{"100k ranges, LITERAL+", "t UID SEARCH UID " + long + " SUBJECT {3+}\r\nabc\r\n", "t BAD [TOOBIG]"},
		{"deep SEARCH", "t SEARCH " + deep + "\r\n", "t NO [LIMIT]"},
		{"deep SEARCH, LITERAL+", "t SEARCH " + deep[:1100] + "SUBJECT {3+}\r\nabc" + deep[1103:] + "\r\n", "t NO [LIMIT]"},
		{"over-long line after LITERAL+", "t SEARCH SUBJECT {3+}\r\nabc SUBJECT " + strings.Repeat("x", 60000) + " ALL\r\n", "t BAD [TOOBIG]"},
		{"LITERAL+ over 4 KiB", "t CREATE {5000+}\r\n" + strings.Repeat("x", 5000) + "\r\n", "t NO [TOOBIG]"},
		{"LITERAL+ over 4 KiB, then more", "t RENAME {5000+}\r\n" + strings.Repeat("x", 5000) + " {1+}\r\nz\r\n", "t NO [TOOBIG]"},
		{"unknown SEARCH key", "t SEARCH FOO\r\n", "t BAD"},
		{"bad set in SEARCH", "t SEARCH 1:x\r\n", "t BAD"},
		{"LIST, odd atom characters", "t LIST \"\" !#$&'+,-.0123456789:;<=>?@^_`|[}%*\r\n", "t OK"},
		{"LIST, literal pattern not mUTF-7", "t LIST \"\" {5+}\r\na&b\x01c\r\n", "t OK"},
		{"a good APPEND, LITERAL+", "t APPEND INBOX {3+}\r\nabc\r\n", "t OK"}, // a control: nothing refused
	}
	r := ts.raw(true)
	for _, c := range cases {
		r.cmd("s SELECT INBOX") // (a failed SELECT leaves none)
		if got := r.answer(c.raw, "t"); !strings.HasPrefix(got, c.want) {
			t.Errorf("%s: got %q, want %s...", c.name, got, c.want)
		}
		if got := r.answer("n NOOP\r\n", "n"); !strings.HasPrefix(got, "n OK") {
			t.Fatalf("%s: the next command got %q", c.name, got)
		}
		r.send("a APPEND INBOX {8}\r\n")
		if l := r.line(); !strings.HasPrefix(l, "+") {
			t.Fatalf("%s: APPEND got %q", c.name, l)
		}
		if got := r.answer("x: y\r\n\r\n\r\n", "a"); !strings.HasPrefix(got, "a OK") {
			t.Fatalf("%s: APPEND after it got %q", c.name, got)
		}
	}
	// Pipelined refusals keep their own answers.
	r.cmd("s SELECT INBOX")
	r.send("p1 CREATE \"a\x00\"\r\np2 FETCH x:y (UID)\r\np3 SEARCH " + deep + "\r\np4 NOOP\r\n")
	for _, want := range []string{"p1 NO [CANNOT]", "p2 BAD [CLIENTBUG]", "p3 NO [LIMIT]", "p4 OK"} {
		tag, _, _ := strings.Cut(want, " ")
		if got := r.answer("", tag); !strings.HasPrefix(got, want) {
			t.Errorf("pipelined: got %q, want %s...", got, want)
		}
	}
	// A good name is not touched, whatever its form.
	for _, raw := range []string{"g CREATE \"Caf&AOk-\"\r\n", "g CREATE {5+}\r\nPlans\r\n", "g DELETE Plans\r\n", "g CREATE \"&Jjo-!\"\r\n"} {
		if got := r.answer(raw, "g"); !strings.HasPrefix(got, "g OK") {
			t.Errorf("%q: %q", raw, got)
		}
	}
}

// The parser's answers hold over TLS, implicit or started (the guard that preceded it was put under
// the parser from Login, and a command between STARTTLS and LOGIN went unguarded).
func TestClientErrorsOverTLS(t *testing.T) {
	ts := newTestServer(t)
	conf := &tls.Config{InsecureSkipVerify: true}
	tc, err := tls.Dial("tcp", ts.tlsAddr, conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tc.Close() })
	r := &rawConn{t: t, c: tc, br: &bytesReader{c: tc}}
	r.line()
	r.cmd("a0 LOGIN " + testUser + " " + testPass)
	if got := r.answer("t CREATE \"a\x00b\"\r\n", "t"); !strings.HasPrefix(got, "t NO [CANNOT]") {
		t.Errorf("implicit TLS: %q", got)
	}

	r = ts.raw(false)
	if got := r.answer("s STARTTLS\r\n", "s"); !strings.HasPrefix(got, "s OK") {
		t.Fatal(got)
	}
	tc = tls.Client(r.c, conf)
	r = &rawConn{t: t, c: tc, br: &bytesReader{c: tc}}
	if got := r.answer("t0 CREATE \"a\x00b\"\r\n", "t0"); !strings.HasPrefix(got, "t0 BAD") && !strings.HasPrefix(got, "t0 NO [CANNOT]") {
		t.Errorf("after STARTTLS, before LOGIN: %q", got)
	}
	if got := r.answer("n0 NOOP\r\n", "n0"); !strings.HasPrefix(got, "n0 OK") {
		t.Errorf("after STARTTLS, before LOGIN: the next command got %q", got)
	}
	r.cmd("a0 LOGIN " + testUser + " " + testPass)
	if got := r.answer("t APPEND \"a&bad\" {5+}\r\nhello\r\n", "t"); !strings.HasPrefix(got, "t NO [CANNOT]") {
		t.Errorf("STARTTLS: %q", got)
	}
	if got := r.answer("n NOOP\r\n", "n"); !strings.HasPrefix(got, "n OK") {
		t.Errorf("STARTTLS: the next command got %q", got)
	}
}

// A synchronising literal the parser will not take (over 4 KiB outside APPEND) is refused at once:
// the client waits for a "+" that never comes, so the server must answer without reading on.
func TestRefusedSyncLiteralDoesNotHang(t *testing.T) {
	ts := newTestServer(t)
	r := ts.raw(true)
	r.send("t CREATE {5000}\r\n")
	r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if l := r.line(); !strings.HasPrefix(l, "t NO [TOOBIG]") {
		t.Fatalf("got %q, want t NO [TOOBIG] (and no continuation)", l)
	}
	if got := r.answer("n NOOP\r\n", "n"); !strings.HasPrefix(got, "n OK") {
		t.Fatalf("the next command got %q", got)
	}
	// A small one is taken as ever.
	r.send("c CREATE {3}\r\n")
	if l := r.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("small literal: got %q", l)
	}
	if got := r.answer("Foo\r\n", "c"); !strings.HasPrefix(got, "c OK") {
		t.Fatalf("small literal: %q", got)
	}
}

// SEARCH SMALLER n followed by a date or size key kept only the later key (imap.SearchCriteria.And
// reset Smaller to 0).
func TestSearchSmallerThenDate(t *testing.T) {
	ts := newTestServer(t)
	ts.deliver(testMessage(1, "x"))
	r := ts.raw(true)
	r.cmd("s SELECT INBOX")
	for _, c := range []struct{ cmd, want string }{
		{"SEARCH SMALLER 10 SINCE 1-Jan-2000", "* SEARCH\r\n"},
		{"SEARCH SMALLER 10 LARGER 1", "* SEARCH\r\n"},
		{"SEARCH SMALLER 100000 SINCE 1-Jan-2000", "* SEARCH 1\r\n"},
		{"SEARCH LARGER 1 SMALLER 10", "* SEARCH\r\n"},
	} {
		if got := r.cmd("q " + c.cmd); got[0] != c.want {
			t.Errorf("%s: %q, want %q", c.cmd, got, c.want)
		}
	}
}

// BINARY partial answers name their origin octet (RFC 3516 §4.2): BINARY[1]<2> ~{4}.
func TestBinaryPartialOrigin(t *testing.T) {
	ts := newTestServer(t)
	ts.deliver(testMessage(1, "x"))
	r := ts.raw(true)
	r.cmd("s SELECT INBOX")
	got := r.cmd("f FETCH 1 (BINARY.PEEK[1]<2.4>)")
	if !strings.Contains(got[0], "BINARY[1]<2> ~{4}") {
		t.Errorf("got %q", got)
	}
}

// A message APPENDed as a literal8 keeps its NULs out of BODY[] answers (its binary part is stored
// base64), and BINARY[] gives back the bytes sent (imaptest's "append-binary").
func TestBinaryAppend(t *testing.T) {
	ts := newTestServer(t)
	r := ts.raw(true)
	msg := "From: a@b\r\nContent-Transfer-Encoding: binary\r\n\r\n\x00-\xe4\r\n\r\n"
	if got := r.answer("a APPEND INBOX ~{"+strconv.Itoa(len(msg))+"+}\r\n"+msg+"\r\n", "a"); !strings.HasPrefix(got, "a OK") {
		t.Fatalf("APPEND: %q", got)
	}
	r.cmd("s SELECT INBOX")
	body := strings.Join(r.cmd("f FETCH 1 (BODY.PEEK[1])"), "")
	if strings.Contains(body, "\x00") || strings.Contains(body, "~{") {
		t.Errorf("BODY[1] carries the raw bytes: %q", body)
	}
	bin := strings.Join(r.cmd("b FETCH 1 (BINARY.SIZE[1] BINARY.PEEK[1])"), "")
	if !strings.Contains(bin, "BINARY.SIZE[1] 7") || !strings.Contains(bin, "BINARY[1] ~{7}\r\n\x00-\xe4\r\n\r\n") {
		t.Errorf("BINARY[1]: %q", bin)
	}
}
