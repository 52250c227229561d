package imapd

import (
	"strings"
	"testing"
)

// count returns how many lines contain sub.
func count(lines []string, sub string) int {
	n := 0
	for _, l := range lines {
		if strings.Contains(l, sub) {
			n++
		}
	}
	return n
}

// RFC 3501 §2.3.2: a message is \Recent in exactly one session, the first to select its folder
// after it arrived; EXAMINE and STATUS look without claiming. New mail is claimed by a session that
// has the folder selected when it notices it, and announced with one EXISTS and a RECENT.
func TestRecent(t *testing.T) {
	ts := newTestServer(t)
	ts.deliver(testMessage(1, "a"))
	ts.deliver(testMessage(2, "b"))
	a, b := ts.raw(true), ts.raw(true)

	if got := a.cmd("e EXAMINE INBOX"); count(got, "* 2 RECENT") != 1 {
		t.Errorf("EXAMINE: %q", got)
	}
	if got := b.cmd("s STATUS INBOX (RECENT)"); count(got, "RECENT 2") != 1 {
		t.Errorf("STATUS after EXAMINE: %q", got)
	}
	if got := a.cmd("s SELECT INBOX"); count(got, "* 2 RECENT") != 1 {
		t.Errorf("first SELECT: %q", got)
	}
	if got := a.cmd("f FETCH 1:2 (FLAGS)"); count(got, `\Recent`) != 2 {
		t.Errorf("FETCH in the claiming session: %q", got)
	}
	if got := b.cmd("s SELECT INBOX"); count(got, "* 0 RECENT") != 1 {
		t.Errorf("second SELECT: %q", got)
	}
	if got := b.cmd("f FETCH 1:2 (FLAGS)"); count(got, `\Recent`) != 0 {
		t.Errorf("FETCH in the other session: %q", got)
	}

	// Three deliveries: one EXISTS per NOOP; the first session to poll claims them.
	for i := 3; i <= 5; i++ {
		ts.deliver(testMessage(i, "new"))
	}
	got := a.cmd("n NOOP")
	if count(got, "EXISTS") != 1 || count(got, "* 5 EXISTS") != 1 || count(got, "* 5 RECENT") != 1 {
		t.Errorf("NOOP in the first session: %q", got)
	}
	if got := b.cmd("n NOOP"); count(got, "EXISTS") != 1 || count(got, "RECENT") != 0 {
		t.Errorf("NOOP in the second session: %q", got)
	}
	if got := a.cmd("r SEARCH RECENT"); got[0] != "* SEARCH 1 2 3 4 5\r\n" {
		t.Errorf("SEARCH RECENT (first): %q", got)
	}
	if got := b.cmd("r SEARCH RECENT"); got[0] != "* SEARCH\r\n" {
		t.Errorf("SEARCH RECENT (second): %q", got)
	}
	if got := b.cmd("o SEARCH OLD"); got[0] != "* SEARCH 1 2 3 4 5\r\n" {
		t.Errorf("SEARCH OLD (second): %q", got)
	}
	if got := b.cmd("s STATUS INBOX (RECENT)"); count(got, "RECENT 0") != 1 {
		t.Errorf("STATUS after the claims: %q", got)
	}

	// Another session's flag change reaches the first with \Recent kept.
	b.cmd(`t STORE 5 +FLAGS (\Flagged)`)
	if got := a.cmd("n NOOP"); count(got, `FLAGS (\Flagged \Recent))`) != 1 {
		t.Errorf("flag update in the claiming session: %q", got)
	}
	// New mail during IDLE: EXISTS, then RECENT.
	a.send("i IDLE\r\n")
	if l := a.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("IDLE: %q", l)
	}
	ts.deliver(testMessage(6, "idle"))
	if l := a.line(); l != "* 6 EXISTS\r\n" {
		t.Errorf("IDLE: %q, want * 6 EXISTS", l)
	}
	if l := a.line(); l != "* 6 RECENT\r\n" {
		t.Errorf("IDLE: %q, want * 6 RECENT", l)
	}
	if got := a.answer("DONE\r\n", "i"); !strings.HasPrefix(got, "i OK") {
		t.Errorf("DONE: %q", got)
	}
}
