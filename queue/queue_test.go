package queue

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"postie/envelope"
)

func TestEnqueueDurableLayout(t *testing.T) {
	h := newHarness(t, newDeliverer(nil), nil)
	env := &envelope.Envelope{ID: "smtp-1", From: "alice@example.test", To: []string{"bob@remote.test", "Bob@REMOTE.test", "carol@other.test"}, RemoteAddr: "192.0.2.1"}
	id, err := h.q.Enqueue(context.Background(), env, strings.NewReader(testMsg))
	if err != nil {
		t.Fatal(err)
	}
	if !validID(id) {
		t.Fatalf("ID %q is not in our form", id)
	}
	// On return, exactly the message file and its state file exist.
	if got, want := strings.Join(spoolFiles(t, h.dir), " "), id+".json "+id+".msg"; got != want {
		t.Fatalf("spool holds %q, want %q", got, want)
	}
	data, err := os.ReadFile(filepath.Join(h.dir, id+msgExt))
	if err != nil || string(data) != testMsg {
		t.Fatalf("message file = %q, %v", data, err)
	}
	raw, err := os.ReadFile(filepath.Join(h.dir, id+stateExt))
	if err != nil {
		t.Fatal(err)
	}
	var st state
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Fatal(err)
	}
	if st.ID != id || st.From != env.From || st.EnvID != "smtp-1" || st.Size != int64(len(testMsg)) || !st.Created.Equal(h.clock.Now()) {
		t.Errorf("state = %+v", st)
	}
	// The repeated recipient (same address, other case) is kept once.
	if len(st.Rcpts) != 2 || st.Rcpts[0].Addr != "bob@remote.test" || st.Rcpts[1].Addr != "carol@other.test" || st.Rcpts[0].Status != StatusPending {
		t.Errorf("recipients = %+v", st.Rcpts)
	}
}

// failingReader gives some bytes, then an error, as a dropped SMTP
// connection or a full disk would.
type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, errors.New("connection reset")
	}
	n := min(len(p), r.n)
	for i := range n {
		p[i] = 'x'
	}
	r.n -= n
	return n, nil
}

func TestEnqueueFailureLeavesNothing(t *testing.T) {
	h := newHarness(t, newDeliverer(nil), nil)
	ctx := context.Background()
	env := &envelope.Envelope{From: "alice@example.test", To: []string{"bob@remote.test"}}
	if _, err := h.q.Enqueue(ctx, env, &failingReader{n: 100 << 10}); err == nil {
		t.Fatal("Enqueue with a failing body succeeded")
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := h.q.Enqueue(cancelled, env, strings.NewReader(testMsg)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Enqueue with a cancelled context: %v", err)
	}
	for _, bad := range []*envelope.Envelope{
		{From: "alice@example.test"},
		{From: "alice@example.test", To: []string{"../../etc/passwd"}},
		{From: "not an address", To: []string{"bob@remote.test"}},
	} {
		if _, err := h.q.Enqueue(ctx, bad, strings.NewReader(testMsg)); err == nil {
			t.Errorf("Enqueue(%+v) succeeded", bad)
		}
	}
	if files := spoolFiles(t, h.dir); len(files) != 0 {
		t.Fatalf("failed Enqueue calls left %v", files)
	}
}

func TestRetryThenDelivered(t *testing.T) {
	d := newDeliverer(func(rcpt string, n int) error {
		if n < 2 {
			return tempFail(rcpt, n)
		}
		return nil
	})
	h := newHarness(t, d, nil)
	h.run()
	id := h.enqueue("alice@example.test", "bob@remote.test")
	waitFor(t, "the first attempt", func() bool { return d.triesOf("bob@remote.test") == 1 })

	// Backoff: the first retry is due after MinRetry (less jitter).
	var items []Item
	waitFor(t, "the deferral on disk", func() bool {
		items, _ = List(h.dir)
		return len(items) == 1 && items[0].Attempts == 1
	})
	it := items[0]
	if it.ID != id || !strings.Contains(it.LastError, "451 4.7.1 greylisted") {
		t.Errorf("List = %+v", it)
	}
	if wait := it.NextAttempt.Sub(h.clock.Now()); wait < 54*time.Second || wait > time.Minute {
		t.Errorf("first retry in %v, want about MinRetry (1m)", wait)
	}
	h.advance(30 * time.Second)
	if n := d.triesOf("bob@remote.test"); n != 1 {
		t.Fatalf("retried before the backoff: %d attempts", n)
	}
	h.advance(30 * time.Second)
	waitFor(t, "the second attempt", func() bool { return d.triesOf("bob@remote.test") == 2 })
	waitFor(t, "the second deferral on disk", func() bool {
		items, _ = List(h.dir)
		return len(items) == 1 && items[0].Attempts == 2
	})
	if wait := items[0].NextAttempt.Sub(h.clock.Now()); wait < 108*time.Second || wait > 2*time.Minute {
		t.Errorf("second retry in %v, want about 2×MinRetry", wait)
	}
	h.advance(2 * time.Minute)
	h.waitEmpty()
	calls, delivered, _, _ := d.stats()
	if n := delivered["bob@remote.test"]; n != 1 {
		t.Errorf("delivered %d times", n)
	}
	if c := calls[2]; c.from != "alice@example.test" || c.body != testMsg {
		t.Errorf("attempt carried from=%q body=%q", c.from, c.body)
	}
	if n := len(h.b.got()); n != 0 {
		t.Errorf("%d DSNs for a delivered message", n)
	}
}

func TestPermanentFailureBounces(t *testing.T) {
	d := newDeliverer(func(rcpt string, n int) error {
		return &envelope.Error{Code: 550, Enhanced: [3]int{5, 1, 1}, Message: "no such user here", Remote: "mx.remote.test"}
	})
	h := newHarness(t, d, nil)
	h.run()
	id := h.enqueue("alice@example.test", "bob@remote.test", "dave@remote.test")
	h.waitEmpty()
	if n := d.callCount(); n != 1 {
		t.Errorf("%d attempts, want 1 for both recipients of one domain", n)
	}
	dsns := h.b.got()
	if len(dsns) != 1 {
		t.Fatalf("%d DSNs, want 1", len(dsns))
	}
	m := dsns[0]
	if m.env.From != "" || len(m.env.To) != 1 || m.env.To[0] != "alice@example.test" {
		t.Errorf("DSN envelope from=%q to=%v", m.env.From, m.env.To)
	}
	p := parseDSN(t, m.body)
	if from := p.header.Get("From"); !strings.Contains(from, "Mail Delivery System") || !strings.Contains(from, "<MAILER-DAEMON@mail.example.test>") {
		t.Errorf("From: %q", from)
	}
	if to := p.header.Get("To"); !strings.Contains(to, "alice@example.test") {
		t.Errorf("To: %q", to)
	}
	if p.header.Get("Auto-Submitted") != "auto-replied" || p.header.Get("Message-Id") == "" || p.header.Get("Date") == "" {
		t.Errorf("DSN header lacks Auto-Submitted, Message-ID or Date: %v", p.header.Map())
	}
	expectField(t, p.perMessage, "Reporting-MTA", "dns; mail.example.test")
	expectField(t, p.perMessage, "X-Postie-Queue-Id", id)
	if _, err := time.Parse(time.RFC1123Z, p.perMessage.Get("Arrival-Date")); err != nil {
		t.Errorf("Arrival-Date: %v", err)
	}
	if len(p.rcpts) != 2 {
		t.Fatalf("%d recipient blocks, want 2", len(p.rcpts))
	}
	for _, addr := range []string{"bob@remote.test", "dave@remote.test"} {
		r := p.rcpt(t, addr)
		expectField(t, r, "Action", "failed")
		expectField(t, r, "Status", "5.1.1")
		expectField(t, r, "Remote-MTA", "dns; mx.remote.test")
		expectField(t, r, "Diagnostic-Code", "smtp; 550 5.1.1 no such user here")
		if !strings.Contains(p.text, "<"+addr+">: host mx.remote.test said: 550 5.1.1 no such user here") {
			t.Errorf("text part does not explain %s:\n%s", addr, p.text)
		}
	}
	if !strings.Contains(p.orig, "Subject: hello\r\n") || !strings.Contains(p.orig, "Message-ID: <m1@example.test>") {
		t.Errorf("original headers part = %q", p.orig)
	}
	if strings.Contains(string(m.body), "must not come back") {
		t.Error("the DSN carries the original body")
	}
}

func TestTwoDomainsOneFails(t *testing.T) {
	d := newDeliverer(func(rcpt string, n int) error {
		if rcptDomain(rcpt) == "remote.test" {
			return &envelope.Error{Code: 554, Enhanced: [3]int{5, 7, 1}, Message: "rejected"}
		}
		return nil
	})
	h := newHarness(t, d, nil)
	h.run()
	h.enqueue("alice@example.test", "bob@remote.test", "carol@other.test", "dan@OTHER.test")
	h.waitEmpty()
	calls, delivered, _, _ := d.stats()
	if len(calls) != 2 {
		t.Fatalf("%d attempts, want one per domain: %+v", len(calls), calls)
	}
	for _, c := range calls {
		for _, r := range c.rcpts[1:] {
			if rcptDomain(r) != rcptDomain(c.rcpts[0]) {
				t.Errorf("one attempt mixes domains: %v", c.rcpts)
			}
		}
	}
	if delivered["carol@other.test"] != 1 || delivered["dan@OTHER.test"] != 1 {
		t.Errorf("deliveries: %v", delivered)
	}
	dsns := h.b.got()
	if len(dsns) != 1 {
		t.Fatalf("%d DSNs, want 1", len(dsns))
	}
	p := parseDSN(t, dsns[0].body)
	if len(p.rcpts) != 1 {
		t.Fatalf("DSN lists %d recipients, want only the failed one", len(p.rcpts))
	}
	r := p.rcpt(t, "bob@remote.test")
	expectField(t, r, "Status", "5.7.1")
	expectField(t, r, "Remote-MTA", "")
}

// Recipients of several domains that fail in the same round of attempts
// share one DSN.
func TestFailuresTogetherOneBounce(t *testing.T) {
	d := newDeliverer(func(rcpt string, n int) error {
		if rcptDomain(rcpt) == "slow.test" {
			return &envelope.Error{Code: 552, Enhanced: [3]int{5, 2, 2}, Message: "mailbox full"}
		}
		return &envelope.Error{Code: 550, Enhanced: [3]int{5, 1, 1}, Message: "no such user"}
	})
	d.holdFor = map[string]time.Duration{"slow.test": 50 * time.Millisecond}
	h := newHarness(t, d, nil)
	h.run()
	h.enqueue("alice@example.test", "bob@remote.test", "carol@slow.test", "dan@other.test")
	h.waitEmpty()
	dsns := h.b.got()
	if len(dsns) != 1 {
		t.Fatalf("%d DSNs, want 1", len(dsns))
	}
	p := parseDSN(t, dsns[0].body)
	expectField(t, p.rcpt(t, "carol@slow.test"), "Status", "5.2.2")
	expectField(t, p.rcpt(t, "bob@remote.test"), "Status", "5.1.1")
	expectField(t, p.rcpt(t, "dan@other.test"), "Status", "5.1.1")
}

func TestLifetimeExpiry(t *testing.T) {
	d := newDeliverer(tempFail)
	h := newHarness(t, d, func(o *Options) { o.Lifetime = 10 * time.Minute })
	h.run()
	h.enqueue("alice@example.test", "bob@remote.test")
	h.settle()
	for range 9 {
		h.advance(time.Minute)
		if len(h.b.got()) != 0 {
			t.Fatalf("bounced before the lifetime, at %v", h.clock.Now())
		}
	}
	h.advance(time.Minute)
	h.waitEmpty()
	// Tries at 0, 1, 3, 7 and a last one when the lifetime ends (10m).
	if n := d.triesOf("bob@remote.test"); n != 5 {
		t.Errorf("%d attempts in the lifetime, want 5", n)
	}
	p := parseDSN(t, h.b.got()[0].body)
	r := p.rcpt(t, "bob@remote.test")
	expectField(t, r, "Action", "failed")
	expectField(t, r, "Status", "5.4.7")
	expectField(t, r, "Diagnostic-Code", "smtp; 451 4.7.1 greylisted (4)")
	if !strings.Contains(p.text, "delivery time expired after 10m0s") {
		t.Errorf("text part:\n%s", p.text)
	}
}

func TestDelayWarningOnce(t *testing.T) {
	deliverNow := false
	d := newDeliverer(func(rcpt string, n int) error {
		if deliverNow {
			return nil
		}
		return tempFail(rcpt, n)
	})
	h := newHarness(t, d, func(o *Options) { o.DelayWarning = 3 * time.Minute })
	h.run()
	id := h.enqueue("alice@example.test", "bob@remote.test")
	h.settle()
	h.advance(2 * time.Minute)
	if len(h.b.got()) != 0 {
		t.Fatal("delay notice before DelayWarning")
	}
	for range 15 { // 16 minutes of failures in all
		h.advance(time.Minute)
	}
	if n := d.triesOf("bob@remote.test"); n < 5 {
		t.Fatalf("only %d attempts", n)
	}
	d.mu.Lock()
	deliverNow = true
	d.mu.Unlock()
	h.advance(5 * time.Minute)
	h.waitEmpty()
	dsns := h.b.got()
	if len(dsns) != 1 {
		t.Fatalf("%d notices, want 1", len(dsns))
	}
	p := parseDSN(t, dsns[0].body)
	if s := p.header.Get("Subject"); !strings.Contains(s, "Delayed") {
		t.Errorf("Subject: %q", s)
	}
	expectField(t, p.perMessage, "X-Postie-Queue-Id", id)
	r := p.rcpt(t, "bob@remote.test")
	expectField(t, r, "Action", "delayed")
	expectField(t, r, "Status", "4.7.1")
	if _, err := time.Parse(time.RFC1123Z, r.Get("Will-Retry-Until")); err != nil {
		t.Errorf("Will-Retry-Until: %v", err)
	}
	if !strings.Contains(p.text, "not yet been delivered") {
		t.Errorf("text part:\n%s", p.text)
	}
}

func TestNullSenderNeverBounced(t *testing.T) {
	d := newDeliverer(func(rcpt string, n int) error {
		if rcpt == "bob@remote.test" {
			return &envelope.Error{Code: 550, Enhanced: [3]int{5, 1, 1}, Message: "no such user"}
		}
		return tempFail(rcpt, n)
	})
	h := newHarness(t, d, func(o *Options) {
		o.DelayWarning = 2 * time.Minute
		o.Lifetime = 10 * time.Minute
	})
	h.run()
	h.enqueue("", "bob@remote.test", "carol@other.test")
	h.settle()
	for range 10 {
		h.advance(time.Minute)
	}
	h.waitEmpty()
	if n := h.b.tries(); n != 0 {
		t.Fatalf("%d DSNs for a null-sender message", n)
	}
	if d.triesOf("carol@other.test") < 2 {
		t.Errorf("the temporary failure was not retried")
	}
}

func TestBounceHandOverRetried(t *testing.T) {
	d := newDeliverer(func(string, int) error {
		return &envelope.Error{Code: 550, Enhanced: [3]int{5, 1, 1}, Message: "no"}
	})
	h := newHarness(t, d, nil)
	h.b.fail = func(n int) error {
		if n == 0 {
			return envelope.ErrTempLocal
		}
		return nil
	}
	h.run()
	id := h.enqueue("alice@example.test", "bob@remote.test")
	waitFor(t, "the first hand-over", func() bool { return h.b.tries() == 1 })
	waitFor(t, "the deferred DSN on disk", func() bool {
		items, _ := List(h.dir)
		return len(items) == 1 && items[0].Rcpts[0].Status == StatusFailed
	})
	h.advance(time.Minute)
	h.waitEmpty()
	if h.b.tries() != 2 || len(h.b.got()) != 1 {
		t.Fatalf("hand-overs: %d tries, %d delivered", h.b.tries(), len(h.b.got()))
	}
	if p := parseDSN(t, h.b.got()[0].body); p.perMessage.Get("X-Postie-Queue-Id") != id {
		t.Error("wrong DSN")
	}
}

func TestRestartResumes(t *testing.T) {
	d := newDeliverer(tempFail)
	h := newHarness(t, d, nil)
	h.run()
	id := h.enqueue("alice@example.test", "bob@remote.test", "carol@other.test")
	waitFor(t, "the first attempts", func() bool {
		items, _ := List(h.dir)
		return len(items) == 1 && items[0].Attempts == 1 && items[0].Rcpts[1].Attempts == 1
	})
	h.stop()
	if err := h.q.Close(); err != nil {
		t.Fatal(err)
	}

	d2 := newDeliverer(nil)
	q2, err := Open(testOptions(t, h.dir, h.clock, d2))
	if err != nil {
		t.Fatal(err)
	}
	h.q = q2
	if n := len(q2.items); n != 1 {
		t.Fatalf("reopened queue holds %d messages", n)
	}
	st := q2.items[id].st
	if st.Rcpts[0].Attempts != 1 || st.Rcpts[0].NextAttempt.Before(h.clock.Now().Add(50*time.Second)) {
		t.Fatalf("state not resumed: %+v", st.Rcpts[0])
	}
	h.run()
	h.settle()
	if d2.callCount() != 0 {
		t.Fatal("attempted before the retry time")
	}
	h.advance(time.Minute)
	h.waitEmpty()
	if _, delivered, _, _ := d2.stats(); delivered["bob@remote.test"] != 1 || delivered["carol@other.test"] != 1 {
		t.Errorf("after restart: %v", delivered)
	}
}

func TestOpenRecovers(t *testing.T) {
	dir := t.TempDir()
	clock := newClock()
	q, err := Open(testOptions(t, dir, clock, newDeliverer(nil)))
	if err != nil {
		t.Fatal(err)
	}
	keep, err := q.Enqueue(context.Background(), &envelope.Envelope{From: "a@example.test", To: []string{"b@remote.test"}}, strings.NewReader(testMsg))
	if err != nil {
		t.Fatal(err)
	}
	q.Close()
	// What a crash can leave: an unfinished enqueue, temporary files, and
	// (after a lost directory entry) a state file without its message.
	orphanMsg := newID(clock.Now())
	orphanState := newID(clock.Now())
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(orphanMsg+msgExt, "partial")
	write(keep+stateExt+tmpExt, "{")             // an older version's temporary state file
	write(tmpPrefix+keep+stateExt+"-12345", "{") // safeio.FS.Replace's
	raw, _ := os.ReadFile(filepath.Join(dir, keep+stateExt))
	write(orphanState+stateExt, strings.ReplaceAll(string(raw), keep, orphanState))
	write("README", "not ours")
	write(adminDirName+"/x.req.tmp", "")

	q, err = Open(testOptions(t, dir, clock, newDeliverer(nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	want := keep + ".json " + keep + ".msg README"
	if got := strings.Join(spoolFiles(t, dir), " "); got != want {
		t.Errorf("after recovery: %q, want %q", got, want)
	}
	if len(q.items) != 1 || q.items[keep] == nil {
		t.Errorf("loaded %d messages", len(q.items))
	}
}

func TestConcurrencyLimits(t *testing.T) {
	d := newDeliverer(nil)
	d.hold = 20 * time.Millisecond
	h := newHarness(t, d, func(o *Options) {
		o.MaxConcurrency = 3
		o.MaxPerDomain = 2
	})
	for i := range 12 {
		h.enqueue("alice@example.test", []string{"a@one.test", "b@two.test", "c@three.test"}[i%3])
	}
	for range 6 {
		h.enqueue("alice@example.test", "z@busy.test")
	}
	h.run()
	h.waitEmpty()
	calls, _, peak, peakDom := d.stats()
	if len(calls) != 18 {
		t.Fatalf("%d attempts, want 18", len(calls))
	}
	if peak != 3 {
		t.Errorf("peak concurrency %d, want the limit 3", peak)
	}
	for dom, n := range peakDom {
		if n > 2 {
			t.Errorf("peak concurrency to %s: %d > 2", dom, n)
		}
	}
	if peakDom["busy.test"] != 2 {
		t.Errorf("peak to busy.test %d, want the limit 2", peakDom["busy.test"])
	}
}

func TestDelivererFaultsAreTemporary(t *testing.T) {
	var calls atomic.Int32
	h := newHarness(t, nil, nil)
	h.q.opts.Deliverer = delivererFunc(func(rcpts []string) []error {
		switch calls.Add(1) {
		case 1:
			return nil // wrong count
		case 2:
			panic("boom")
		}
		return make([]error, len(rcpts))
	})
	h.run()
	h.enqueue("alice@example.test", "bob@remote.test")
	h.settle()
	h.advance(time.Minute)
	h.advance(2 * time.Minute)
	h.waitEmpty()
	if n := calls.Load(); n != 3 || h.b.tries() != 0 {
		t.Errorf("%d attempts, %d DSNs", n, h.b.tries())
	}
}

type delivererFunc func(rcpts []string) []error

func (f delivererFunc) Deliver(_ context.Context, t *envelope.Transfer, _ io.ReaderAt, _ int64) []error {
	rcpts := t.To
	return f(rcpts)
}
