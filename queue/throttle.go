package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"postie/envelope"
)

// Throttle paces delivery per destination, so that a newsletter does not
// get this server blocked by the receivers it floods. A destination is the
// first [[queue.throttle]] rule that names the recipient domain, else the
// first that names the domain's primary MX host (exactly or by a ".suffix"),
// else that MX host itself: many domains share Google's or Microsoft's MX
// hosts, and the receiver counts per host and per sending address, not per
// recipient domain. Each destination gets:
//
//   - a message rate: attempts are spaced Window/MessagesPerMinute apart
//     plus 5% (no bursts), so that no Window holds more than
//     MessagesPerMinute arrivals at the receiver;
//   - a cap on concurrent connections, counted by the outbound client
//     through Connect (idle connections kept for reuse count too), and on
//     concurrent attempts, counted by the queue;
//   - back-off: a reply that says "slow down" (421, Gmail's 4.7.28,
//     Microsoft's 4.7.5xx-6xx, Yahoo's [TSnn], a 4.7.x speaking of rate or
//     limits: isRateLimited) halves its rate and holds new
//     attempts for Hold; then each run of successes adds a tenth of the
//     configured rate back (additive increase, multiplicative decrease).
//     Every change is logged once.
//
// The queue consults the Throttle before each attempt: a destination at its
// limit parks its work, which costs no connection, no DNS lookup and no
// retry count, and starts when the destination has room. A Throttle is
// safe for concurrent use; it only keeps memory for destinations in use.
type Throttle struct {
	opts ThrottleOptions
	log  *slog.Logger

	mu      sync.Mutex
	buckets map[string]*bucket   // by destination key
	dests   map[string]destEntry // recipient domain → its destination, learnt from DNS
}

// ThrottleOptions configure a Throttle. The zero value paces nothing but
// connections (4 per destination).
type ThrottleOptions struct {
	MessagesPerMinute int            // per destination, unless a rule says otherwise; 0: no cap
	Connections       int            // concurrent connections per destination, unless a rule says otherwise; 0: 4
	Rules             []ThrottleRule // first match wins
	// MX finds a domain's MX hosts (a *net.Resolver will do); nil:
	// destinations are recipient domains (use it with a smarthost).
	MX MXLookup
	// Window is the "minute" of MessagesPerMinute and Hold's default; tests
	// shorten it. 0: a minute.
	Window time.Duration
	// Hold is how long a destination that answered "slow down" gets no new
	// attempt. 0: Window.
	Hold   time.Duration
	Logger *slog.Logger     // nil: slog.Default()
	Now    func() time.Time // nil: time.Now
}

// ThrottleRule limits one destination: a recipient domain or an MX host
// name, or with a leading dot every name below it (".google.com").
type ThrottleRule struct {
	Domain            string
	MessagesPerMinute int // 0: no cap
	Connections       int // 0: ThrottleOptions.Connections
}

// MXLookup is the part of *net.Resolver the Throttle uses.
type MXLookup interface {
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
}

const (
	defaultThrottleConns = 4
	destTTL              = time.Hour        // how long a domain's destination is trusted
	destFailTTL          = 5 * time.Minute  // and a failed lookup's fallback
	maxDests             = 100_000          // domains remembered
	mxLookupTimeout      = 10 * time.Second //
	bucketIdle           = time.Hour        // an unused destination is forgotten after this
	speedUpEvery         = 10               // successes between two speed-ups
)

// bucket is the state of one destination.
type bucket struct {
	key     string
	ceiling int // the configured rate per Window (0: none)
	conns   int

	rate      int       // current rate per Window; 0: none (only when not slowed and ceiling is 0)
	slowed    bool      // rate is below what the configuration allows
	freeAt    int       // without a ceiling: the rate at which the cap is dropped
	next      time.Time // earliest start of the next attempt (the rate's spacing)
	holdUntil time.Time
	attempts  int // in flight, counted by the queue
	open      int // connections open, counted by the outbound client
	okRun     int // successes since the last change
	// recent are the domains of the last successful attempts: the outbound
	// client likely keeps their connections idle for reuse, so their work
	// goes first when the destination has room (see releaseParkedLocked).
	recent []string
	// started counts starts in the current window, to slow down a
	// destination without a configured rate from what it was getting.
	started     int
	windowStart time.Time
	lastUsed    time.Time
}

type destEntry struct {
	key     string
	expires time.Time
}

// NewThrottle returns a Throttle for opts.
func NewThrottle(opts ThrottleOptions) *Throttle {
	if opts.Connections <= 0 {
		opts.Connections = defaultThrottleConns
	}
	if opts.Window <= 0 {
		opts.Window = time.Minute
	}
	if opts.Hold <= 0 {
		opts.Hold = opts.Window
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	opts.Rules = slices.Clone(opts.Rules)
	for i := range opts.Rules {
		opts.Rules[i].Domain = envelope.CanonDomain(opts.Rules[i].Domain)
	}
	return &Throttle{opts: opts, log: opts.Logger, buckets: map[string]*bucket{}, dests: map[string]destEntry{}}
}

// ThrottledError is the temporary failure of an attempt the Throttle held
// back; the queue reschedules it without counting an attempt.
type ThrottledError struct {
	Dest  string
	Until time.Time // when to try again; zero: when a connection is free
}

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("queue: destination %s is at its limit; held back", strings.TrimPrefix(e.Dest, "mx:"))
}

// rule returns the first rule naming name.
func (t *Throttle) rule(name string) (ThrottleRule, bool) {
	name = envelope.CanonDomain(name)
	for _, r := range t.opts.Rules {
		if r.Domain == name || strings.HasPrefix(r.Domain, ".") && (strings.HasSuffix(name, r.Domain) || name == r.Domain[1:]) {
			return r, true
		}
	}
	return ThrottleRule{}, false
}

// keyFor names the destination of mail to domain through host.
func (t *Throttle) keyFor(domain, host string) string {
	if r, ok := t.rule(domain); ok {
		return "rule:" + r.Domain
	}
	if host == "" { // no MX known: the domain is its own host, and no rule names it
		return "mx:" + envelope.CanonDomain(domain)
	}
	if r, ok := t.rule(host); ok {
		return "rule:" + r.Domain
	}
	return "mx:" + envelope.CanonDomain(host)
}

// bucketLocked returns the destination's state, making it.
func (t *Throttle) bucketLocked(key string, now time.Time) *bucket {
	b := t.buckets[key]
	if b == nil {
		b = &bucket{key: key, ceiling: t.opts.MessagesPerMinute, conns: t.opts.Connections}
		if name, ok := strings.CutPrefix(key, "rule:"); ok {
			r, _ := t.ruleNamed(name)
			b.ceiling = r.MessagesPerMinute
			if r.Connections > 0 {
				b.conns = r.Connections
			}
		}
		b.rate = b.ceiling
		t.buckets[key] = b
		if len(t.buckets)%1024 == 0 {
			t.pruneLocked(now)
		}
	}
	b.lastUsed = now
	return b
}

func (t *Throttle) ruleNamed(name string) (ThrottleRule, bool) {
	for _, r := range t.opts.Rules {
		if r.Domain == name {
			return r, true
		}
	}
	return ThrottleRule{}, false
}

// pruneLocked forgets destinations unused for bucketIdle and with nothing
// in flight.
func (t *Throttle) pruneLocked(now time.Time) {
	for k, b := range t.buckets {
		if b.attempts == 0 && b.open == 0 && now.Sub(b.lastUsed) > bucketIdle && !now.Before(b.holdUntil) {
			delete(t.buckets, k)
		}
	}
}

// cachedDest returns the destination of domain if it is known (without a
// DNS lookup).
func (t *Throttle) cachedDest(domain string, now time.Time) (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.opts.MX == nil {
		return t.keyFor(domain, ""), true
	}
	if r, ok := t.rule(domain); ok {
		return "rule:" + r.Domain, true
	}
	e, ok := t.dests[domain]
	if !ok || now.After(e.expires) {
		return "", false
	}
	return e.key, true
}

// resolveDest finds the destination of domain, asking DNS for its MX when
// it is not known.
func (t *Throttle) resolveDest(ctx context.Context, domain string) string {
	if key, ok := t.cachedDest(domain, t.opts.Now()); ok {
		return key
	}
	ctx, cancel := context.WithTimeout(ctx, mxLookupTimeout)
	defer cancel()
	host, ttl := domain, destTTL
	mxs, err := t.opts.MX.LookupMX(ctx, domain)
	if best := primaryMX(mxs); best != "" {
		host = best
	} else if err != nil {
		ttl = destFailTTL // the implicit MX, or the delivery's own error, until DNS answers
	}
	key := t.keyFor(domain, host)
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.dests) >= maxDests {
		clear(t.dests)
	}
	t.dests[domain] = destEntry{key: key, expires: t.opts.Now().Add(ttl)}
	return key
}

// primaryMX is the most preferred MX host (ties: the first by name, so
// that the choice is stable), "" if none.
func primaryMX(mxs []*net.MX) string {
	best := ""
	var pref uint16
	for _, mx := range mxs {
		h := strings.TrimSuffix(mx.Host, ".")
		if h == "" {
			continue
		}
		if best == "" || mx.Pref < pref || mx.Pref == pref && h < best {
			best, pref = h, mx.Pref
		}
	}
	return best
}

// tryStart reserves an attempt at destination key now, if its limits
// allow: ok, or the time to try again (zero: when an attempt in flight
// there ends).
func (t *Throttle) tryStart(key string, now time.Time) (ok bool, retry time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.bucketLocked(key, now)
	if at := b.earliest(now); at.After(now) {
		return false, at
	}
	if b.attempts >= b.conns {
		return false, time.Time{}
	}
	b.attempts++
	b.count(now, t.opts.Window)
	if b.rate > 0 {
		b.next = maxTime(b.next, now).Add(t.spacing(b.rate))
	}
	return true, time.Time{}
}

// spacing is the time between two starts at rate per Window, plus a
// twentieth: the receiver counts arrivals, which come after the starts
// by a time that varies (a new connection and its TLS handshake, or a
// reused one), so any rate+1 starts span Window plus a twentieth of it,
// which absorbs that variation (3 s in a minute) and keeps every window
// at the receiver within the rate.
func (t *Throttle) spacing(rate int) time.Duration {
	d := t.opts.Window / time.Duration(rate)
	return d + d/20
}

// earliest is when the destination's rate and hold let the next attempt
// start.
func (b *bucket) earliest(now time.Time) time.Time {
	at := now
	if b.rate > 0 {
		at = maxTime(at, b.next)
	}
	return maxTime(at, b.holdUntil)
}

// count notes a start in the current window.
func (b *bucket) count(now time.Time, window time.Duration) {
	if now.Sub(b.windowStart) >= window {
		b.windowStart, b.started = now, 0
	}
	b.started++
}

// free says how many attempts destination key could start now, and else
// when the next one can (zero: when one in flight ends).
func (t *Throttle) free(key string, now time.Time) (int, time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.buckets[key]
	if b == nil { // forgotten (pruned): tryStart applies its limits again
		return t.opts.Connections, time.Time{}
	}
	if at := b.earliest(now); at.After(now) {
		return 0, at
	}
	n := b.conns - b.attempts
	if n <= 0 {
		return 0, time.Time{}
	}
	if b.rate > 0 {
		n = 1 // spaced: one now, the next after the interval
	}
	return n, time.Time{}
}

// unreserve gives back an attempt reserved but not made.
func (t *Throttle) unreserve(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if b := t.buckets[key]; b != nil && b.attempts > 0 {
		b.attempts--
	}
}

// finish ends an attempt at destination key for domain and learns from its
// results: a "slow down" reply slows the destination, successes speed it up
// again.
func (t *Throttle) finish(key, domain string, errs []error) {
	now := t.opts.Now()
	var limited error
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case limited == nil && isRateLimited(err):
			limited = err
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.bucketLocked(key, now)
	if b.attempts > 0 {
		b.attempts--
	}
	switch {
	case limited != nil:
		t.slowDownLocked(b, now, limited)
	case ok > 0:
		t.speedUpLocked(b, ok)
		if !slices.Contains(b.recent, domain) {
			if len(b.recent) >= b.conns {
				b.recent = b.recent[1:]
			}
			b.recent = append(b.recent, domain)
		}
	}
}

// recentDomains returns the domains of destination key's last successful
// attempts.
func (t *Throttle) recentDomains(key string) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if b := t.buckets[key]; b != nil {
		return slices.Clone(b.recent)
	}
	return nil
}

// slowDownLocked halves the destination's rate and holds it, once per
// hold: the replies of attempts that were already under way when the
// first one came do not halve it again.
func (t *Throttle) slowDownLocked(b *bucket, now time.Time, reply error) {
	if now.Before(b.holdUntil) {
		return
	}
	base := b.rate
	if base == 0 { // no configured rate: start from what it was getting
		base = max(b.started, 2)
		if now.Sub(b.windowStart) > t.opts.Window {
			base = 2
		}
		b.ceiling = 0
	}
	b.rate = max(base/2, 1)
	if b.ceiling == 0 {
		b.freeAt = 2 * base
	}
	b.slowed = true
	b.okRun = 0
	b.holdUntil = now.Add(t.opts.Hold)
	b.next = maxTime(b.next, b.holdUntil)
	t.log.Warn("queue: destination asked us to slow down", "dest", destName(b.key),
		"messages_per_window", b.rate, "window", t.opts.Window, "held_until", b.holdUntil, "err", reply)
}

// speedUpLocked adds back a tenth of the configured rate (at least one)
// after each speedUpEvery successes, up to the configured rate, or, for a
// destination without one, until twice the rate it was slowed from, where
// the cap is dropped.
func (t *Throttle) speedUpLocked(b *bucket, ok int) {
	if !b.slowed {
		return
	}
	b.okRun += ok
	if b.okRun < speedUpEvery {
		return
	}
	b.okRun = 0
	step := max(b.ceiling/10, 1)
	if b.ceiling == 0 {
		step = max(b.rate/10, 1)
	}
	b.rate += step
	if b.ceiling > 0 && b.rate >= b.ceiling {
		b.rate, b.slowed = b.ceiling, false
	}
	if b.ceiling == 0 && b.rate >= b.freeAt { // twice what it was slowed from: back to no cap
		b.rate, b.slowed = 0, false
	}
	t.log.Info("queue: destination speeding up again", "dest", destName(b.key),
		"messages_per_window", b.rate, "window", t.opts.Window, "back_to_normal", !b.slowed)
}

// Connect is the outbound client's question before it opens a connection
// to host for mail to domain: release, to call once when that connection
// closes, or a *ThrottledError when the destination has as many
// connections open as it may.
func (t *Throttle) Connect(domain, host string) (release func(), err error) {
	key := t.keyFor(envelope.CanonDomain(domain), host)
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.bucketLocked(key, t.opts.Now())
	if b.open >= b.conns {
		return nil, &ThrottledError{Dest: key}
	}
	b.open++
	var once sync.Once
	return func() {
		once.Do(func() {
			t.mu.Lock()
			b.open--
			t.mu.Unlock()
		})
	}, nil
}

// DestStats is one destination's state, for tests and the benchmark.
type DestStats struct {
	Rate     int // messages per Window now; 0: no cap
	Slowed   bool
	Attempts int // in flight
	Open     int // connections
}

// Stats returns the state of the destination of domain (as last resolved).
func (t *Throttle) Stats(domain string) DestStats {
	key, ok := t.cachedDest(envelope.CanonDomain(domain), t.opts.Now())
	if !ok {
		return DestStats{}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.buckets[key]
	if b == nil {
		return DestStats{}
	}
	return DestStats{Rate: b.rate, Slowed: b.slowed, Attempts: b.attempts, Open: b.open}
}

// rateWords, in a 4.7.x reply, say that the refusal is about our rate
// or volume, not about this message or recipient.
var rateWords = []string{
	"rate", "too many", "limit", "throttl", "too fast", "slow down", "exceeded", "volume",
}

// isRateLimited reports whether err is a remote reply asking us to slow
// down, rather than one about a message or recipient (greylisting, a
// "try again later" of a filter, a recipient receiving too fast, too many
// recipients in one transaction), which must not slow the destination:
//
//   - any 421: the receiver closes the connection on us;
//   - Gmail's 4.7.28 ("unusual rate of unsolicited mail") and any 4xx
//     saying "unusual rate";
//   - Microsoft's 4.7.500 to 4.7.699 (451 4.7.500 "Server busy", 451
//     4.7.650/4.7.651 "rate limited due to IP reputation"): its
//     throttling range;
//   - Yahoo's and AOL's [TSnn]/[TSSnn] deferrals;
//   - another 4.7.x whose text speaks of rate, limits or too many.
//
// Greylisting ("greylist" or "graylist" in the text) never is.
func isRateLimited(err error) bool {
	var ee *envelope.Error
	if !errors.As(err, &ee) || ee.Code < 400 || ee.Code >= 500 {
		return false
	}
	text := strings.ToLower(ee.Message)
	if strings.Contains(text, "greylist") || strings.Contains(text, "graylist") {
		return false
	}
	policy := ee.Enhanced[0] == 4 && ee.Enhanced[1] == 7
	switch {
	case ee.Code == 421, strings.Contains(text, "unusual rate"), yahooDeferral(text):
		return true
	case !policy:
		return false
	case ee.Enhanced[2] == 28, ee.Enhanced[2] >= 500 && ee.Enhanced[2] < 700:
		return true
	}
	for _, w := range rateWords {
		if strings.Contains(text, w) {
			return true
		}
	}
	return false
}

// yahooDeferral reports whether text holds one of Yahoo's deferral tags:
// "[TS01]", "[TS02]", "[TSS04]"... (https://senders.yahooinc.com/smtp-error-codes).
func yahooDeferral(text string) bool {
	for rest := text; ; {
		i := strings.Index(rest, "[ts")
		if i < 0 {
			return false
		}
		rest = rest[i+3:]
		tag := strings.TrimPrefix(rest, "s")
		if len(tag) >= 3 && isDigit(tag[0]) && isDigit(tag[1]) && tag[2] == ']' {
			return true
		}
	}
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// destName is a destination key for people: the rule or the host.
func destName(key string) string {
	if name, ok := strings.CutPrefix(key, "rule:"); ok {
		return name + " (throttle rule)"
	}
	return strings.TrimPrefix(key, "mx:")
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
