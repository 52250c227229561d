package queue

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"

	"postie/envelope"
)

const testMsg = "From: Alice <alice@example.test>\r\n" +
	"To: bob@remote.test\r\n" +
	"Subject: hello\r\n" +
	"Message-ID: <m1@example.test>\r\n" +
	"\r\n" +
	"The body, which must not come back in a DSN.\r\n"

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type call struct {
	from  string
	rcpts []string
	body  string
	t     envelope.Transfer // as given (NoDSN as the deliverer left it)
}

// fakeDeliverer records attempts and answers with respond(rcpt, n), n
// counting the earlier attempts of that recipient.
type fakeDeliverer struct {
	respond func(rcpt string, n int) error
	hold    time.Duration            // how long each attempt takes
	noDSN   bool                     // the "host" has no DSN support: accepted recipients are marked in NoDSN
	holdFor map[string]time.Duration // per domain, instead of hold

	mu        sync.Mutex
	calls     []call
	tries     map[string]int
	delivered map[string]int
	cur, peak int
	curDom    map[string]int
	peakDom   map[string]int
}

func newDeliverer(respond func(rcpt string, n int) error) *fakeDeliverer {
	if respond == nil {
		respond = func(string, int) error { return nil }
	}
	return &fakeDeliverer{respond: respond, tries: map[string]int{}, delivered: map[string]int{},
		curDom: map[string]int{}, peakDom: map[string]int{}}
}

func (f *fakeDeliverer) Deliver(ctx context.Context, t *envelope.Transfer, body io.ReaderAt, size int64) []error {
	from, rcpts := t.From, t.To
	data, err := io.ReadAll(io.NewSectionReader(body, 0, size))
	dom := rcptDomain(rcpts[0])
	f.mu.Lock()
	f.cur++
	f.peak = max(f.peak, f.cur)
	f.curDom[dom]++
	f.peakDom[dom] = max(f.peakDom[dom], f.curDom[dom])
	f.calls = append(f.calls, call{from, append([]string(nil), rcpts...), string(data), *t})
	f.mu.Unlock()
	hold := f.hold
	if d, ok := f.holdFor[dom]; ok {
		hold = d
	}
	if hold > 0 {
		select {
		case <-time.After(hold):
		case <-ctx.Done():
		}
	}
	errs := make([]error, len(rcpts))
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cur--
	f.curDom[dom]--
	for i, r := range rcpts {
		switch {
		case err != nil:
			errs[i] = err
		case ctx.Err() != nil:
			errs[i] = ctx.Err()
		default:
			errs[i] = f.respond(r, f.tries[r])
		}
		f.tries[r]++
		if errs[i] == nil {
			f.delivered[r]++
			if f.noDSN {
				t.SetNoDSN(i)
			}
		}
	}
	return errs
}

func (f *fakeDeliverer) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

func (f *fakeDeliverer) triesOf(rcpt string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tries[rcpt]
}

type dsnMsg struct {
	env  envelope.Envelope
	body []byte
}

// fakeBouncer records DSNs; fail, if set, answers the n-th (from 0).
type fakeBouncer struct {
	fail func(n int) error

	mu   sync.Mutex
	n    int
	msgs []dsnMsg
}

func (b *fakeBouncer) Deliver(ctx context.Context, env *envelope.Envelope, body io.Reader) []error {
	data, err := io.ReadAll(body)
	if err != nil {
		return []error{err}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	n := b.n
	b.n++
	if b.fail != nil {
		if err := b.fail(n); err != nil {
			return []error{err}
		}
	}
	b.msgs = append(b.msgs, dsnMsg{*env, data})
	return []error{nil}
}

func (b *fakeBouncer) got() []dsnMsg {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]dsnMsg(nil), b.msgs...)
}

func (b *fakeBouncer) tries() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n
}

type harness struct {
	t     *testing.T
	dir   string
	clock *fakeClock
	d     *fakeDeliverer
	b     *fakeBouncer
	q     *Queue
	stop  func()
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func testOptions(t testing.TB, dir string, clock *fakeClock, d Deliverer) Options {
	return Options{
		Dir: dir, Hostname: "mail.example.test",
		MinRetry: time.Minute, MaxRetry: 4 * time.Minute, Lifetime: time.Hour,
		MaxConcurrency: 10, MaxPerDomain: 4,
		Deliverer: d, Logger: testLogger(t), Now: clock.Now,
	}
}

// newHarness opens a queue on a fresh spool; edit adjusts its options.
func newHarness(t *testing.T, d *fakeDeliverer, edit func(*Options)) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir(), clock: newClock(), d: d, b: &fakeBouncer{}}
	opts := testOptions(t, h.dir, h.clock, d)
	if edit != nil {
		edit(&opts)
	}
	q, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	h.q = q
	t.Cleanup(func() {
		if h.stop != nil {
			h.stop()
		}
		h.q.Close()
	})
	return h
}

// run starts the scheduler; stop ends it and waits.
func (h *harness) run() {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.q.Run(ctx, h.b) }()
	h.stop = func() {
		cancel()
		if err := <-done; err != nil {
			h.t.Errorf("Run: %v", err)
		}
		h.stop = nil
	}
}

func (h *harness) enqueue(from string, to ...string) string {
	h.t.Helper()
	id, err := h.q.Enqueue(context.Background(), &envelope.Envelope{ID: "t1", From: from, To: to}, strings.NewReader(testMsg))
	if err != nil {
		h.t.Fatalf("Enqueue: %v", err)
	}
	return id
}

// advance moves the clock, wakes the scheduler and waits until it has
// done everything that came due.
func (h *harness) advance(d time.Duration) {
	h.t.Helper()
	h.clock.Advance(d)
	h.q.wake()
	h.settle()
}

// settle waits until nothing is running and nothing is due.
func (h *harness) settle() {
	h.t.Helper()
	waitFor(h.t, "the scheduler to settle", h.q.idle)
}

func (q *Queue) idle() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.inflight > 0 {
		return false
	}
	now := q.now()
	for _, u := range q.units {
		if !u.at.After(now) && q.schedFor(u) != nil {
			return false
		}
	}
	return true
}

// stats returns a copy of what the deliverer saw.
func (f *fakeDeliverer) stats() (calls []call, delivered map[string]int, peak int, peakDom map[string]int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delivered, peakDom = map[string]int{}, map[string]int{}
	for k, v := range f.delivered {
		delivered[k] = v
	}
	for k, v := range f.peakDom {
		peakDom[k] = v
	}
	return append([]call(nil), f.calls...), delivered, f.peak, peakDom
}

// waitFor polls cond for up to 5 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// spoolFiles lists the message and state files in dir.
func spoolFiles(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if n := e.Name(); n != ownerLockName && n != writeLockName && n != adminDirName {
			names = append(names, n)
		}
	}
	adm, _ := os.ReadDir(filepath.Join(dir, adminDirName))
	for _, e := range adm {
		names = append(names, adminDirName+"/"+e.Name())
	}
	sort.Strings(names)
	return names
}

func (h *harness) waitEmpty() {
	h.t.Helper()
	waitFor(h.t, "an empty spool", func() bool { return len(spoolFiles(h.t, h.dir)) == 0 })
}

// parsedDSN is a DSN taken apart with go-message.
type parsedDSN struct {
	header     message.Header
	text       string
	perMessage textproto.Header
	rcpts      []textproto.Header
	orig       string // the returned headers, or the whole message (full)
	full       bool   // returned as message/rfc822
	parts      int
}

func parseDSN(t testing.TB, body []byte) *parsedDSN {
	t.Helper()
	e, err := message.Read(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("DSN does not parse: %v\n%s", err, body)
	}
	p := &parsedDSN{header: e.Header}
	mt, params, err := e.Header.ContentType()
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("DSN Content-Type = %q %v %v", mt, params, err)
	}
	mr := e.MultipartReader()
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("DSN part: %v", err)
		}
		data, err := io.ReadAll(part.Body)
		if err != nil {
			t.Fatal(err)
		}
		pt, _, _ := part.Header.ContentType()
		want := []string{"text/plain", "message/delivery-status", "text/rfc822-headers"}
		if p.parts == 2 && pt == "message/rfc822" {
			want[2] = pt
		}
		if p.parts >= len(want) || pt != want[p.parts] {
			t.Fatalf("DSN part %d is %q", p.parts, pt)
		}
		switch pt {
		case "text/plain":
			p.text = string(data)
		case "message/delivery-status":
			p.parseStatus(t, data)
		case "text/rfc822-headers":
			p.orig = string(data)
		case "message/rfc822":
			p.orig, p.full = string(data), true
		}
		p.parts++
	}
	return p
}

func (p *parsedDSN) parseStatus(t testing.TB, data []byte) {
	t.Helper()
	br := bufio.NewReader(bytes.NewReader(data))
	for i := 0; ; i++ {
		if _, err := br.Peek(1); err == io.EOF {
			break
		}
		h, err := textproto.ReadHeader(br)
		if err != nil {
			t.Fatalf("delivery-status block %d: %v\n%s", i, err, data)
		}
		if i == 0 {
			p.perMessage = h
		} else {
			p.rcpts = append(p.rcpts, h)
		}
	}
}

// rcpt returns the block for a recipient.
func (p *parsedDSN) rcpt(t testing.TB, addr string) textproto.Header {
	t.Helper()
	for _, h := range p.rcpts {
		if h.Get("Final-Recipient") == "rfc822; "+addr {
			return h
		}
	}
	t.Fatalf("no delivery-status block for %s", addr)
	return textproto.Header{}
}

func expectField(t testing.TB, h textproto.Header, key, want string) {
	t.Helper()
	if got := h.Get(key); got != want {
		t.Errorf("%s = %q, want %q", key, got, want)
	}
}

func tempFail(rcpt string, n int) error {
	return &envelope.Error{Code: 451, Enhanced: [3]int{4, 7, 1}, Message: fmt.Sprintf("greylisted (%d)", n)}
}
