package imapd

import (
	"fmt"
	"testing"
)

// QRESYNC's known-uids limits VANISHED (EARLIER) (RFC 7162 §3.2.5.1): an expunged UID the client
// does not list is not reported, whether or not seq-match data comes along.
func TestQResyncKnownUIDsLimitVanished(t *testing.T) {
	ts := startTestServer(t, t.TempDir())
	for i := 1; i <= 6; i++ {
		ts.deliver(testMessage(i, fmt.Sprint("message ", i)))
	}
	c := ts.raw(true)
	sel := c.cmd("a1 SELECT INBOX")
	validity, h0 := uidValidityIn(t, sel), highestIn(t, sel)
	expectOK(t, c.cmd(`a2 UID STORE 3,5 +FLAGS.SILENT (\Deleted)`))
	expectOK(t, c.cmd("a3 EXPUNGE"))
	expectOK(t, c.cmd("a4 ENABLE QRESYNC"))
	for _, q := range []struct{ params, want string }{
		{"1:2,5:6", "5"},
		{"1:6", "3,5"},
		{"1:2,4", ""},
		{"2:4 (1:2 2:3)", "3"},
		{"1:6 (1,4 1,5)", "3,5"},
	} {
		got := c.cmd(fmt.Sprintf("b SELECT INBOX (QRESYNC (%s %d %s))", validity, h0, q.params))
		expectOK(t, got)
		if set, _ := vanishedIn(got); set != q.want {
			t.Errorf("known-uids %s: VANISHED %q, want %q: %q", q.params, set, q.want, got)
		}
	}
}
