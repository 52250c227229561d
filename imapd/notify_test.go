package imapd

import (
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

func has(lines []string, prefix string) bool {
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

// NOTIFY (RFC 5465): STATUS for other mailboxes (at once with STATUS, after commands, during
// IDLE), FETCH of new messages in the selected one, LIST for mailboxes and subscriptions, NONE.
func TestNotify(t *testing.T) {
	ts := newTestServer(t)
	r := ts.raw(true)
	if l := r.cmd("c CAPABILITY"); !strings.Contains(l[0], " NOTIFY") {
		t.Fatalf("NOTIFY not advertised: %q", l[0])
	}
	sent, err := ts.user().Mailbox("Sent")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sent.Append(strings.NewReader(testMessage(1, "one")), 0, time.Time{}, nil); err != nil {
		t.Fatal(err)
	}
	r.cmd("s SELECT INBOX")
	// After RFC 5465 §8's example: new messages of the selected mailbox with their headers, and
	// the message events of another mailbox.
	l := r.cmd("a NOTIFY SET STATUS (SELECTED (MessageNew (UID BODY.PEEK[HEADER.FIELDS (Subject)]) MessageExpunge FlagChange)) (MAILBOXES Sent (MessageNew MessageExpunge))")
	v := sent.UIDValidity()
	if !strings.HasPrefix(last(l), "a OK") || !has(l, "* STATUS \"Sent\" (MESSAGES 1 UIDNEXT 2 UIDVALIDITY "+itoa(int(v))+")") {
		t.Fatalf("NOTIFY SET STATUS: %q", l)
	}
	ts.deliver(testMessage(2, "pushed"))
	if _, err := sent.Append(strings.NewReader(testMessage(3, "two")), 0, time.Time{}, nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(pollRefreshGap + notifyCommandGap)
	l = r.cmd("n NOOP")
	if !has(l, "* 1 EXISTS") || !has(l, "* 1 FETCH (UID 1 BODY[HEADER.FIELDS (\"Subject\")] {") || !strings.Contains(strings.Join(l, ""), "Subject: pushed") ||
		!has(l, "* STATUS \"Sent\" (MESSAGES 2 UIDNEXT 3 UIDVALIDITY ") {
		t.Errorf("after a delivery and an append elsewhere: %q", l)
	}
	// During IDLE, without a command.
	r.send("i IDLE\r\n")
	if x := r.line(); !strings.HasPrefix(x, "+ ") {
		t.Fatalf("IDLE: %q", x)
	}
	if _, err := sent.Expunge([]uint32{1}, nil); err != nil {
		t.Fatal(err)
	}
	if x := r.line(); x != "* STATUS \"Sent\" (MESSAGES 1)\r\n" {
		t.Errorf("during IDLE: %q", x)
	}
	r.send("DONE\r\n")
	r.answer("", "i")

	// NONE: nothing more.
	r.cmd("z NOTIFY NONE")
	if _, err := sent.Append(strings.NewReader(testMessage(4, "three")), 0, time.Time{}, nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(pollRefreshGap + notifyCommandGap)
	if l := r.cmd("n NOOP"); len(l) != 1 {
		t.Errorf("after NOTIFY NONE: %q", l)
	}
}

func TestNotifyMailboxNames(t *testing.T) {
	ts := newTestServer(t)
	r := ts.raw(true)
	r.cmd("a NOTIFY SET (PERSONAL (MailboxName SubscriptionChange FlagChange MessageNew MessageExpunge))")
	c := ts.dial(nil)
	if err := c.Create("Projects", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Subscribe("Projects").Wait(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(notifyCommandGap)
	l := r.cmd("n NOOP")
	if !has(l, `* LIST () "/" "Projects"`) || !has(l, `* LIST (\Subscribed) "/" "Projects"`) {
		t.Errorf("after CREATE and SUBSCRIBE elsewhere: %q", l)
	}
	// A flag change elsewhere: UIDVALIDITY and HIGHESTMODSEQ.
	ts.deliver(testMessage(1, "x"))
	time.Sleep(pollRefreshGap + notifyCommandGap)
	r.cmd("n NOOP")
	mustSelect(t, c, "INBOX", false)
	if err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}, Silent: true}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(pollRefreshGap + notifyCommandGap)
	if l := r.cmd("n NOOP"); !has(l, "* STATUS INBOX (UIDVALIDITY ") || !strings.Contains(strings.Join(l, ""), " HIGHESTMODSEQ ") {
		t.Errorf("after a flag change elsewhere: %q", l)
	}
	if err := c.Delete("Projects").Wait(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(notifyCommandGap)
	if l := r.cmd("n NOOP"); !has(l, `* LIST (\NonExistent) "/" "Projects"`) {
		t.Errorf("after DELETE elsewhere: %q", l)
	}
}

func TestNotifyRefusals(t *testing.T) {
	ts := newTestServer(t)
	r := ts.raw(true)
	for cmd, want := range map[string]string{
		"NOTIFY SET (SELECTED (MailboxName))":                     "BAD",
		"NOTIFY SET (SELECTED (MessageNew))":                      "BAD",
		"NOTIFY SET (SELECTED (FlagChange))":                      "BAD",
		"NOTIFY SET (PERSONAL (MessageNew (UID)))":                "BAD",
		"NOTIFY SET (PERSONAL (AnnotationChange))":                "NO [BADEVENT (MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange)]",
		"NOTIFY SET (PERSONAL (MailboxMetadataChange))":           "NO [BADEVENT ",
		"NOTIFY SET (BOGUS (MessageNew))":                         "BAD",
		"NOTIFY SET":                                              "BAD",
		"NOTIFY SET (MAILBOXES (MessageNew))":                     "BAD",
		"NOTIFY SET (INBOXES NONE) (SUBTREE (a b) (MailboxName))": "OK",
		"NOTIFY NONE": "OK",
	} {
		if l := r.cmd("t " + cmd); !strings.HasPrefix(last(l), "t "+want) {
			t.Errorf("%s: %q, want %s", cmd, last(l), want)
		}
	}
	if l := ts.raw(false).cmd("t NOTIFY NONE"); !strings.HasPrefix(last(l), "t BAD") {
		t.Errorf("NOTIFY before login: %q", l)
	}
}
