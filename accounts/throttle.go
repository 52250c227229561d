package accounts

import (
	"container/list"
	"context"
	"net"
	"net/netip"
	"postie/envelope"
	"sync"
	"time"
)

// Throttle slows password guessing: after a few failures from one client
// address, or against one account, each further attempt waits a delay that
// doubles up to a ceiling. Attempts still in progress count as failures
// when the delay is computed, so parallel connections gain nothing. The
// answer is the same whether or not the account exists.
//
// The table is bounded: at most maxEntries addresses and accounts are
// remembered, the least recently seen evicted first, and each is forgotten
// after a quiet period without failures.
type Throttle struct {
	// Now and Sleep may be replaced (before use) to test without waiting.
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error

	freeFailures int           // failures allowed before any delay
	baseDelay    time.Duration // the first delay, doubled per further failure
	maxDelay     time.Duration
	forgetAfter  time.Duration // since the last failure
	maxEntries   int

	mu      sync.Mutex
	entries map[string]*list.Element // of *throttleEntry
	lru     list.List                // front: most recently touched
}

type throttleEntry struct {
	key         string
	failures    int
	pending     int // attempts between wait and finish
	lastFailure time.Time
}

type attemptResult int

const (
	attemptOK attemptResult = iota
	attemptFailed
	attemptAborted
)

// NewThrottle returns a throttle with the default policy: three failures
// free, then 1s doubling to 30s, forgotten after 15 minutes without a
// failure, at most 65536 client addresses and accounts remembered.
func NewThrottle() *Throttle {
	return &Throttle{
		Now:          time.Now,
		Sleep:        sleepCtx,
		freeFailures: 3,
		baseDelay:    time.Second,
		maxDelay:     30 * time.Second,
		forgetAfter:  15 * time.Minute,
		maxEntries:   1 << 16,
		entries:      make(map[string]*list.Element),
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// wait registers an attempt for ip and user, sleeps its delay, and returns
// the function that records how the attempt ended. On error (ctx ended)
// the attempt is already withdrawn.
func (t *Throttle) wait(ctx context.Context, ip, user string) (finish func(attemptResult), err error) {
	keys := [2]string{ipKey(ip), userKey(user)}
	d := t.begin(keys)
	var once sync.Once
	finish = func(r attemptResult) { once.Do(func() { t.finish(keys, r) }) }
	if err := t.Sleep(ctx, d); err != nil {
		finish(attemptAborted)
		return nil, err
	}
	return finish, nil
}

// delay is the wait imposed on an attempt after n failures (or attempts in
// progress).
func (t *Throttle) delay(n int) time.Duration {
	n -= t.freeFailures
	if n <= 0 {
		return 0
	}
	d := t.baseDelay
	for i := 1; i < n && d < t.maxDelay; i++ {
		d *= 2
	}
	return min(d, t.maxDelay)
}

// begin counts an attempt in progress and returns its delay.
func (t *Throttle) begin(keys [2]string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.Now()
	var d time.Duration
	for _, k := range keys {
		e := t.entry(k, now)
		d = max(d, t.delay(e.weight(t.freeFailures)))
		e.pending++
	}
	return d
}

// weight is what an entry's next attempt is delayed by. Attempts still in
// progress count only once the key has used up its free failures: then
// parallel connections cannot outrun the delay, while an office behind
// one NAT address, or clients reconnecting together after a restart, log
// in at once as long as nobody there is guessing.
func (e *throttleEntry) weight(free int) int {
	if e.failures < free {
		return e.failures
	}
	return e.failures + e.pending
}

// finish records the end of an attempt begun with the same keys. Success
// clears the account's failures but not the address's: one valid account
// must not unlock guessing at the others from the same place.
func (t *Throttle) finish(keys [2]string, r attemptResult) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.Now()
	for i, k := range keys {
		e := t.entry(k, now)
		if e.pending > 0 {
			e.pending--
		}
		switch {
		case r == attemptFailed:
			e.failures++
			e.lastFailure = now
		case r == attemptOK && i == 1:
			e.failures = 0
		}
		if e.failures == 0 && e.pending == 0 {
			t.remove(t.entries[k])
		}
	}
}

// entry returns the live entry for key, creating it (and evicting the least
// recently seen, or those forgotten) as needed. Called with mu held.
func (t *Throttle) entry(key string, now time.Time) *throttleEntry {
	if el, ok := t.entries[key]; ok {
		e := el.Value.(*throttleEntry)
		if e.failures > 0 && now.Sub(e.lastFailure) > t.forgetAfter {
			e.failures = 0
		}
		t.lru.MoveToFront(el)
		return e
	}
	for t.lru.Len() > 0 {
		oldest := t.lru.Back()
		e := oldest.Value.(*throttleEntry)
		if t.lru.Len() < t.maxEntries && (e.pending > 0 || now.Sub(e.lastFailure) <= t.forgetAfter) {
			break
		}
		t.remove(oldest)
	}
	e := &throttleEntry{key: key}
	t.entries[key] = t.lru.PushFront(e)
	return e
}

func (t *Throttle) remove(el *list.Element) {
	if el == nil {
		return
	}
	delete(t.entries, el.Value.(*throttleEntry).key)
	t.lru.Remove(el)
}

// maxKeyLen bounds the memory a key from the network can take.
const maxKeyLen = 256

// ipKey is the throttle key of a client address: the address itself, or its
// /64 for IPv6, since one host commonly owns a whole /64.
func ipKey(ip string) string {
	if host, _, err := net.SplitHostPort(ip); err == nil {
		ip = host
	}
	if a, err := netip.ParseAddr(ip); err == nil {
		a = a.Unmap().WithZone("")
		if a.Is6() {
			p, _ := a.Prefix(64)
			return "ip:" + p.String()
		}
		return "ip:" + a.String()
	}
	return "ip:" + truncate(ip, maxKeyLen)
}

// userKey is the throttle key of a login name, folded like addresses are.
func userKey(user string) string {
	// The same folding as the login itself, so "ann@example.test." cannot
	// get a bucket of its own.
	return "user:" + envelope.Key(truncate(user, maxKeyLen))
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
