package queue

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"postie/envelope"
)

// fakeMX answers LookupMX from a table; other names have no MX.
type fakeMX map[string]string

func (f fakeMX) LookupMX(_ context.Context, name string) ([]*net.MX, error) {
	if h, ok := f[name]; ok {
		return []*net.MX{{Host: h + ".", Pref: 10}, {Host: "backup." + h + ".", Pref: 20}}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func TestThrottleDestinations(t *testing.T) {
	thr := NewThrottle(ThrottleOptions{
		MX: fakeMX{"gmail.test": "gmail-smtp-in.l.google.test", "corp.test": "corp-test.mail.protection.outlook.test",
			"small.test": "mx.small.test"},
		Rules: []ThrottleRule{
			{Domain: "Special.TEST", MessagesPerMinute: 5},
			{Domain: ".google.test", MessagesPerMinute: 100, Connections: 7},
			{Domain: "corp-test.mail.protection.outlook.test", MessagesPerMinute: 30},
		},
	})
	ctx := context.Background()
	for dom, want := range map[string]string{
		"special.test": "rule:special.test", // by recipient domain, no lookup
		"gmail.test":   "rule:.google.test", // by MX host suffix
		"corp.test":    "rule:corp-test.mail.protection.outlook.test",
		"small.test":   "mx:mx.small.test", // the MX host itself
		"nomx.test":    "mx:nomx.test",     // the implicit MX
	} {
		if got := thr.resolveDest(ctx, dom); got != want {
			t.Errorf("destination of %s = %q, want %q", dom, got, want)
		}
	}
	if key, ok := thr.cachedDest("gmail.test", time.Now()); !ok || key != "rule:.google.test" {
		t.Errorf("cachedDest after resolving = %q, %v", key, ok)
	}
	if _, ok := thr.cachedDest("unknown.test", time.Now()); ok {
		t.Error("an unresolved domain is known")
	}
	thr.tryStart("rule:.google.test", time.Now())
	if s := thr.Stats("gmail.test"); s.Rate != 100 || s.Attempts != 1 {
		t.Errorf("gmail.test stats = %+v", s)
	}
	if b := thr.buckets["rule:.google.test"]; b.conns != 7 {
		t.Errorf("rule connections = %d, want 7", b.conns)
	}
	// Connections are counted by destination, whatever the domain.
	r1, err1 := thr.Connect("gmail.test", "alt1.gmail-smtp-in.l.google.test")
	if err1 != nil || thr.Stats("gmail.test").Open != 1 {
		t.Fatalf("Connect = %v, open %d", err1, thr.Stats("gmail.test").Open)
	}
	r1()
	r1() // once only
	if o := thr.Stats("gmail.test").Open; o != 0 {
		t.Errorf("open after release = %d", o)
	}
}

// TestThrottleDestinationsNoMX: without an MX lookup (a smarthost), a
// destination is the rule naming the recipient domain, else the domain.
func TestThrottleDestinationsNoMX(t *testing.T) {
	thr := NewThrottle(ThrottleOptions{Rules: []ThrottleRule{
		{Domain: "Special.TEST", MessagesPerMinute: 5},
		{Domain: ".corp.test", MessagesPerMinute: 7},
	}})
	for dom, want := range map[string]string{
		"special.test":    "rule:special.test",
		"Special.Test.":   "rule:special.test",
		"eu.corp.test":    "rule:.corp.test",
		"corp.test":       "rule:.corp.test",
		"Other.TEST":      "mx:other.test",
		"notcorp.test":    "mx:notcorp.test",
		"special.test.eu": "mx:special.test.eu",
	} {
		if got := thr.resolveDest(context.Background(), dom); got != want {
			t.Errorf("destination of %s = %q, want %q", dom, got, want)
		}
		if got, ok := thr.cachedDest(dom, time.Now()); !ok || got != want {
			t.Errorf("cachedDest(%s) = %q, %v; want %q", dom, got, ok, want)
		}
	}
}

func TestThrottleConnectCap(t *testing.T) {
	thr := NewThrottle(ThrottleOptions{Connections: 2})
	var rel []func()
	for i := range 2 {
		r, err := thr.Connect(fmt.Sprintf("d%d.test", i), "mx.shared.test")
		if err != nil {
			t.Fatal(err)
		}
		rel = append(rel, r)
	}
	_, err := thr.Connect("d3.test", "mx.shared.test")
	var te *ThrottledError
	if !errors.As(err, &te) {
		t.Fatalf("third connection to one MX host: %v", err)
	}
	if _, err := thr.Connect("d3.test", "mx.other.test"); err != nil {
		t.Fatalf("another host is another destination: %v", err)
	}
	rel[0]()
	if _, err := thr.Connect("d3.test", "mx.shared.test"); err != nil {
		t.Fatalf("after a release: %v", err)
	}
}

// TestIsRateLimited: replies of the big receivers (as published by them
// or quoted in bug reports and postmaster forums), and which slow the
// destination down.
func TestIsRateLimited(t *testing.T) {
	said := func(code, c, s, d int, text string) error {
		return envelope.Errorf(code, c, s, d, "mx said: %s (in reply to RCPT TO command)", text)
	}
	for _, c := range []struct {
		err  error
		want bool
	}{
		// Gmail.
		{said(421, 4, 7, 28, "[192.0.2.1] Our system has detected an unusual rate of 421-4.7.28 unsolicited mail originating from your IP address. To protect our 421-4.7.28 users from spam, mail sent from your IP address has been temporarily 421-4.7.28 rate limited. - gsmtp"), true},
		{said(421, 4, 7, 0, "Our system has detected that this message is 421-4.7.0 suspicious due to the very low reputation of the sending IP address. 421-4.7.0 To protect our users from spam, mail sent from your IP address has 421-4.7.0 been temporarily rate limited."), true},
		{said(450, 4, 2, 1, "The user you are trying to contact is receiving mail at a rate that prevents additional messages from being delivered. Please resend your message at a later time. - gsmtp"), false}, // one recipient
		{said(452, 4, 2, 2, "The recipient's inbox is out of storage space. Please direct the recipient to https://support.google.com/mail/?p=OverQuotaTemp - gsmtp"), false},
		// Microsoft.
		{said(451, 4, 7, 500, "Server busy. Please try again later from [192.0.2.1]. (S77719) [BN8NAM11FT054.eop-nam11.prod.protection.outlook.com]"), true},
		{said(451, 4, 7, 650, "The mail server [192.0.2.1] has been temporarily rate limited due to IP reputation. For e-mail delivery information, see https://postmaster.live.com (S775)"), true},
		{said(451, 4, 7, 651, "The mail server [192.0.2.1] has been temporarily rate limited due to IP reputation. For e-mail delivery information, see https://postmaster.live.com (S3114)"), true},
		// Yahoo and AOL.
		{said(421, 4, 7, 0, "[TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes"), true},
		{said(451, 4, 7, 0, "[TS01] Messages from 192.0.2.1 temporarily deferred due to user complaints - 4.16.55.1"), true},
		{said(450, 4, 0, 0, "[TSS05] Messages from 192.0.2.1 temporarily deferred"), true},
		// Others that ask for less.
		{said(421, 4, 7, 0, "Too many connections, slow down"), true},
		{said(421, 4, 3, 0, "service shutting down"), true}, // the connection is closed on us
		{said(450, 4, 7, 1, "rate limit exceeded"), true},
		{said(451, 4, 7, 1, "Too many messages from your IP, try again later"), true},
		// Greylisting and filters: "try again later" about this message.
		{said(451, 4, 7, 1, "Try again later"), false}, // rspamd's greylisting
		{said(450, 4, 2, 0, "<bob@remote.test>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/help/remote.test.html"), false},
		{said(451, 4, 7, 1, "Greylisting in action, please come back in 00:05:00"), false},
		{said(451, 4, 7, 1, "Greylisted, try again after some time."), false},
		{said(450, 4, 7, 1, "greylisted, try again later"), false},
		{said(451, 0, 0, 0, "Internal resource temporarily unavailable - https://community.mimecast.com/docs/DOC-1369#451"), false},
		{said(451, 4, 7, 1, "<bob@remote.test>: Recipient address rejected: Intentional policy rejection, please try again later"), false},
		{said(450, 4, 2, 1, "Please try again later. (#id-5.9.4)"), false},
		{said(451, 4, 3, 0, "Temporary local problem - please try later"), false},
		{said(452, 4, 5, 3, "Too many recipients"), false}, // this transaction, not our rate
		{said(452, 4, 2, 2, "mailbox full"), false},
		{said(451, 4, 3, 0, "Mail server temporarily rejected message."), false},
		{envelope.Errorf(550, 5, 7, 1, "mx said: too many bad recipients"), false},
		{said(554, 5, 7, 0, "[TS03] All messages from 192.0.2.1 will be permanently deferred"), false},
		{errors.New("connection refused"), false},
	} {
		if got := isRateLimited(c.err); got != c.want {
			t.Errorf("isRateLimited(%v) = %v", c.err, got)
		}
	}
}

// parkedDue reports whether a parked unit could start now.
func (q *Queue) parkedDue() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.now()
	for key, w := range q.parked {
		if n, _ := q.opts.Throttle.free(key, now); n > 0 && len(w) > 0 {
			return true
		}
	}
	return false
}

// tick moves the clock and waits until the scheduler has started all that
// the throttle allows and every attempt has ended.
func (h *harness) tick(d time.Duration) {
	h.t.Helper()
	h.clock.Advance(d)
	h.q.wake()
	waitFor(h.t, "the scheduler to settle", func() bool { return h.q.idle() && !h.q.parkedDue() })
}

// throttled makes a harness whose queue has a Throttle on the harness
// clock.
func throttled(t *testing.T, d *fakeDeliverer, o ThrottleOptions) (*harness, *Throttle) {
	var thr *Throttle
	h := newHarness(t, d, func(opts *Options) {
		o.Now, o.Logger = opts.Now, opts.Logger
		thr = NewThrottle(o)
		opts.Throttle = thr
	})
	return h, thr
}

// TestThrottleRate counts the attempts the scheduler starts as the clock
// moves: one per Window/MessagesPerMinute (plus 5%), no burst after a
// quiet time.
func TestThrottleRate(t *testing.T) {
	d := newDeliverer(nil)
	h, _ := throttled(t, d, ThrottleOptions{MessagesPerMinute: 6}) // one per 10 s
	for i := range 6 {
		h.enqueue("alice@example.test", fmt.Sprintf("r%d@remote.test", i))
	}
	h.run()
	h.tick(0)
	steps := []struct {
		advance time.Duration
		calls   int
	}{ // one per 10 s plus 5%: 10.5 s
		{0, 1}, {10 * time.Second, 1}, {500 * time.Millisecond, 2}, {10 * time.Second, 2}, {500 * time.Millisecond, 3},
		{time.Minute, 4}, {10 * time.Second, 4}, {500 * time.Millisecond, 5},
	}
	for i, s := range steps {
		h.tick(s.advance)
		if n := d.callCount(); n != s.calls {
			t.Fatalf("step %d (+%v): %d attempts, want %d", i, s.advance, n, s.calls)
		}
	}
}

// TestThrottleBacksOff: a destination that answers 421 "slow down" gets no
// attempt for Hold, then half its rate, and speeds up again after
// successes.
func TestThrottleBacksOff(t *testing.T) {
	first := true
	d := newDeliverer(nil)
	d.respond = func(rcpt string, n int) error {
		if first {
			first = false
			return envelope.Errorf(421, 4, 7, 0, "mx.remote.test said: Too many messages, slow down")
		}
		return nil
	}
	h, thr := throttled(t, d, ThrottleOptions{MessagesPerMinute: 60, Connections: 10}) // one a second
	for i := range 70 {
		h.enqueue("alice@example.test", fmt.Sprintf("r%d@remote.test", i))
	}
	h.run()
	h.tick(0)
	if n := d.callCount(); n != 1 {
		t.Fatalf("%d attempts before the first reply", n)
	}
	if s := thr.Stats("remote.test"); !s.Slowed || s.Rate != 30 {
		t.Fatalf("after a 421: %+v, want rate 30 and slowed", s)
	}
	// The hold: a minute without an attempt, where 60 were allowed.
	for range 59 {
		h.tick(time.Second)
	}
	if n := d.callCount(); n != 1 {
		t.Fatalf("%d attempts during the hold, want none", n-1)
	}
	// Then one every 2.1 s (two seconds plus 5%): at 60, 62.1 ... 78.9,
	// ten by 80 s where the configured rate allowed twenty-one.
	for range 200 {
		h.tick(100 * time.Millisecond)
	}
	if n := d.callCount() - 1; n != 10 {
		t.Fatalf("%d attempts in the 20 s after the hold, want 10 (half the rate)", n)
	}
	// Ten successes added a tenth of the configured rate back.
	if s := thr.Stats("remote.test"); !s.Slowed || s.Rate != 36 {
		t.Fatalf("after ten successes: %+v, want rate 36", s)
	}
	for range 120 {
		h.tick(time.Second)
	}
	if s := thr.Stats("remote.test"); s.Slowed || s.Rate != 60 {
		t.Fatalf("after many successes: %+v, want back to 60", s)
	}
}

// TestThrottleSharedMX: domains that share an MX host share its connection
// cap, which holds even though each domain alone is within MaxPerDomain.
func TestThrottleSharedMX(t *testing.T) {
	d := newDeliverer(nil)
	d.hold = 20 * time.Millisecond
	mx := fakeMX{}
	for i := range 5 {
		mx[fmt.Sprintf("d%d.test", i)] = "mx.shared.test"
	}
	h, thr := throttled(t, d, ThrottleOptions{Connections: 2, MX: mx})
	for i := range 5 {
		for j := range 4 {
			h.enqueue("alice@example.test", fmt.Sprintf("r%d@d%d.test", j, i))
		}
	}
	h.run()
	waitFor(t, "every message delivered", func() bool {
		_, delivered, _, _ := d.stats()
		return len(delivered) == 20
	})
	if _, _, peak, _ := d.stats(); peak > 2 {
		t.Errorf("%d attempts at once to one MX host, cap 2", peak)
	}
	if s := thr.Stats("d0.test"); s.Attempts != 0 {
		t.Errorf("attempts still counted after the end: %+v", s)
	}
}

// TestThrottleUncappedRecovers: a destination without a configured rate
// that answered "slow down" gets a cap from what it was getting, which
// grows with successes and is dropped at twice the rate it was slowed
// from; it must not stay capped (and reported slowed) for ever.
func TestThrottleUncappedRecovers(t *testing.T) {
	clk := newClock()
	thr := NewThrottle(ThrottleOptions{Connections: 10, Now: clk.Now})
	key, _ := thr.cachedDest("remote.test", clk.Now())
	attempt := func(err error) {
		t.Helper()
		for range 1000 {
			if ok, _ := thr.tryStart(key, clk.Now()); ok {
				thr.finish(key, "remote.test", []error{err})
				return
			}
			clk.Advance(time.Second)
		}
		t.Fatal("no attempt allowed in 1000 s")
	}
	for range 8 {
		attempt(nil)
	}
	attempt(envelope.Errorf(421, 4, 7, 0, "too many connections, slow down"))
	s := thr.Stats("remote.test")
	if !s.Slowed || s.Rate != 4 { // half the 9 started in the window, rounded down
		t.Fatalf("after the 421: %+v", s)
	}
	for i := 0; i < 200 && thr.Stats("remote.test").Slowed; i++ {
		attempt(nil)
	}
	if s := thr.Stats("remote.test"); s.Slowed || s.Rate != 0 {
		t.Errorf("after 200 successes: %+v, want no cap again", s)
	}
}
