package accounts

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock that moves only when sleeping or told to.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	slept  []time.Duration
	sleepF func(ctx context.Context, d time.Duration) error // optional override
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if c.sleepF != nil {
		return c.sleepF(ctx, d)
	}
	c.mu.Lock()
	c.slept = append(c.slept, d)
	c.now = c.now.Add(d)
	c.mu.Unlock()
	return ctx.Err()
}

// last returns the most recent sleep.
func (c *fakeClock) last() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.slept) == 0 {
		return -1
	}
	return c.slept[len(c.slept)-1]
}

func fakeThrottle(t testing.TB, c *fakeClock) *Throttle {
	if c == nil {
		c = &fakeClock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	}
	th := NewThrottle()
	th.Now, th.Sleep = c.Now, c.Sleep
	return th
}

func newClock() *fakeClock { return &fakeClock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)} }

func TestThrottleGrowthAndReset(t *testing.T) {
	db := authFixture(t)
	c := newClock()
	a := &Authenticator{DB: db, Throttle: fakeThrottle(t, c)}
	ctx := context.Background()
	s := time.Second
	// Each attempt's delay, after the failures before it: 3 free, then doubling to 30s.
	want := []time.Duration{0, 0, 0, 0, s, 2 * s, 4 * s, 8 * s, 16 * s, 30 * s, 30 * s}
	for i, w := range want {
		if _, err := a.Login(ctx, "192.0.2.1", "imap", "ann@example.test", "wrong"); !errors.Is(err, ErrAuthFailed) {
			t.Fatal(err)
		}
		if got := c.last(); got != w {
			t.Errorf("attempt %d waited %v, want %v", i+1, got, w)
		}
	}

	// The same account from another address is slowed too (per account)...
	if _, err := a.Login(ctx, "198.51.100.7", "imap", "ANN@example.test", "Secret pw"); err != nil {
		t.Fatal(err)
	}
	if got := c.last(); got != 30*s {
		t.Errorf("account delay from a new address = %v, want 30s", got)
	}
	// ...and the success cleared the account, but not the first address.
	a.Login(ctx, "198.51.100.7", "imap", "ann@example.test", "Secret pw")
	if got := c.last(); got != 0 {
		t.Errorf("after a success, delay = %v, want 0", got)
	}
	a.Login(ctx, "192.0.2.1", "imap", "other@example.test", "x")
	if got := c.last(); got != 30*s {
		t.Errorf("guessing address after someone's success: delay %v, want 30s", got)
	}

	// Fifteen quiet minutes forget the address.
	c.Advance(15*time.Minute + time.Second)
	a.Login(ctx, "192.0.2.1", "imap", "third@example.test", "x")
	if got := c.last(); got != 0 {
		t.Errorf("after 15 quiet minutes delay = %v, want 0", got)
	}
}

func TestThrottleUnknownUserLooksLikeKnown(t *testing.T) {
	db := authFixture(t)
	run := func(user string) []time.Duration {
		c := newClock()
		a := &Authenticator{DB: db, Throttle: fakeThrottle(t, c)}
		for i := range 7 {
			a.Login(context.Background(), fmt.Sprintf("192.0.2.%d", i), "pop3", user, "wrong")
		}
		return c.slept
	}
	known, unknown := run("ann@example.test"), run("nobody@example.test")
	if fmt.Sprint(known) != fmt.Sprint(unknown) {
		t.Errorf("delays differ: known %v, unknown %v", known, unknown)
	}
	if known[len(known)-1] == 0 {
		t.Error("account throttle never engaged across addresses")
	}
}

// Logins at once from one clean address (an office behind NAT, clients
// reconnecting after a restart) are not delayed; once the address has
// used up its free failures, attempts in progress count too, so parallel
// connections cannot outrun the delay.
func TestThrottleParallelAttemptsCount(t *testing.T) {
	th := fakeThrottle(t, nil)
	burst := func(ip string) []time.Duration {
		var delays []time.Duration
		var finishes []func(attemptResult)
		for range 6 { // six connections at once, none finished yet
			keys := [2]string{ipKey(ip), userKey(ip + fmt.Sprint(len(delays)))}
			delays = append(delays, th.begin(keys))
			finishes = append(finishes, func(r attemptResult) { th.finish(keys, r) })
		}
		for _, f := range finishes {
			f(attemptOK)
		}
		return delays
	}
	if d := burst("192.0.2.9"); fmt.Sprint(d) != fmt.Sprint([]time.Duration{0, 0, 0, 0, 0, 0}) {
		t.Errorf("parallel delays from a clean address = %v", d)
	}
	if len(th.entries) != 0 {
		t.Errorf("%d entries left after successes", len(th.entries))
	}
	for range 3 { // the free failures of 192.0.2.10
		keys := [2]string{ipKey("192.0.2.10"), userKey("guess")}
		th.begin(keys)
		th.finish(keys, attemptFailed)
	}
	if d := burst("192.0.2.10"); fmt.Sprint(d) != fmt.Sprint([]time.Duration{0, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second}) {
		t.Errorf("parallel delays from a guessing address = %v", d)
	}
}

func TestThrottleCancel(t *testing.T) {
	db := authFixture(t)
	c := newClock()
	th := fakeThrottle(t, c)
	a := &Authenticator{DB: db, Throttle: th}
	for range 5 {
		a.Login(context.Background(), "192.0.2.1", "imap", "ann@example.test", "wrong")
	}
	c.sleepF = sleepCtx // real sleeping, cancelled at once
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if _, err := a.Login(ctx, "192.0.2.1", "imap", "ann@example.test", "Secret pw"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Login = %v", err)
	}
	if time.Since(start) > time.Second {
		t.Error("cancelled Login slept anyway")
	}
	th.mu.Lock()
	defer th.mu.Unlock()
	e := th.entries[userKey("ann@example.test")].Value.(*throttleEntry)
	if e.failures != 5 || e.pending != 0 {
		t.Errorf("after cancel: failures %d pending %d, want 5 and 0", e.failures, e.pending)
	}
}

func TestThrottleMemoryBounded(t *testing.T) {
	th := fakeThrottle(t, nil)
	th.maxEntries = 100
	for i := range 1000 {
		keys := [2]string{ipKey(fmt.Sprintf("10.0.%d.%d", i/256, i%256)), userKey(fmt.Sprintf("u%d", i))}
		th.begin(keys)
		th.finish(keys, attemptFailed)
	}
	if n := len(th.entries); n > 100 || th.lru.Len() != n {
		t.Errorf("%d entries (list %d), cap 100", n, th.lru.Len())
	}
	// The most recent are kept.
	if _, ok := th.entries[userKey("u999")]; !ok {
		t.Error("newest entry evicted")
	}
}

func TestThrottleKeys(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":                 "ip:192.0.2.1",
		"192.0.2.1:4567":            "ip:192.0.2.1",
		"::ffff:192.0.2.1":          "ip:192.0.2.1",
		"2001:db8:1:2:3:4:5:6":      "ip:2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff::1]:25": "ip:2001:db8:1:2::/64",
		"fe80::1%eth0":              "ip:fe80::/64",
		"pipe":                      "ip:pipe",
	} {
		if got := ipKey(in); got != want {
			t.Errorf("ipKey(%q) = %q, want %q", in, got, want)
		}
	}
	if userKey("Ann@Example.TEST") != userKey("ann@example.test") {
		t.Error("user key is case-sensitive")
	}
}
