package imapd

import (
	"bytes"
	"crypto/tls"
	"io"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
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

// Issue 9 item 7: client errors that go-imap's parser meets first answered NO [SERVERBUG], and a
// LITERAL+ literal after such a refusal was read as the next command. Each case must get its own
// answer, and the connection must go on: a NOOP, then a command with a literal.
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
		{"copy target", "t COPY 1 a\x7fb\r\n", "t NO [CANNOT]"},
		{"APPEND with LITERAL+", "t APPEND \"a&bad\" {5+}\r\nhello\r\n", "t NO [CANNOT]"},
		{"name as LITERAL+", "t CREATE {5+}\r\nab\x00cd\r\n", "t NO [CANNOT]"},
		{"name as LITERAL+, then more", "t RENAME {3+}\r\nx\x00y {1+}\r\nz\r\n", "t NO [CANNOT]"},
		{"100k ranges", "t FETCH " + long + " (UID)\r\n", "t BAD [TOOBIG]"},
		{"100k ranges, LITERAL+", "t UID SEARCH UID " + long + " SUBJECT {3+}\r\nabc\r\n", "t BAD [TOOBIG]"},
		{"deep SEARCH", "t SEARCH " + deep + "\r\n", "t NO [LIMIT]"},
		{"deep SEARCH, LITERAL+", "t SEARCH " + deep[:1100] + "SUBJECT {3+}\r\nabc" + deep[1103:] + "\r\n", "t NO [LIMIT]"},
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

// The guard holds over TLS, implicit or started.
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
	r.cmd("a0 LOGIN " + testUser + " " + testPass)
	if got := r.answer("t APPEND \"a&bad\" {5+}\r\nhello\r\n", "t"); !strings.HasPrefix(got, "t NO [CANNOT]") {
		t.Errorf("STARTTLS: %q", got)
	}
	if got := r.answer("n NOOP\r\n", "n"); !strings.HasPrefix(got, "n OK") {
		t.Errorf("STARTTLS: the next command got %q", got)
	}
}

// The guard never fails on any input, and what it does not refuse it passes byte for byte.
func FuzzCommandGuard(f *testing.F) {
	f.Add([]byte("t CREATE \"a\x00b\"\r\nn NOOP\r\n"))
	f.Add([]byte("t RENAME {3+}\r\nx\x00y {1+}\r\nz\r\nu UID COPY 1:* \"&Jjo-\"\r\n"))
	f.Add([]byte("t APPEND INBOX (\\Seen) {5}\r\nhello\r\nt SEARCH ((((ALL))))\r\nDONE\r\n"))
	f.Add([]byte("t LIST \"\" (\"a\" \"b&\") RETURN (CHILDREN)\r\nt STATUS x\xff (MESSAGES)"))
	f.Fuzz(func(t *testing.T, in []byte) {
		refused := 0
		g := &commandGuard{src: &oneByteReader{in}, marker: "M", refuse: func(*imap.Error) { refused++ }}
		out, err := io.ReadAll(g)
		if err != nil {
			t.Fatal(err)
		}
		if refused == 0 && !bytes.Equal(out, in) {
			t.Fatalf("nothing refused, but\n%q became\n%q", in, out)
		}
	})
}

type oneByteReader struct{ b []byte }

func (r *oneByteReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	p[0] = r.b[0]
	r.b = r.b[1:]
	return 1, nil
}
