package imapserver

import (
	"bytes"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// plainSession has only the Session interface: its APPENDs take the plainAppendTx path.
type plainSession struct{ Session }

// APPEND for a session without SessionAppendTx goes through the one APPEND parser
// (handleAppendExt) into Session.Append: flags, date, literal8 and UTF8 are read as for the
// others, one message only, no CATENATE, and the command's framing survives every refusal.
func TestAppendPlainSession(t *testing.T) {
	cases := []struct{ in, want string }{
		{"a APPEND INBOX (\\Seen) \"01-Jan-2020 00:00:00 +0000\" {3+}\r\nabc\r\n", "a OK [APPENDUID 1 4] APPEND completed"},
		{"b APPEND INBOX ~{3+}\r\na\x00c\r\n", "b OK [APPENDUID 1 4]"},
		{"c APPEND INBOX UTF8 (~{3+}\r\nabc)\r\n", "c OK [APPENDUID 1 4]"},
		{"d APPEND INBOX {1+}\r\na {1+}\r\nb\r\n", "d BAD"},
		{"e APPEND INBOX CATENATE (TEXT {1+}\r\na)\r\n", "e BAD"},
		{"f APPEND INBOX (\\Seen {1+}\r\na\r\n", "f BAD"},
		{"g APPEND INBOX {209715200}\r\n", "g NO [TOOBIG]"},
	}
	// MULTIAPPEND and CATENATE advertised, as a server of both kinds of sessions may
	caps := imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapLiteralPlus: {}, imap.CapBinary: {}, imap.CapMultiAppend: {}, imap.CapCatenate: {}}
	for _, c := range cases {
		var log fuzzLog
		srv := New(&Options{
			NewSession: func(*Conn) (Session, *GreetingData, error) {
				return plainSession{&fuzzSession{}}, &GreetingData{PreAuth: true}, nil
			},
			Caps:         caps,
			Logger:       &log,
			InsecureAuth: true,
		})
		conn := &fuzzNetConn{r: bytes.NewReader([]byte(c.in + "z NOOP\r\n"))}
		newConn(conn, srv).serve()
		out := conn.w.String()
		if log.String() != "" {
			t.Errorf("%q: logged %s", c.in, log.String())
		}
		if !strings.Contains(out, "\r\n"+c.want) {
			t.Errorf("%q: want %q in\n%q", c.in, c.want, out)
		}
		if !strings.Contains(out, "\r\nz OK") {
			t.Errorf("%q: the next command was not answered:\n%s", c.in, out)
		}
		if strings.Count(out, " OK [APPENDUID") > 1 || strings.Contains(out, "b BAD") && c.in[0] == 'd' {
			t.Errorf("%q: more than one command answered for it:\n%s", c.in, out)
		}
	}
}
