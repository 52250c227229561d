package imapserver

import (
	"strings"
	"testing"
)

// CANCELUPDATE takes one or more quoted tags (RFC 5267 §5); SORT RETURN (UPDATE) is accepted
// (CONTEXT=SORT) and, alone, returns no ALL.
func TestContextCommands(t *testing.T) {
	cases := []struct{ in, want, not string }{
		{"a CANCELUPDATE \"x\"\r\n", "a OK", ""},
		{"a CANCELUPDATE \"x\" \"y\" \"z\"\r\n", "a OK", ""},
		{"a CANCELUPDATE \"x\" \r\n", "a OK", ""},
		{"a CANCELUPDATE\r\n", "a BAD", ""},
		{"a CANCELUPDATE \"x\"\"y\"\r\n", "a BAD", ""},
		{"a CANCELUPDATE \"x\"  \"y\"\r\n", "a BAD", ""},
		{"a SORT RETURN (UPDATE) (DATE) UTF-8 ALL\r\n", "* ESEARCH (TAG \"a\")\r\na OK", "ALL 1"},
		{"a UID SORT RETURN (UPDATE COUNT) (REVERSE ARRIVAL) UTF-8 ALL\r\n", "* ESEARCH (TAG \"a\") UID COUNT ", ""},
	}
	for _, c := range cases {
		out, logged := runFuzzConn([]byte(c.in))
		if !strings.Contains(out, "\r\n"+c.want) {
			t.Errorf("%q: want %q in\n%s", c.in, c.want, out)
		}
		if c.not != "" && strings.Contains(out, c.not) {
			t.Errorf("%q: unexpected %q in\n%s", c.in, c.not, out)
		}
		if logged != "" {
			t.Errorf("%q: logged %s", c.in, logged)
		}
	}
}
