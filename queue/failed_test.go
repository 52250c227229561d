package queue

import (
	"context"
	"strings"
	"testing"

	"postie/envelope"
)

// EnqueueFailed: failures found before queueing become one bounce, and
// the message leaves the spool; nothing is attempted.
func TestEnqueueFailedBounces(t *testing.T) {
	d := newDeliverer(tempFail)
	h := newHarness(t, d, nil)
	h.run()
	env := &envelope.Envelope{ID: "late", From: "alice@example.test", To: []string{"full@example.test", "gone@example.test"}}
	_, err := h.q.EnqueueFailed(context.Background(), env, strings.NewReader("Subject: quoted\r\n\r\n"),
		[]error{envelope.ErrQuotaExceeded, envelope.Temp(nil)})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the bounce", func() bool { return len(h.b.got()) == 1 })
	h.waitEmpty()
	p := parseDSN(t, h.b.got()[0].body)
	if len(p.rcpts) != 2 || p.rcpts[0].Get("Status") != "5.2.2" || p.rcpts[1].Get("Action") != "failed" {
		t.Errorf("DSN recipients: %+v", p.rcpts)
	}
	if !strings.Contains(p.orig, "Subject: quoted") {
		t.Errorf("the original header is not quoted: %q", p.orig)
	}
	if calls, _, _, _ := d.stats(); len(calls) != 0 {
		t.Errorf("the deliverer was called %d times for recipients that had already failed", len(calls))
	}
	if _, err := h.q.EnqueueFailed(context.Background(), env, strings.NewReader("x"), nil); err == nil {
		t.Error("a mismatched error list was accepted")
	}
	if files := spoolFiles(t, h.dir); len(files) != 0 {
		t.Errorf("a refused EnqueueFailed left %v", files)
	}
}

// A recipient repeated (in another case) is bounced once, with its first
// error; it used to fail the call after the message file was written,
// leaving that file behind.
func TestEnqueueFailedRepeatedRecipient(t *testing.T) {
	h := newHarness(t, newDeliverer(nil), nil)
	h.run()
	env := &envelope.Envelope{ID: "late", From: "alice@example.test", To: []string{"full@example.test", "FULL@example.test"}}
	if _, err := h.q.EnqueueFailed(context.Background(), env, strings.NewReader("Subject: s\r\n\r\n"),
		[]error{envelope.ErrQuotaExceeded, envelope.Temp(nil)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the bounce", func() bool { return len(h.b.got()) == 1 })
	h.waitEmpty()
	p := parseDSN(t, h.b.got()[0].body)
	if len(p.rcpts) != 1 || p.rcpts[0].Get("Status") != "5.2.2" {
		t.Errorf("DSN recipients: %+v, want full@example.test once with its first error", p.rcpts)
	}
}
