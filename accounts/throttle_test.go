package accounts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
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

// take returns the time slept since the last call.
func (c *fakeClock) take() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	var sum time.Duration
	for _, d := range c.slept {
		sum += d
	}
	c.slept = nil
	return sum
}

func newClock() *fakeClock { return &fakeClock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)} }

func fakeThrottle(t testing.TB, c *fakeClock) *Throttle {
	if c == nil {
		c = newClock()
	}
	th := NewThrottle()
	th.Now, th.Sleep = c.Now, c.Sleep
	return th
}

// outcome describes one login for comparisons: how long it waited and how it ended.
func outcome(c *fakeClock, err error) string {
	w := c.take()
	switch {
	case errors.Is(err, ErrThrottled):
		return fmt.Sprintf("refused after %v", w)
	case errors.Is(err, ErrAuthFailed):
		return fmt.Sprintf("failed after %v", w)
	case err == nil:
		return fmt.Sprintf("ok after %v", w)
	}
	return fmt.Sprintf("error %v after %v", err, w)
}

func TestThrottleGrowthAndReset(t *testing.T) {
	db := authFixture(t)
	c := newClock()
	a := &Authenticator{DB: db, Throttle: fakeThrottle(t, c)}
	ctx := context.Background()
	login := func(ip, user, pw string) string {
		_, err := a.Login(ctx, ip, "imap", user, pw)
		return outcome(c, err)
	}
	// One address guessing: three failures free, then checks spaced 1s doubling (the
	// account's own spacing starts after five); what could not start within 5s is
	// refused at once, without a password check.
	var got []string
	for range 7 {
		got = append(got, login("192.0.2.1", "ann@example.test", "wrong"))
	}
	c.Advance(3 * time.Second)
	got = append(got, login("192.0.2.1", "ann@example.test", "wrong"), login("192.0.2.1", "ann@example.test", "wrong"))
	want := []string{"failed after 0s", "failed after 0s", "failed after 0s", "failed after 1s", "failed after 2s",
		"failed after 4s", "refused after 0s", "failed after 5s", "refused after 0s"}
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Errorf("guessing from one address:\n got %v\nwant %v", got, want)
	}

	// The account is under attack, yet its owner from a clean address is not slowed,
	// and after that success the address is trusted.
	for i, want := range []string{"ok after 0s", "ok after 0s"} {
		if got := login("198.51.100.7", "ANN@example.test", "Secret pw"); got != want {
			t.Errorf("owner's login %d: %s, want %s", i+1, got, want)
		}
	}
	// The guessing address is slowed on every account, and its owner's success
	// elsewhere unlocked nothing.
	if got := login("192.0.2.1", "other@example.test", "x"); got != "refused after 0s" {
		t.Errorf("guessing address on another account: %s", got)
	}

	// Fifteen quiet minutes forget the failures: no more spacing...
	c.Advance(15*time.Minute + 30*time.Second)
	if got := login("192.0.2.1", "third@example.test", "x"); got != "failed after 0s" {
		t.Errorf("after 15 quiet minutes: %s", got)
	}
	th := a.Throttle
	th.mu.Lock()
	if e := th.addrs.m[ipKey("192.0.2.1")].Value.(*throttleEntry); e.failures != 1 {
		t.Errorf("address failures after forgetting = %d, want 1", e.failures)
	}
	th.mu.Unlock()
	// ...but the address stays in the failing lane for a day.
	c.Advance(24 * time.Hour)
	if got := login("192.0.2.1", "ann@example.test", "Secret pw"); got != "ok after 0s" {
		t.Errorf("a day later: %s", got)
	}
}

// The throttle answers alike whether or not the account exists: trust is
// earned only with a correct password.
func TestThrottleUnknownUserLooksLikeKnown(t *testing.T) {
	db := authFixture(t)
	run := func(user string) []string {
		c := newClock()
		a := &Authenticator{DB: db, Throttle: fakeThrottle(t, c)}
		var got []string
		for i := range 14 { // a botnet: one try each from 14 addresses
			_, err := a.Login(context.Background(), fmt.Sprintf("192.0.2.%d", i), "pop3", user, "wrong")
			got = append(got, outcome(c, err))
		}
		for range 4 {
			_, err := a.Login(context.Background(), "192.0.2.1", "pop3", user, "wrong")
			got = append(got, outcome(c, err))
			c.Advance(10 * time.Second)
		}
		return got
	}
	known, unknown := run("ann@example.test"), run("nobody@example.test")
	if fmt.Sprint(known) != fmt.Sprint(unknown) {
		t.Errorf("outcomes differ:\n  known %v\nunknown %v", known, unknown)
	}
	if !strings.Contains(fmt.Sprint(known), "refused") {
		t.Errorf("account throttle never engaged across addresses: %v", known)
	}
}

// A trusted address is revoked by its first failure on that account.
func TestThrottleTrustRevoked(t *testing.T) {
	db := authFixture(t)
	c := newClock()
	a := &Authenticator{DB: db, Throttle: fakeThrottle(t, c)}
	ctx := context.Background()
	for range 12 { // an attack from elsewhere pushes the account's spacing up
		a.Login(ctx, "192.0.2.1", "imap", "ann@example.test", "wrong")
		c.Advance(30 * time.Second)
	}
	if _, err := a.Login(ctx, "198.51.100.7", "imap", "ann@example.test", "Secret pw"); err != nil {
		t.Fatal(err)
	}
	c.take()
	if _, err := a.Login(ctx, "198.51.100.7", "imap", "ann@example.test", "typo"); !errors.Is(err, ErrAuthFailed) {
		t.Fatal(err)
	}
	// Now a failing address on an account under attack: it queues with the attacker.
	if _, err := a.Login(ctx, "198.51.100.7", "imap", "ann@example.test", "Secret pw"); !errors.Is(err, ErrThrottled) {
		t.Errorf("after a failure the address kept its trust: %v", err)
	}
}

// A throttled login is refused without a password check: with every hashing
// slot taken it still answers at once.
func TestThrottleRefusesWithoutHashing(t *testing.T) {
	db := authFixture(t)
	c := newClock()
	a := &Authenticator{DB: db, Throttle: fakeThrottle(t, c)}
	for range 8 {
		a.Login(context.Background(), "192.0.2.1", "imap", "ann@example.test", "wrong")
	}
	for range cap(db.authSem) {
		db.authSem <- struct{}{}
	}
	defer func() {
		for range cap(db.authSem) {
			<-db.authSem
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := a.Login(ctx, "192.0.2.1", "imap", "ann@example.test", "Secret pw"); !errors.Is(err, ErrThrottled) {
		t.Errorf("Login = %v, want ErrThrottled", err)
	}
	if ctx.Err() != nil {
		t.Error("the refusal waited for a hashing slot")
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
	e := th.accts.m[userKey("ann@example.test")].Value.(*throttleEntry)
	ae := th.addrs.m[ipKey("192.0.2.1")].Value.(*throttleEntry)
	if e.failures != 5 || e.inflight != 0 || e.waiting != 0 || ae.waiting != 0 || ae.inflight != 0 || e.refs != 0 {
		t.Errorf("after cancel: failures %d, inflight %d/%d, waiting %d/%d, refs %d; want 5 and zeros",
			e.failures, e.inflight, ae.inflight, e.waiting, ae.waiting, e.refs)
	}
}

// tryLogin is Authenticator.Login that also tells whether the throttle made it wait.
func tryLogin(ctx context.Context, th *Throttle, db *DB, ip, user, pw string) (waited bool, err error) {
	att, err := th.acquire(ctx, ip, user)
	if err != nil {
		return att.waited, err
	}
	_, err = db.authenticate(ctx, user, pw)
	switch {
	case err == nil:
		att.finish(attemptOK)
	case errors.Is(err, ErrAuthFailed):
		att.finish(attemptFailed)
	default:
		att.finish(attemptAborted)
	}
	return att.waited, err
}

// attack runs conns goroutines guessing wrong passwords for user from
// addrs addresses (round robin) until ctx ends; it returns once each has
// made one attempt.
func attack(ctx context.Context, t *testing.T, th *Throttle, db *DB, user string, conns, addrs int) (wg *sync.WaitGroup, checked *atomic.Int64) {
	wg, checked = new(sync.WaitGroup), new(atomic.Int64)
	var started sync.WaitGroup
	for i := range conns {
		wg.Add(1)
		started.Add(1)
		ip := fmt.Sprintf("10.%d.%d.1", i%addrs/256, i%addrs%256)
		go func() {
			defer wg.Done()
			first := true
			for ctx.Err() == nil {
				_, err := tryLogin(ctx, th, db, ip, user, "wrong")
				switch {
				case errors.Is(err, ErrAuthFailed):
					checked.Add(1)
				case errors.Is(err, ErrThrottled):
					time.Sleep(time.Millisecond) // a reconnection
				case err != nil && ctx.Err() == nil:
					t.Errorf("attacker: %v", err)
				}
				if first {
					first = false
					started.Done()
				}
			}
		}()
	}
	started.Wait()
	return wg, checked
}

// The attack: 1,000 connections guess at an account while its owner
// logs in. Real goroutines and clock, the production policy, cheap hashes.
func TestThrottleOwnerServedUnderAttack(t *testing.T) {
	for _, tc := range []struct {
		addrs         int
		mayWaitBudget bool // so many fresh addresses used up the clean budget: a token is at most a second away
	}{{1, false}, {5, false}, {1000, true}} {
		t.Run(fmt.Sprintf("1000conns_%daddrs", tc.addrs), func(t *testing.T) {
			db := authFixture(t)
			th := NewThrottle()
			bg := context.Background()
			if _, err := tryLogin(bg, th, db, "203.0.113.9", "ann@example.test", "Secret pw"); err != nil {
				t.Fatal(err) // the owner's usual address, trusted from now on
			}
			ctx, stop := context.WithCancel(bg)
			wg, checked := attack(ctx, t, th, db, "ann@example.test", 1000, tc.addrs)
			before := checked.Load()
			for i, ip := range []string{"203.0.113.9", "203.0.113.77", "2001:db8:77::1"} { // usual, then new
				waited, err := tryLogin(bg, th, db, ip, "ann@example.test", "Secret pw")
				if err != nil {
					t.Errorf("owner from %s: %v", ip, err)
				}
				if waited && (i == 0 || !tc.mayWaitBudget) {
					t.Errorf("owner from %s was queued", ip)
				}
			}
			stop()
			wg.Wait()
			t.Logf("%d attackers' passwords checked in all, %d during the owner's logins", checked.Load(), checked.Load()-before)
		})
	}
}

// Checks from one failing address never run at once, however many
// connections it opens; the rest are refused without a check.
func TestThrottleSerialisesFailingAddress(t *testing.T) {
	th := NewThrottle()
	th.p.baseDelay, th.p.maxDelay, th.p.maxWait = 5*time.Millisecond, 20*time.Millisecond, 50*time.Millisecond
	th.p.maxDirty = 1000 // the address alone must serialise
	ctx := context.Background()
	var running, most, checks, refused atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for i := range 300 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				att, err := th.acquire(ctx, "192.0.2.1", fmt.Sprintf("user%d@example.test", i%7))
				if err != nil {
					refused.Add(1)
					time.Sleep(time.Millisecond)
					continue
				}
				n := running.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				checks.Add(1)
				time.Sleep(200 * time.Microsecond) // the password check
				running.Add(-1)
				att.finish(attemptFailed)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	// Up to four checks at once while the address is clean (it has not failed yet).
	if most.Load() > int64(th.p.cleanConns) {
		t.Errorf("%d checks ran at once", most.Load())
	}
	// At most one check per spacing after the free ones, however long the run took.
	if bound := int64(th.p.cleanConns + th.p.freeFailures + 3 + int(elapsed/th.p.maxDelay)); checks.Load() > bound {
		t.Errorf("%d checks in %v, bound %d", checks.Load(), elapsed, bound)
	}
	if refused.Load() == 0 {
		t.Error("nothing refused")
	}
	t.Logf("%d checks, %d refused in %v", checks.Load(), refused.Load(), elapsed)
	th.mu.Lock()
	defer th.mu.Unlock()
	if th.dirtyInflight != 0 {
		t.Errorf("dirtyInflight %d after the run", th.dirtyInflight)
	}
}

// Once an address has failed, its checks run strictly one at a time.
func TestThrottleFailingAddressOneAtATime(t *testing.T) {
	th := NewThrottle()
	th.p.baseDelay, th.p.maxDelay, th.p.maxWait = time.Millisecond, 2*time.Millisecond, 500*time.Millisecond
	th.p.maxDirty = 1000 // the address alone must serialise
	ctx := context.Background()
	att, _ := th.acquire(ctx, "192.0.2.1", "x@example.test")
	att.finish(attemptFailed)
	var running, most atomic.Int64
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			att, err := th.acquire(ctx, "192.0.2.1", fmt.Sprintf("user%d@example.test", i))
			if err != nil {
				return
			}
			n := running.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			time.Sleep(100 * time.Microsecond)
			running.Add(-1)
			att.finish(attemptOK)
		}()
	}
	wg.Wait()
	if most.Load() != 1 {
		t.Errorf("%d checks from a failing address ran at once", most.Load())
	}
}

// Logins at once from one clean address (an office behind NAT, clients
// reconnecting after a restart) are all served, none refused.
func TestThrottleCleanAddressBurst(t *testing.T) {
	th := NewThrottle()
	var wg sync.WaitGroup
	var waited atomic.Int64
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			user := fmt.Sprintf("user%d@example.test", i%8)
			att, err := th.acquire(context.Background(), "192.0.2.9", user)
			if err != nil {
				t.Error(err)
				return
			}
			if att.waited {
				waited.Add(1)
			}
			time.Sleep(2 * time.Millisecond) // the password check, correct
			att.finish(attemptOK)
		}()
	}
	wg.Wait()
	if waited.Load() == 0 {
		t.Error("no login overlapped another: the test proves nothing")
	}
	th.mu.Lock()
	defer th.mu.Unlock()
	if n := len(th.addrs.m) + len(th.accts.m); n != 0 {
		t.Errorf("%d address and account entries left after successes", n)
	}
	if n := len(th.pairs.m); n != 8 {
		t.Errorf("%d trusted pairs, want 8", n)
	}
}

func TestThrottleMemoryBounded(t *testing.T) {
	th := fakeThrottle(t, nil)
	th.p.maxAddrs, th.p.maxAccts = 100, 50
	th.init()
	for i := range 1000 {
		r := th.begin(fmt.Sprintf("10.0.%d.%d", i/256, i%256), fmt.Sprintf("u%d", i))
		th.mu.Lock()
		res := th.step(r, th.Now())
		th.mu.Unlock()
		if res.admitted {
			r.finish(attemptFailed)
		}
	}
	th.mu.Lock()
	defer th.mu.Unlock()
	if n := len(th.addrs.m); n > 100 || th.addrs.lru.Len() != n {
		t.Errorf("%d addresses (list %d), cap 100", n, th.addrs.lru.Len())
	}
	if n := len(th.accts.m); n > 50 || th.accts.lru.Len() != n {
		t.Errorf("%d accounts (list %d), cap 50", n, th.accts.lru.Len())
	}
	// The most recent are kept.
	if _, ok := th.addrs.m[ipKey("10.0.3.231")]; !ok {
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

// 100,000 attacking addresses (and as many account names) leave the
// tables at their caps, with the memory that implies.
func TestThrottleMemory100kAddresses(t *testing.T) {
	c := newClock()
	th := fakeThrottle(t, c)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var waiting []*attempt // attempts told to wait, looked at again each round
	for i := range 100_000 {
		user := "ann@example.test"
		if i%2 == 1 {
			user = fmt.Sprintf("u%d@example.test", i)
		}
		still := waiting[:0]
		for _, r := range append(waiting, th.begin(fmt.Sprintf("10.%d.%d.%d", i>>16, i>>8&255, i&255), user)) {
			th.mu.Lock()
			res := th.step(r, c.Now())
			th.mu.Unlock()
			switch {
			case res.admitted:
				r.finish(attemptFailed)
			case res.err == nil:
				still = append(still, r)
			}
		}
		waiting = still
		c.Advance(10 * time.Millisecond)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	th.mu.Lock()
	defer th.mu.Unlock()
	na, nu, np := len(th.addrs.m), len(th.accts.m), len(th.pairs.m)
	if na > th.p.maxAddrs || nu > th.p.maxAccts || np > len(waiting) || na != th.addrs.lru.Len() || nu != th.accts.lru.Len() {
		t.Errorf("%d addresses, %d accounts, %d pairs; caps %d, %d, none expected", na, nu, np, th.p.maxAddrs, th.p.maxAccts)
	}
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d addresses, %d accounts, %d pairs remembered in %.1f MiB", na, nu, np, float64(grown)/(1<<20))
	if grown > 64<<20 {
		t.Errorf("tables take %d MiB", grown>>20)
	}
}

// Correct passwords from many new addresses (a user on the move, a team
// sharing an account) cost nothing of the account's clean budget.
func TestThrottleSuccessesCostNoBudget(t *testing.T) {
	db := authFixture(t)
	c := newClock()
	a := &Authenticator{DB: db, Throttle: fakeThrottle(t, c)}
	for i := range 3 * int(a.Throttle.p.cleanBurst) {
		_, err := a.Login(context.Background(), fmt.Sprintf("192.0.2.%d", i), "imap", "ann@example.test", "Secret pw")
		if got := outcome(c, err); got != "ok after 0s" {
			t.Fatalf("login %d from a new address: %s", i+1, got)
		}
	}
}

// Refusals are logged at most once a minute per address, with their count.
func TestThrottleRefusalLogBounded(t *testing.T) {
	db := authFixture(t)
	c := newClock()
	var logs strings.Builder
	a := &Authenticator{DB: db, Throttle: fakeThrottle(t, c), Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	refused, start := 0, c.Now()
	for range 500 {
		if _, err := a.Login(context.Background(), "192.0.2.1", "imap", "ann@example.test", "wrong"); errors.Is(err, ErrThrottled) {
			refused++
		}
		c.Advance(100 * time.Millisecond)
	}
	lines := strings.Count(logs.String(), "login refused")
	elapsed := c.Now().Sub(start)
	if refused < 400 || lines < 1 || lines > 1+int(elapsed/a.Throttle.p.logRefusalsIn) {
		t.Errorf("%d refusals in %v logged in %d lines", refused, elapsed, lines)
	}
	if !strings.Contains(logs.String(), "refusals=") {
		t.Errorf("no refusal count in %q", logs.String())
	}
}

// BenchmarkLoginRefused is the cost of a login the throttle refuses: no
// password check (compare BenchmarkCheckPassword).
func BenchmarkLoginRefused(b *testing.B) {
	db := resolveFixture(b)
	db.params = defaultParams()
	c := newClock()
	a := &Authenticator{DB: db, Throttle: fakeThrottle(b, c)}
	for range 8 {
		a.Login(context.Background(), "192.0.2.1", "imap", "ann@example.test", "wrong")
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Login(context.Background(), "192.0.2.1", "imap", "ann@example.test", "wrong"); !errors.Is(err, ErrThrottled) {
			b.Fatal(err)
		}
	}
}
