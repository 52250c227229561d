package accounts

import (
	"container/list"
	"context"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"postie/envelope"
	"postie/netconn"
)

// ErrThrottled refuses a login without checking its password: the client's
// address has failed too often lately, or the account is being guessed at
// from many addresses. It is a temporary failure (IMAP NO [UNAVAILABLE],
// POP3 -ERR [SYS/TEMP], SMTP 454), not a wrong password.
var ErrThrottled = errors.New("accounts: too many failed logins, try again later")

// Throttle bounds password guessing without locking out the account's owner.
//
// Every login is an attempt by a client address (IPv6: its /64, as
// netconn.Bucket counts) on an account name, and takes one of three lanes:
//
//   - trusted: the address logged in to this account successfully within
//     the last week and has not failed on it since. Nothing that other
//     addresses do slows it; at most four of its checks run at once.
//   - clean: the address has no failure on record (24 hours). It is never
//     delayed by failing addresses. Only failures from other clean addresses
//     can slow it: each account has a budget of ten such failures, refilled
//     at one a second (a success gives its share back), and an attempt that
//     would wait more than two seconds for that budget is refused, its
//     address counted as failing from then on. One check per address and
//     account runs at a time until one succeeds, and at most four per
//     address.
//   - failing: everything else. Its checks run one at a time per address,
//     one at a time per account, and overall one fewer at once than the DB
//     hashes (leaving room for the other lanes); after three failures of
//     the address, or five of the account, the next check starts 1s after
//     the last failure, doubling to 30s. An attempt that could not start
//     within 5s is refused at once, without a password check.
//
// So one address gets at most one guess per 30s however many connections
// it opens, and many addresses together get at most one a second (clean)
// plus one per 30s (failing) against one account, and each address only
// one clean try a day. A failing address waits 5s at most and a clean one
// 2s for the account's budget: both well within the protocols' login
// timeouts; beyond that, attempts wait only for their own address's checks
// in progress. Failures are forgotten after 15 quiet minutes (delays start
// over); the answer never depends on whether the account exists (trust is
// earned only by a correct password).
//
// Memory is bounded: each table keeps a fixed number of entries, least
// recently used evicted first, except entries that attempts in progress
// hold (at most one per connection). Create a Throttle with NewThrottle.
type Throttle struct {
	// Now and Sleep may be replaced (before use) to test without waiting.
	// Sleep must return early, with ctx.Err(), when ctx ends.
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error

	p throttlePolicy

	mu            sync.Mutex
	addrs         table // "ip:" keys
	accts         table // "user:" keys
	pairs         table // address and account: trust, and one clean probe at a time
	dirtyInflight int
	dirtyWake     chan struct{} // closed when a failing-lane check ends
}

// throttlePolicy holds the numbers the Throttle comment states.
type throttlePolicy struct {
	freeFailures  int           // per address, before its checks are spaced
	accountFree   int           // per account, before its failing lane is spaced
	baseDelay     time.Duration // the first spacing, doubled per further failure
	maxDelay      time.Duration
	forgetAfter   time.Duration // failures forgotten this long after the last one
	cleanAfter    time.Duration // an address is clean this long after its last failure
	maxWait       time.Duration // longest a failing-lane attempt is queued
	cleanBurst    float64       // clean-lane failures an account absorbs at once...
	cleanEvery    time.Duration // ...and one more per cleanEvery
	maxCleanWait  time.Duration // longest a clean attempt waits for that budget
	cleanConns    int           // checks in flight from one clean address
	trustedConns  int           // checks in flight from one trusted address for its account
	trustFor      time.Duration // since the last success
	maxDirty      int           // failing-lane checks in flight, all addresses
	recheck       time.Duration // wake-up of a waiter that nothing else wakes
	maxAddrs      int
	maxAccts      int
	maxPairs      int
	logRefusalsIn time.Duration // one log line per address per this, at most
}

func defaultPolicy() throttlePolicy {
	return throttlePolicy{
		freeFailures: 3, accountFree: 5,
		baseDelay: time.Second, maxDelay: 30 * time.Second,
		forgetAfter: 15 * time.Minute, cleanAfter: 24 * time.Hour,
		maxWait:    5 * time.Second,
		cleanBurst: 10, cleanEvery: time.Second, maxCleanWait: 2 * time.Second,
		cleanConns: 4, trustedConns: 4, trustFor: 7 * 24 * time.Hour,
		// The DB checks min(16, max(2, GOMAXPROCS)) hashes at once: one slot stays free for
		// the clean and trusted lanes.
		maxDirty: min(16, max(2, runtime.GOMAXPROCS(0))) - 1,
		recheck:  time.Minute,
		maxAddrs: 1 << 16, maxAccts: 1 << 14, maxPairs: 1 << 14,
		logRefusalsIn: time.Minute,
	}
}

// NewThrottle returns a throttle with the policy the Throttle comment
// states, remembering at most 65536 addresses, 16384 account names and
// 16384 trusted address-account pairs.
func NewThrottle() *Throttle {
	t := &Throttle{Now: time.Now, Sleep: sleepCtx, p: defaultPolicy()}
	t.init()
	return t
}

func (t *Throttle) init() {
	t.addrs.init(t.p.maxAddrs, t.keepAddr)
	t.accts.init(t.p.maxAccts, t.keepAcct)
	t.pairs.init(t.p.maxPairs, func(e *throttleEntry, now time.Time) bool { return e.trustedUntil.After(now) })
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

type lane int8

const (
	laneNone lane = iota
	laneTrusted
	laneClean
	laneFailing
)

type attemptResult int

const (
	attemptOK attemptResult = iota
	attemptFailed
	attemptAborted // no password was checked: nothing to count
)

// attempt is one login between acquire and finish. Its entries are
// referenced (never evicted) until it ends.
type attempt struct {
	t       *Throttle
	a, u, p *throttleEntry
	lane    lane      // once admitted
	queued  lane      // the lane whose waiting count includes this attempt
	since   time.Time // when it joined that queue
	waited  bool      // it had to wait at least once (for tests)
	done    bool

	logRefusals int // refused: refusals of the address to log now (0: none)
}

// stepResult is what one look at an attempt decided: admitted, refused (err),
// or wait until a time and/or until wake is closed.
type stepResult struct {
	admitted bool
	err      error
	logged   int // refusals to log now (0: none)
	until    time.Time
	wake     <-chan struct{}
}

// acquire waits until the attempt of ip on user may check a password, or
// refuses it (ErrThrottled, or ctx.Err()). The caller must finish an
// admitted attempt; a refused one is already finished, and its logRefusals
// says how many refusals of the address to log now.
func (t *Throttle) acquire(ctx context.Context, ip, user string) (*attempt, error) {
	r := t.begin(ip, user)
	for {
		t.mu.Lock()
		now := t.Now()
		res := t.step(r, now)
		t.mu.Unlock()
		if res.admitted || res.err != nil {
			r.logRefusals = res.logged
			return r, res.err
		}
		r.waited = true
		d := t.p.recheck
		if !res.until.IsZero() {
			d = res.until.Sub(now)
		}
		if err := t.pause(ctx, res.wake, d); err != nil {
			r.finish(attemptAborted)
			return r, err
		}
	}
}

// pause sleeps d, returning early (nil) when wake is closed or with ctx.Err().
func (t *Throttle) pause(ctx context.Context, wake <-chan struct{}, d time.Duration) error {
	if wake == nil {
		t.Sleep(ctx, d)
		return ctx.Err()
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-wake:
			cancel()
		case <-wctx.Done():
		}
	}()
	t.Sleep(wctx, d)
	return ctx.Err()
}

// begin registers an attempt, referencing its entries.
func (t *Throttle) begin(ip, user string) *attempt {
	ak, uk := ipKey(ip), userKey(user)
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.Now()
	r := &attempt{t: t}
	r.a, r.u, r.p = t.addrs.get(ak, now), t.accts.get(uk, now), t.pairs.get(ak+"\x00"+uk, now)
	return r
}

// step looks at an attempt once. Called with mu held.
func (t *Throttle) step(r *attempt, now time.Time) stepResult {
	a, u, p := r.a, r.u, r.p
	t.forget(a, now)
	t.forget(u, now)
	switch {
	case p.trustedUntil.After(now):
		r.enqueue(laneTrusted, now)
		if p.inflight < t.p.trustedConns {
			return t.admit(r, laneTrusted)
		}
		return stepResult{wake: p.wakeCh()}
	case a.lastFailure.IsZero() || now.Sub(a.lastFailure) > t.p.cleanAfter:
		return t.stepClean(r, now)
	default:
		return t.stepFailing(r, now)
	}
}

// stepClean decides for an address without failures: its own concurrency,
// then the account's budget of clean-lane failures.
func (t *Throttle) stepClean(r *attempt, now time.Time) stepResult {
	a, u, p := r.a, r.u, r.p
	if p.inflight > 0 { // one probe per address and account until one succeeds
		return stepResult{wake: p.wakeCh()}
	}
	if a.inflight >= t.p.cleanConns {
		return stepResult{wake: a.wakeCh()}
	}
	t.refill(u, now)
	if u.tokens >= 1 {
		u.tokens--
		return t.admit(r, laneClean)
	}
	if r.queued != laneClean {
		// The token for this attempt comes after those of the attempts already waiting.
		eta := now.Add(time.Duration((float64(u.cleanWaiting) + 1 - u.tokens) * float64(t.p.cleanEvery)))
		if eta.Sub(now) > t.p.maxCleanWait {
			return t.refuse(r, now, true)
		}
		r.enqueue(laneClean, now)
	}
	deadline := r.since.Add(t.p.maxCleanWait)
	if !now.Before(deadline) {
		return t.refuse(r, now, true)
	}
	next := now.Add(time.Duration((1 - u.tokens) * float64(t.p.cleanEvery)))
	return stepResult{until: earliest(next, deadline), wake: u.wakeCh()}
}

// stepFailing decides for an address with failures: one check at a time per
// address, per account and (up to maxDirty) overall, spaced after failures.
func (t *Throttle) stepFailing(r *attempt, now time.Time) stepResult {
	a, u := r.a, r.u
	if r.queued != laneFailing {
		// Refuse at once what could not start in time even if every attempt ahead
		// in the queue succeeded.
		start := later(now, a.next).Add(time.Duration(a.waiting) * t.delay(a.failures+1, t.p.freeFailures))
		start = later(start, later(now, u.next).Add(time.Duration(u.waiting)*t.delay(u.failures+1, t.p.accountFree)))
		if start.Sub(now) > t.p.maxWait {
			return t.refuse(r, now, false)
		}
		r.enqueue(laneFailing, now)
	}
	deadline := r.since.Add(t.p.maxWait)
	start := later(a.next, u.next)
	if start.After(deadline) {
		return t.refuse(r, now, false)
	}
	var res stepResult
	switch {
	case a.inflight > 0:
		res = stepResult{until: deadline, wake: a.wakeCh()}
	case u.inflight > 0:
		res = stepResult{until: deadline, wake: u.wakeCh()}
	case now.Before(start):
		res = stepResult{until: start}
	case t.dirtyInflight >= t.p.maxDirty:
		if t.dirtyWake == nil {
			t.dirtyWake = make(chan struct{})
		}
		res = stepResult{until: deadline, wake: t.dirtyWake}
	default:
		return t.admit(r, laneFailing)
	}
	if !now.Before(deadline) {
		return t.refuse(r, now, false)
	}
	return res
}

// admit starts the check of r in lane l.
func (t *Throttle) admit(r *attempt, l lane) stepResult {
	r.dequeue()
	r.lane = l
	r.a.inflight++
	r.p.inflight++
	if l == laneFailing {
		r.u.inflight++
		t.dirtyInflight++
	}
	return stepResult{admitted: true}
}

// refuse ends r without a check. A clean address refused for the account's
// clean budget counts as failing from now on (strike), so that the addresses
// of a botnet queue in the failing lane after one try, leaving the clean lane
// to addresses not seen before.
func (t *Throttle) refuse(r *attempt, now time.Time, strike bool) stepResult {
	a := r.a
	if strike {
		t.fail(a, now, t.p.freeFailures)
	}
	a.refusals++
	res := stepResult{err: ErrThrottled}
	if now.Sub(a.loggedAt) >= t.p.logRefusalsIn {
		res.logged, a.refusals, a.loggedAt = a.refusals, 0, now
	}
	r.dequeue()
	t.release(r, now)
	return res
}

// finish records how the attempt ended and releases it; later calls do
// nothing. A success makes the address trusted for the account (and gives
// back the clean-lane budget it held) but clears no failures: knowing one
// password must not unlock guessing at the others, nor the attacker's
// delays on this account.
func (r *attempt) finish(res attemptResult) {
	if r == nil {
		return
	}
	t := r.t
	t.mu.Lock()
	defer t.mu.Unlock()
	if r.done {
		return
	}
	now := t.Now()
	r.dequeue()
	a, u, p := r.a, r.u, r.p
	if r.lane != laneNone {
		a.inflight--
		p.inflight--
		if r.lane == laneFailing {
			u.inflight--
			t.dirtyInflight--
			if t.dirtyWake != nil {
				close(t.dirtyWake)
				t.dirtyWake = nil
			}
		}
	}
	switch res {
	case attemptOK:
		p.trustedUntil = now.Add(t.p.trustFor)
	case attemptFailed:
		t.fail(a, now, t.p.freeFailures)
		t.fail(u, now, t.p.accountFree)
		p.trustedUntil = time.Time{}
	}
	if r.lane == laneClean && res != attemptFailed {
		t.refill(u, now)
		u.tokens = min(u.tokens+1, t.p.cleanBurst)
	}
	t.release(r, now)
}

// release drops r's references (waking whoever waits on its entries).
// Called with mu held.
func (t *Throttle) release(r *attempt, now time.Time) {
	r.done = true
	t.addrs.release(r.a, now)
	t.accts.release(r.u, now)
	t.pairs.release(r.p, now)
}

// enqueue counts r as waiting in lane l (leaving any other queue).
func (r *attempt) enqueue(l lane, now time.Time) {
	if r.queued == l {
		return
	}
	r.dequeue()
	r.queued, r.since = l, now
	switch l {
	case laneClean:
		r.u.cleanWaiting++
	case laneFailing:
		r.a.waiting++
		r.u.waiting++
	}
}

func (r *attempt) dequeue() {
	switch r.queued {
	case laneClean:
		r.u.cleanWaiting--
	case laneFailing:
		r.a.waiting--
		r.u.waiting--
	}
	r.queued = laneNone
}

// fail counts a failure of an address or account; free failures go before
// its checks are spaced.
func (t *Throttle) fail(e *throttleEntry, now time.Time, free int) {
	e.failures++
	e.lastFailure = now
	e.next = now.Add(t.delay(e.failures, free))
}

// delay is the spacing after n failures: none for the first free ones, then
// baseDelay doubling to maxDelay.
func (t *Throttle) delay(n, free int) time.Duration {
	n -= free
	if n < 0 {
		return 0
	}
	d := t.p.baseDelay
	for i := 0; i < n && d < t.p.maxDelay; i++ {
		d *= 2
	}
	return min(d, t.p.maxDelay)
}

// forget clears the failure count of an entry quiet for forgetAfter (its
// last failure is kept: it decides whether an address is clean).
func (t *Throttle) forget(e *throttleEntry, now time.Time) {
	if e.failures > 0 && now.Sub(e.lastFailure) > t.p.forgetAfter {
		e.failures, e.next = 0, time.Time{}
	}
}

// refill brings an account's clean-lane budget up to now.
func (t *Throttle) refill(u *throttleEntry, now time.Time) {
	if u.tokensAt.IsZero() {
		u.tokens, u.tokensAt = t.p.cleanBurst, now
		return
	}
	if now.After(u.tokensAt) {
		u.tokens = min(t.p.cleanBurst, u.tokens+float64(now.Sub(u.tokensAt))/float64(t.p.cleanEvery))
		u.tokensAt = now
	}
}

func (t *Throttle) keepAddr(e *throttleEntry, now time.Time) bool {
	return !e.lastFailure.IsZero() && now.Sub(e.lastFailure) <= t.p.cleanAfter
}

func (t *Throttle) keepAcct(e *throttleEntry, now time.Time) bool {
	if e.failures > 0 && now.Sub(e.lastFailure) <= t.p.forgetAfter {
		return true
	}
	t.refill(e, now)
	return e.tokens < t.p.cleanBurst
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// throttleEntry is the state of one address, account or pair; each kind
// uses the fields its comment names.
type throttleEntry struct {
	key  string
	refs int           // attempts holding it: never evicted while > 0
	wake chan struct{} // closed when one of them ends

	failures    int       // address, account
	lastFailure time.Time // address, account
	next        time.Time // address, account: no failing-lane check starts before
	inflight    int       // checks running: address and pair: all; account: failing lane
	waiting     int       // address, account: attempts queued in the failing lane

	tokens       float64   // account: clean-lane budget
	tokensAt     time.Time // account: when tokens was last brought up to date; zero: full
	cleanWaiting int       // account: attempts waiting for that budget

	trustedUntil time.Time // pair

	refusals int       // address: refusals not yet logged
	loggedAt time.Time // address
}

func (e *throttleEntry) wakeCh() <-chan struct{} {
	if e.wake == nil {
		e.wake = make(chan struct{})
	}
	return e.wake
}

// table is a bounded map of entries in least-recently-used order. An entry
// is dropped when no attempt holds it and keep says it has nothing worth
// remembering, or when the table is full and it is the least recently used
// unheld one.
type table struct {
	max  int
	keep func(e *throttleEntry, now time.Time) bool
	m    map[string]*list.Element // of *throttleEntry
	lru  list.List                // front: most recently used
}

func (tb *table) init(max int, keep func(*throttleEntry, time.Time) bool) {
	tb.max, tb.keep, tb.m = max, keep, make(map[string]*list.Element)
	tb.lru.Init()
}

// get returns the entry for key, created if needed, with one more reference.
func (tb *table) get(key string, now time.Time) *throttleEntry {
	if el, ok := tb.m[key]; ok {
		tb.lru.MoveToFront(el)
		e := el.Value.(*throttleEntry)
		e.refs++
		return e
	}
	// Expire a little at each insertion, and make room.
	for i := 0; i < 2 && tb.lru.Len() > 0; i++ {
		if el := tb.lru.Back(); el.Value.(*throttleEntry).refs == 0 && !tb.keep(el.Value.(*throttleEntry), now) {
			tb.remove(el)
		}
	}
	for el := tb.lru.Back(); el != nil && tb.lru.Len() >= tb.max; {
		prev := el.Prev()
		if el.Value.(*throttleEntry).refs == 0 {
			tb.remove(el)
		}
		el = prev
	}
	e := &throttleEntry{key: key, refs: 1}
	tb.m[key] = tb.lru.PushFront(e)
	return e
}

// release drops a reference, wakes the entry's waiters and forgets the entry
// if it holds nothing worth keeping.
func (tb *table) release(e *throttleEntry, now time.Time) {
	e.refs--
	if e.wake != nil {
		close(e.wake)
		e.wake = nil
	}
	if el, ok := tb.m[e.key]; ok && el.Value == e && e.refs == 0 && !tb.keep(e, now) {
		tb.remove(el)
	}
}

func (tb *table) remove(el *list.Element) {
	delete(tb.m, el.Value.(*throttleEntry).key)
	tb.lru.Remove(el)
}

// maxKeyLen bounds the memory a key from the network can take.
const maxKeyLen = 256

// ipKey is the throttle key of a client address: netconn.Bucket's unit (the
// address, or its /64 for IPv6, since one host commonly owns a whole /64).
func ipKey(ip string) string {
	if host, _, err := net.SplitHostPort(ip); err == nil {
		ip = host
	}
	if a, err := netip.ParseAddr(ip); err == nil {
		b := netconn.Bucket(a.WithZone(""))
		if b.Addr().Is4() {
			return "ip:" + b.Addr().String()
		}
		return "ip:" + b.String()
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
