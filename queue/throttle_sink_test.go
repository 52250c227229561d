package queue

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"postie/internal/dnstest"
	"postie/internal/testutil"
	"postie/outbound"
)

// countingSink is a loopback SMTP server standing for one receiver's MX
// host. It counts what a receiver counts: connections open at once (from
// accept until the server has seen the connection end), connections in
// all, and when each message came.
type countingSink struct {
	ln     net.Listener
	srv    *smtp.Server
	closes *closeRegistry

	mu       sync.Mutex
	open     int
	peakOpen int
	conns    int
	arrivals []time.Time
	reply    func(n int) error // the answer to the n-th message's end of DATA (from 0); nil: 250
}

// closeRegistry tells the client side when a sink has counted the end of a
// connection, by the client's address. The test's Dial makes a client
// Close wait for it, so that the client's release of a connection slot
// (after its Close) comes after the sink's count went down: the count at
// the sink is then exact, never one ahead because of the network's delay.
type closeRegistry struct {
	mu   sync.Mutex
	done map[string]*closeEntry // by client address, which the system reuses
}

type closeEntry struct {
	ch     chan struct{}
	closed bool
}

// get returns the entry of the connection from client now: both ends ask
// for it, in either order; one of an earlier connection from the same
// address is done and replaced.
func (r *closeRegistry) get(client string) *closeEntry {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done == nil {
		r.done = map[string]*closeEntry{}
	}
	e := r.done[client]
	if e == nil || e.closed {
		e = &closeEntry{ch: make(chan struct{})}
		r.done[client] = e
	}
	return e
}

func (r *closeRegistry) close(e *closeEntry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !e.closed {
		e.closed = true
		close(e.ch)
	}
}

// dial is the outbound client's Dial for tests against sinks.
func (r *closeRegistry) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &waitConn{Conn: c, counted: r.get(c.LocalAddr().String()).ch}, nil
}

// waitConn's Close returns once the sink has counted the connection's end.
type waitConn struct {
	net.Conn
	counted chan struct{}
}

func (w *waitConn) Close() error {
	err := w.Conn.Close()
	select {
	case <-w.counted:
	case <-time.After(2 * time.Second):
	}
	return err
}

// startSinks starts n sinks on 127.0.0.1 … 127.0.0.n, all on one port
// (the outbound client dials one port everywhere).
func startSinks(t testing.TB, n int) (sinks []*countingSink, port int) {
	t.Helper()
	for try := 0; try < 20 && sinks == nil; try++ {
		var lns []net.Listener
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		port = ln.Addr().(*net.TCPAddr).Port
		for i := 2; i <= n; i++ {
			l, err := net.Listen("tcp", net.JoinHostPort(fmt.Sprintf("127.0.0.%d", i), strconv.Itoa(port)))
			if err != nil {
				break
			}
			lns = append(lns, l)
		}
		if len(lns) < n {
			for _, l := range lns {
				l.Close()
			}
			continue
		}
		reg := &closeRegistry{}
		for _, l := range lns {
			sinks = append(sinks, newSink(t, l, reg))
		}
	}
	if sinks == nil {
		t.Fatal("no port free on every loopback address")
	}
	return sinks, port
}

func newSink(t testing.TB, ln net.Listener, reg *closeRegistry) *countingSink {
	s := &countingSink{closes: reg}
	s.srv = smtp.NewServer(sinkBackend{s})
	s.srv.Domain = "sink.test"
	s.srv.TLSConfig = testutil.ServerTLS(t)
	s.srv.ReadTimeout = 10 * time.Second
	s.srv.WriteTimeout = 10 * time.Second
	s.ln = &sinkListener{Listener: ln, s: s}
	go s.srv.Serve(s.ln)
	t.Cleanup(func() { s.srv.Close() })
	return s
}

func (s *countingSink) stats() (peakOpen, conns, msgs int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peakOpen, s.conns, len(s.arrivals)
}

// maxInWindow is the most messages that arrived within any span of w.
func (s *countingSink) maxInWindow(w time.Duration) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	best, j := 0, 0
	for i, at := range s.arrivals { // in arrival order
		for at.Sub(s.arrivals[j]) >= w {
			j++
		}
		best = max(best, i-j+1)
	}
	return best
}

type sinkListener struct {
	net.Listener
	s *countingSink
}

func (l *sinkListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.s.mu.Lock()
	l.s.open++
	l.s.conns++
	l.s.peakOpen = max(l.s.peakOpen, l.s.open)
	l.s.mu.Unlock()
	return &sinkConn{Conn: c, s: l.s, counted: l.s.closes.get(c.RemoteAddr().String())}, nil
}

// sinkConn ends its count when the server closes it (after QUIT, or after
// the client went away).
type sinkConn struct {
	net.Conn
	s       *countingSink
	counted *closeEntry
	once    sync.Once
}

func (c *sinkConn) Close() error {
	c.done()
	return c.Conn.Close()
}

func (c *sinkConn) done() {
	c.once.Do(func() {
		c.s.mu.Lock()
		c.s.open--
		c.s.mu.Unlock()
		c.s.closes.close(c.counted)
	})
}

type sinkBackend struct{ s *countingSink }

func (b sinkBackend) NewSession(*smtp.Conn) (smtp.Session, error) { return &sinkSession{s: b.s}, nil }

type sinkSession struct{ s *countingSink }

func (*sinkSession) Reset()                               {}
func (*sinkSession) Logout() error                        { return nil }
func (*sinkSession) Mail(string, *smtp.MailOptions) error { return nil }
func (*sinkSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (ss *sinkSession) Data(r io.Reader) error {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	s := ss.s
	s.mu.Lock()
	n := len(s.arrivals)
	s.arrivals = append(s.arrivals, time.Now())
	reply := s.reply
	s.mu.Unlock()
	if reply != nil {
		return reply(n)
	}
	return nil
}

// newsletterSetup is a loopback world of nDomains recipient domains whose
// MX hosts are spread over the sinks: domain i has mx<i mod n>.sink.test.
type newsletterSetup struct {
	sinks []*countingSink
	dns   *dnstest.Server
	out   *outbound.Client
	thr   *Throttle
}

func newNewsletterSetup(t testing.TB, nSinks, nDomains int, to ThrottleOptions) *newsletterSetup {
	t.Helper()
	ns := &newsletterSetup{dns: dnstest.New(t)}
	var port int
	ns.sinks, port = startSinks(t, nSinks)
	for k := range nSinks {
		ns.dns.A(fmt.Sprintf("mx%d.sink.test", k), fmt.Sprintf("127.0.0.%d", k+1))
	}
	for i := range nDomains {
		ns.dns.MX(fmt.Sprintf("d%d.test", i), 10, fmt.Sprintf("mx%d.sink.test", i%nSinks))
	}
	to.MX = ns.dns.Resolver()
	if to.Logger == nil {
		to.Logger = testLogger(t)
	}
	ns.thr = NewThrottle(to)
	ns.out = outbound.New(outbound.Options{
		Hostname: "mail.example.test", Resolver: ns.dns.Resolver(), Port: port,
		ConnectTimeout: 5 * time.Second, CommandTimeout: 10 * time.Second,
		Dial: ns.sinks[0].closes.dial, Limiter: ns.thr, Logger: testLogger(t),
	})
	t.Cleanup(func() { ns.out.Close() })
	return ns
}

// TestThrottleAtTheSink: through the real outbound client, no sink (MX
// host) ever sees more connections at once than its destination's cap,
// though each serves many domains and idle connections are kept for
// reuse.
func TestThrottleAtTheSink(t *testing.T) {
	ns := newNewsletterSetup(t, 2, 20, ThrottleOptions{Connections: 3})
	h := newHarness(t, nil, func(o *Options) {
		o.Deliverer, o.Throttle = ns.out, ns.thr
		o.MaxConcurrency, o.MaxPerDomain = 20, 4
		o.Now = nil // real time: the outbound client's idle timers run on it
	})
	for i := range 200 {
		h.enqueue("alice@example.test", fmt.Sprintf("r%d@d%d.test", i, i%20))
	}
	h.run()
	waitFor(t, "200 messages at the sinks", func() bool {
		total := 0
		for _, s := range ns.sinks {
			_, _, m := s.stats()
			total += m
		}
		return total == 200
	})
	for k, s := range ns.sinks {
		peak, conns, msgs := s.stats()
		t.Logf("sink %d: %d messages over %d connections, at most %d at once", k, msgs, conns, peak)
		if peak > 3 {
			t.Errorf("sink %d saw %d connections at once; the cap is 3", k, peak)
		}
	}
}

// TestThrottleSinkRateLimited: a sink that answers 421 "slow down" gets
// that destination halved and held, through the real outbound client.
func TestThrottleSinkRateLimited(t *testing.T) {
	ns := newNewsletterSetup(t, 1, 4, ThrottleOptions{MessagesPerMinute: 600, Connections: 2, Window: time.Minute, Hold: time.Hour})
	ns.sinks[0].reply = func(n int) error {
		if n == 2 {
			return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many messages, slow down"}
		}
		return nil
	}
	h := newHarness(t, nil, func(o *Options) {
		o.Deliverer, o.Throttle = ns.out, ns.thr
		o.Now = nil
	})
	for i := range 20 {
		h.enqueue("alice@example.test", fmt.Sprintf("r%d@d%d.test", i, i%4))
	}
	h.run()
	waitFor(t, "the 421", func() bool { return ns.thr.Stats("d0.test").Slowed })
	if s := ns.thr.Stats("d1.test"); s.Rate != 300 || !s.Slowed {
		t.Errorf("every domain on that MX host is slowed: %+v", s)
	}
	// Held for an hour: what arrives is only what was already under way
	// when the 421 came (at most the connection cap), then nothing.
	waitFor(t, "the attempts under way to end", h.q.idle)
	_, _, before := ns.sinks[0].stats()
	if before > 3+2 {
		t.Errorf("%d messages arrived though the destination asked to slow down at the third", before)
	}
	h.q.Flush() // even a flush waits for the destination
	time.Sleep(200 * time.Millisecond)
	if _, _, after := ns.sinks[0].stats(); after != before {
		t.Errorf("%d more messages during the hold", after-before)
	}
}
