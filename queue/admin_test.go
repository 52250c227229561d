package queue

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"postie/envelope"
)

func slowRetries(o *Options) {
	o.MinRetry, o.MaxRetry, o.Lifetime = time.Hour, 2*time.Hour, 100*time.Hour
}

// The admin functions are called on the directory, as `postie queue` does
// from another process, while Run is active: they go through the request
// files the scheduler polls every second.
func TestAdminWhileRunning(t *testing.T) {
	t.Parallel() // it waits for the real poll interval
	d := newDeliverer(tempFail)
	h := newHarness(t, d, slowRetries)
	h.run()
	a := h.enqueue("alice@example.test", "a@remote.test")
	b := h.enqueue("alice@example.test", "b@remote.test")
	c := h.enqueue("alice@example.test", "c@other.test")
	h.settle()

	items, err := List(h.dir)
	if err != nil || len(items) != 3 {
		t.Fatalf("List = %d items, %v", len(items), err)
	}
	it := items[0]
	if it.ID != a && items[1].ID == a {
		it = items[1]
	} else if it.ID != a {
		it = items[2]
	}
	if it.ID != a || it.From != "alice@example.test" || it.Attempts != 1 || it.Size != int64(len(testMsg)) ||
		!strings.Contains(it.LastError, "451 4.7.1 greylisted (0)") || it.Rcpts[0].Status != StatusPending {
		t.Errorf("List[0] = %+v", it)
	}
	if wait := it.NextAttempt.Sub(h.clock.Now()); wait < 54*time.Minute || wait > time.Hour {
		t.Errorf("next try in %v, want about MinRetry", wait)
	}

	start := time.Now()
	if err := Flush(h.dir); err != nil {
		t.Fatal(err)
	}
	deadline := start.Add(3 * time.Second)
	for d.triesOf("a@remote.test") < 2 || d.triesOf("b@remote.test") < 2 || d.triesOf("c@other.test") < 2 {
		if time.Now().After(deadline) {
			t.Fatal("flush did not bring the attempts within 3 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("flush to attempt: %v", time.Since(start).Round(time.Millisecond))

	if err := Delete(h.dir, a); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(h.dir, a+msgExt)); !os.IsNotExist(err) {
		t.Errorf("message file still there: %v", err)
	}
	if err := Delete(h.dir, a); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Delete: %v", err)
	}
	if err := Delete(h.dir, "../../etc/passwd"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Delete of a path: %v", err)
	}

	if err := Bounce(h.dir, b); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the bounce", func() bool { return len(h.b.got()) == 1 })
	p := parseDSN(t, h.b.got()[0].body)
	r := p.rcpt(t, "b@remote.test")
	expectField(t, r, "Action", "failed")
	expectField(t, r, "Status", "5.0.0")
	expectField(t, r, "Diagnostic-Code", "smtp; 451 4.7.1 greylisted (1)")
	if !strings.Contains(p.text, reasonCancelled) {
		t.Errorf("text part:\n%s", p.text)
	}

	// c's two files, no requests or answers left over. A finished message
	// loses its state file first, then its message file: wait for both.
	waitFor(t, "only one message left", func() bool {
		items, _ := List(h.dir)
		return len(items) == 1 && items[0].ID == c && len(spoolFiles(t, h.dir)) == 2
	})
}

// With no server running, the admin functions edit the spool themselves;
// the next server acts on it.
func TestAdminWithoutServer(t *testing.T) {
	d := newDeliverer(tempFail)
	h := newHarness(t, d, slowRetries)
	h.run()
	a := h.enqueue("alice@example.test", "a@remote.test")
	b := h.enqueue("alice@example.test", "b@remote.test")
	c := h.enqueue("alice@example.test", "c@other.test")
	h.settle()
	h.stop()
	h.q.Close()

	if err := Bounce(h.dir, a); err != nil {
		t.Fatal(err)
	}
	if err := Delete(h.dir, b); err != nil {
		t.Fatal(err)
	}
	if err := Bounce(h.dir, b); !errors.Is(err, ErrNotFound) {
		t.Errorf("Bounce of a deleted message: %v", err)
	}
	if err := Flush(h.dir); err != nil {
		t.Fatal(err)
	}
	items, err := List(h.dir)
	if err != nil || len(items) != 2 {
		t.Fatalf("List = %+v, %v", items, err)
	}
	byID := map[string]Item{items[0].ID: items[0], items[1].ID: items[1]}
	if r := byID[a].Rcpts[0]; r.Status != StatusFailed || r.DSNStatus != "5.0.0" {
		t.Errorf("bounced message: %+v", byID[a])
	}
	if it := byID[c]; it.NextAttempt.IsZero() || !it.NextAttempt.Equal(it.Created) {
		t.Errorf("flushed message: %+v", it)
	}

	// The next server sends the bounce and tries c at once.
	d2 := newDeliverer(nil)
	q, err := Open(testOptions(t, h.dir, h.clock, d2))
	if err != nil {
		t.Fatal(err)
	}
	h.q = q
	h.run()
	h.waitEmpty()
	if d2.triesOf("c@other.test") != 1 || d2.callCount() != 1 || len(h.b.got()) != 1 {
		t.Errorf("after restart: %d attempts, %d DSNs", d2.callCount(), len(h.b.got()))
	}
}

// A second process (`postie deliver` forwarding to a remote address) can
// enqueue while the server owns the spool; the server picks it up.
func TestEnqueueFromAnotherProcess(t *testing.T) {
	d := newDeliverer(nil)
	h := newHarness(t, d, nil)
	h.q.pollEvery = 50 * time.Millisecond
	h.run()
	guest, err := Open(testOptions(t, h.dir, h.clock, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer guest.Close()
	if guest.owner {
		t.Fatal("a second Open became the owner")
	}
	id, err := guest.Enqueue(context.Background(), &envelope.Envelope{From: "alice@example.test", To: []string{"bob@remote.test"}}, strings.NewReader(testMsg))
	if err != nil {
		t.Fatal(err)
	}
	if len(guest.items) != 0 {
		t.Error("the guest scheduled the message itself")
	}
	waitFor(t, "the server to deliver "+id, func() bool { return d.triesOf("bob@remote.test") == 1 })
	h.waitEmpty()
}
