package queue

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"postie/envelope"
	"postie/suppress"
)

// TestExplainedBounce: a Gmail 5.7.26 refusal is explained in the queue
// listing and in the bounce to our sender.
func TestExplainedBounce(t *testing.T) {
	gmail := envelope.Errorf(550, 5, 7, 26, "gmail-smtp-in.l.google.test[192.0.2.9] said: This mail has been blocked because the sender is unauthenticated. (in reply to end of DATA)")
	d := newDeliverer(func(string, int) error { return gmail })
	h := newHarness(t, d, nil)
	h.b.fail = func(n int) error {
		if n == 0 {
			return errors.New("mailbox busy") // keeps the message listed for a while
		}
		return nil
	}
	id := h.enqueue("alice@example.test", "bob@gmail.test")
	h.run()
	waitFor(t, "the first hand-over of the bounce", func() bool { return h.b.tries() >= 1 })
	h.settle()
	items, err := List(h.dir)
	if err != nil || len(items) != 1 || items[0].ID != id {
		t.Fatalf("List = %+v, %v", items, err)
	}
	if ex := items[0].Explanation; !strings.Contains(ex, "not authenticated") || !strings.Contains(ex, "DKIM") {
		t.Errorf("listing explanation = %q", ex)
	}
	h.advance(time.Hour)
	waitFor(t, "the bounce", func() bool { return len(h.b.got()) == 1 })
	body := string(h.b.got()[0].body)
	for _, want := range []string{"What this means: Gmail refused the message because it is not", "What to do:", "https://support.google.com/mail/answer/81126"} {
		if !strings.Contains(body, want) {
			t.Errorf("the bounce lacks %q:\n%s", want, body)
		}
	}
	for _, line := range strings.Split(body, "\r\n") {
		if len(line) > 998 {
			t.Errorf("a line of %d octets", len(line))
		}
	}
}

// TestNoExplanationForOrdinaryFailures: a plain "user unknown" gets none.
func TestNoExplanationForOrdinaryFailures(t *testing.T) {
	if s := explainBlock("550 5.1.1 user unknown"); s != "" {
		t.Errorf("explainBlock = %q", s)
	}
}

// TestHardBounceSuppressed: a recipient refused as unknown goes to the
// suppression list, with the reply; other failures do not.
func TestHardBounceSuppressed(t *testing.T) {
	d := newDeliverer(func(rcpt string, n int) error {
		switch {
		case strings.HasPrefix(rcpt, "gone@"):
			return envelope.Errorf(550, 5, 1, 1, "mx said: <gone@remote.test>: user unknown")
		case strings.HasPrefix(rcpt, "full@"):
			return envelope.Errorf(552, 5, 2, 2, "mx said: mailbox full")
		case strings.HasPrefix(rcpt, "policy@"):
			return envelope.Errorf(550, 5, 7, 1, "mx said: refused by policy")
		case strings.HasPrefix(rcpt, "later@"):
			return envelope.Errorf(450, 4, 1, 1, "mx said: user unknown, try later")
		}
		return nil
	})
	// The real list, as the server wires it.
	list, err := suppress.Open(suppress.Options{Path: filepath.Join(t.TempDir(), "suppress.json"), For: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, d, func(o *Options) { o.Suppressor = list })
	h.enqueue("alice@example.test", "gone@remote.test", "full@remote.test", "policy@remote.test", "later@remote.test", "ok@remote.test")
	h.run()
	h.settle()
	waitFor(t, "the bounce", func() bool { return len(h.b.got()) == 1 })
	es, err := list.Entries()
	if err != nil || len(es) != 1 || es[0].Addr != "gone@remote.test" || !strings.Contains(es[0].Reason, "550 5.1.1") {
		t.Fatalf("suppression list = %+v, %v; want gone@remote.test alone", es, err)
	}
	if since, ok := list.Suppressed("Gone@Remote.test"); !ok || since.IsZero() {
		t.Error("the hard-bounced address is not suppressed")
	}
}
