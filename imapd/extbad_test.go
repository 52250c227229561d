package imapd

import (
	"strings"
	"testing"
)

// Malformed commands of the extensions (ID, QUOTA, COMPRESS, MULTIAPPEND, CATENATE, NOTIFY,
// PREVIEW) get BAD or NO, never SERVERBUG, and the connection goes on.
func TestExtensionsMalformed(t *testing.T) {
	ts := newTestServer(t)
	ts.deliver(testMessage(1, "x"))
	r := ts.raw(true)
	r.cmd("s SELECT INBOX")
	for _, cmd := range []string{
		`ID (`, `ID ("a" "b" "c")`, `ID ("a" {100000}`, `ID x`,
		`GETQUOTAROOT`, `GETQUOTA`, `SETQUOTA "" (`, `SETQUOTA "" (STORAGE x)`, `GETQUOTAROOT "a&bad"`,
		`COMPRESS DEFLATE extra`, `COMPRESS ""`,
		`APPEND INBOX CATENATE (`, `APPEND INBOX CATENATE ()`, `APPEND INBOX CATENATE (URL)`,
		`APPEND INBOX CATENATE (TEXT "x")`, `APPEND INBOX CATENATE (BOGUS 1)`, `APPEND INBOX CATENATE (URL "/INBOX/;UID=1"`,
		`APPEND INBOX {2+}` + "\r\nab (\\Seen",
		`APPEND INBOX {2+}` + "\r\nab CATENATE (URL \"/INBOX/;UID=99\")",
		`NOTIFY`, `NOTIFY SET STATUS`, `NOTIFY SET (SELECTED (MessageNew (BODY[`, `NOTIFY SET (SUBTREE () (MessageNew))`,
		`NOTIFY SET (PERSONAL (MessageNew) x`, `NOTIFY SET (PERSONAL ())`, `NOTIFY FOO`,
		`FETCH 1 (PREVIEW (LAZY`, `FETCH 1 PREVIEW ()`, `FETCH 1 (PREVIEW LAZY)`,
	} {
		l := r.cmd("t " + cmd)
		if a := last(l); !strings.HasPrefix(a, "t BAD") && !strings.HasPrefix(a, "t NO") || strings.Contains(a, "SERVERBUG") {
			t.Errorf("%q: %q", cmd, l)
		}
		if l := r.cmd("n NOOP"); !strings.HasPrefix(last(l), "n OK") {
			t.Fatalf("after %q: %q", cmd, l)
		}
	}
	if n := countIn(t, ts, "INBOX"); n != 1 {
		t.Errorf("%d messages in INBOX after the refused APPENDs", n)
	}
}
