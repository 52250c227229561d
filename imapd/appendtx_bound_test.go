package imapd

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// The memory a MULTIAPPEND stages is bounded for the command, not per message: the second of two
// messages that together pass stageInMemory is staged in a file while the command is still open
// (each message was kept in memory up to stageInMemory, so N messages cost N times that).
func TestMultiAppendMemoryBounded(t *testing.T) {
	ts := newTestServer(t)
	r := ts.raw(true)
	msg := "Subject: m\r\n\r\n" + strings.Repeat("x", stageInMemory*3/4)
	r.send("M APPEND INBOX {" + itoa(len(msg)) + "}\r\n")
	if l := r.line(); !strings.HasPrefix(l, "+ ") {
		t.Fatalf("first literal: %q", l)
	}
	r.send(msg + " {" + itoa(len(msg)) + "}\r\n")
	if l := r.line(); !strings.HasPrefix(l, "+ ") {
		t.Fatalf("second literal: %q", l)
	}
	r.send(msg + " {1}\r\n") // the server has staged both once it asks for the third
	if l := r.line(); !strings.HasPrefix(l, "+ ") {
		t.Fatalf("third literal: %q", l)
	}
	staged, _ := filepath.Glob(filepath.Join(ts.user().Dir(), "tmp", "append-*"))
	if len(staged) != 1 {
		t.Errorf("%d staging files with two messages of %d bytes staged, want 1", len(staged), len(msg))
	}
	if l := r.answer("x\r\n", "M"); !strings.HasPrefix(l, "M OK [APPENDUID ") {
		t.Fatalf("MULTIAPPEND: %q", l)
	}
}

// With a quota, a MULTIAPPEND is refused OVERQUOTA as soon as what it stages passes what the quota
// leaves, before the rest is asked for: staging is bounded by the quota, not only the commit.
func TestMultiAppendStagingOverQuota(t *testing.T) {
	qa := &quotaAuth{quota: 1500}
	ts := newTestServer(t, func(o *Options) { qa.fakeAuth = o.Auth.(*fakeAuth); o.Auth = qa })
	r := ts.raw(true)
	body := strings.Repeat("y", 1000)
	r.send("Q APPEND INBOX {1000}\r\n")
	if l := r.line(); !strings.HasPrefix(l, "+ ") {
		t.Fatalf("first literal: %q", l)
	}
	r.send(body + " {1000}\r\n")
	if l := r.line(); !strings.HasPrefix(l, "+ ") {
		t.Fatalf("second literal: %q", l)
	}
	r.send(body + " {1000}\r\n")
	if l := r.line(); !strings.HasPrefix(l, "Q NO [OVERQUOTA]") {
		t.Fatalf("after 2000 bytes staged under a 1500-byte quota: %q", l)
	}
	if n := countIn(t, ts, "INBOX"); n != 0 {
		t.Errorf("%d messages left by the refused APPEND", n)
	}
	if l := r.cmd("N NOOP"); !strings.HasPrefix(last(l), "N OK") {
		t.Errorf("after the refusal: %q", l)
	}
}

// Past stageInMemory, the messages of a MULTIAPPEND share one staging file (one descriptor for
// the command, however many messages it has), and come back whole and in order.
func TestMultiAppendOneStagingFile(t *testing.T) {
	ts := newTestServer(t)
	r := ts.raw(true)
	var msgs []string
	raw := "S APPEND INBOX"
	for i := range 4 {
		m := "Subject: s" + itoa(i) + "\r\n\r\n" + strings.Repeat(string(rune('a'+i)), stageInMemory*3/4)
		msgs = append(msgs, m)
		raw += " {" + itoa(len(m)) + "+}\r\n" + m
	}
	r.send(raw + " {1}\r\n") // the server has staged four once it asks for the fifth
	if l := r.line(); !strings.HasPrefix(l, "+ ") {
		t.Fatalf("fifth literal: %q", l)
	}
	staged, _ := filepath.Glob(filepath.Join(ts.user().Dir(), "tmp", "append-*"))
	if len(staged) != 1 {
		t.Errorf("%d staging files with four messages of %d bytes staged, want 1", len(staged), len(msgs[0]))
	}
	if l := r.answer("x\r\n", "S"); !strings.HasPrefix(l, "S OK [APPENDUID ") {
		t.Fatalf("MULTIAPPEND: %q", l)
	}
	c := ts.dial(nil)
	mustSelect(t, c, "INBOX", true)
	got := fetchAll(t, c, imap.SeqSetNum(1, 2, 3, 4), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
	for i, m := range msgs {
		if i >= len(got) || string(got[i].BodySection[0].Bytes) != m {
			t.Fatalf("message %d not stored as sent", i+1)
		}
	}
	if staged, _ := filepath.Glob(filepath.Join(ts.user().Dir(), "tmp", "append-*")); len(staged) != 0 {
		t.Errorf("staging files left after the command: %v", staged)
	}
}

// A MULTIAPPEND of more than maxAppendMessages messages is refused NO [LIMIT] and leaves the
// mailbox untouched: small messages would otherwise stage without bound.
func TestMultiAppendMessageCount(t *testing.T) {
	ts := newTestServer(t)
	r := ts.raw(true)
	raw := "L APPEND INBOX" + strings.Repeat(" {1+}\r\nx", maxAppendMessages+1) + "\r\n"
	if l := r.answer(raw, "L"); !strings.HasPrefix(l, "L NO [LIMIT]") {
		t.Fatalf("MULTIAPPEND of %d messages: %q", maxAppendMessages+1, l)
	}
	if n := countIn(t, ts, "INBOX"); n != 0 {
		t.Errorf("%d messages left by the refused APPEND", n)
	}
	if l := r.cmd("N NOOP"); !strings.HasPrefix(last(l), "N OK") {
		t.Errorf("after the refusal: %q", l)
	}
}
