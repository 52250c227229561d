package netconn

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Errors a Tracker refuses a connection with; a server's Refusal tells them apart to word its
// answer.
var (
	ErrTooMany       = errors.New("netconn: too many connections")
	ErrTooManyFromIP = errors.New("netconn: too many connections from one address")
	ErrShuttingDown  = errors.New("netconn: shutting down")
)

// Defaults for the zero values of Deadlines.
const (
	// DefaultCommandTimeout is the grace a command gets once its first byte arrived (and the
	// longest silence inside it), under RFC 5321 §4.5.3.2's 5 minutes for a command and 3 for a
	// DATA block: those are ceilings, and a real client sends a command in one packet.
	DefaultCommandTimeout = time.Minute
	// DefaultMinRate is the slowest average a command, a DATA or a literal may arrive at after its
	// grace: 500 bytes/s, Postfix's smtpd_min_data_rate. A 10 MB message may take 5.6 hours, one
	// byte every 10 s is cut after the minute of grace.
	DefaultMinRate = 500
	// DefaultTransactionTimeout bounds an SMTP transaction (MAIL to the end of DATA) apart from
	// its bytes at MinRate: RFC 5321 §4.5.3.2's 10 minutes for the end of DATA, as a ceiling.
	DefaultTransactionTimeout = 10 * time.Minute
	// DefaultHandshakeTimeout bounds the TLS handshake of an implicit-TLS port (or STARTTLS): a
	// few round trips even on a slow mobile link.
	DefaultHandshakeTimeout = 10 * time.Second
	// DefaultShedAfter is how long a connection must have been waiting on its peer before it may
	// be shed; a client between two of its commands waits a round trip, far less.
	DefaultShedAfter = time.Second
	// DefaultIdleTimeout bounds a read or a write when the server sets no IdleTimeout.
	DefaultIdleTimeout = 5 * time.Minute

	maxRefusers   = 32              // refusals answered at once (one may cost a TLS handshake)
	refuseTimeout = 5 * time.Second // for one refusal in all
	logEvery      = 10 * time.Second
)

// Deadlines are the time limits on a connection besides its idle timeout; see Conn. Zero fields
// take the defaults above.
type Deadlines struct {
	CommandTimeout     time.Duration
	MinRate            int // bytes per second
	TransactionTimeout time.Duration
	HandshakeTimeout   time.Duration
	ShedAfter          time.Duration
}

// Options configure a Tracker.
type Options struct {
	// MaxConnections and MaxConnectionsPerIP (per Bucket) cap the connections held; 0 or less is
	// no cap. At a cap a newcomer sheds an idle connection rather than being refused.
	MaxConnections, MaxConnectionsPerIP int
	// IdleTimeout bounds every read and write; 0 is DefaultIdleTimeout.
	IdleTimeout time.Duration
	Deadlines
	// Refusal is the line a refused peer is told (CRLF included), by reason: ErrTooMany,
	// ErrTooManyFromIP. On an implicit-TLS port it is sent through TLS. nil: closed without a word.
	Refusal func(reason error) string
	// Logger gets refusals, sheds and slow peers, in bounded amounts; nil: discarded.
	Logger *slog.Logger
}

// Tracker admits, times and drains the connections of one server, across all its listeners. At
// a cap a newcomer is refused only when no connection can be shed; see admit for the order.
type Tracker struct {
	opts      Options
	log       *slog.Logger
	listeners Listeners
	ctx       context.Context // handshakes; cancelled when Shutdown gives up
	cancel    context.CancelFunc
	refusers  chan struct{}
	refusing  sync.WaitGroup
	handlers  sync.WaitGroup // handle calls of Serve under way

	mu       sync.Mutex
	closing  bool // nothing more is admitted
	draining bool // Shutdown was called
	conns    map[*Conn]struct{}
	byBucket map[netip.Prefix]int
	drained  chan struct{} // made by Shutdown; closed once no connection is left
	nextID   uint64
	events   map[string]*eventCount
}

// NewTracker returns a Tracker with opts, zero values replaced by the defaults.
func NewTracker(opts Options) *Tracker {
	d := &opts.Deadlines
	setDefault(&opts.IdleTimeout, DefaultIdleTimeout)
	setDefault(&d.CommandTimeout, DefaultCommandTimeout)
	setDefault(&d.TransactionTimeout, DefaultTransactionTimeout)
	setDefault(&d.HandshakeTimeout, DefaultHandshakeTimeout)
	setDefault(&d.ShedAfter, DefaultShedAfter)
	if d.MinRate <= 0 {
		d.MinRate = DefaultMinRate
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &Tracker{
		opts:     opts,
		log:      log,
		refusers: make(chan struct{}, maxRefusers),
		conns:    make(map[*Conn]struct{}),
		byBucket: make(map[netip.Prefix]int),
		events:   make(map[string]*eventCount),
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	return t
}

func setDefault(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

// atRate is the time n bytes take at MinRate.
func (t *Tracker) atRate(n int64) time.Duration {
	r := int64(t.opts.MinRate)
	return time.Duration(n/r)*time.Second + time.Duration(n%r)*time.Second/time.Duration(r)
}

// Serve accepts on ln until Shutdown (then it returns ErrClosed) or a lasting Accept error. Each
// connection admitted goes to handle in a goroutine of its own, after the TLS handshake when
// tlsConfig is set (an implicit-TLS port): nc is then the TLS connection over c, else c itself.
// handle owns the connection and must close nc.
func (t *Tracker) Serve(ln net.Listener, tlsConfig *tls.Config, handle func(c *Conn, nc net.Conn)) error {
	return t.listeners.Serve(ln, t.log, func(raw net.Conn) {
		c, err := t.admit(raw, time.Now())
		if err != nil {
			t.refuse(raw, err, tlsConfig)
			return
		}
		// Added in the accept loop, which Shutdown waits for: every Add
		// happens before a Wait that follows Shutdown.
		t.handlers.Add(1)
		go func() {
			defer t.handlers.Done()
			var nc net.Conn = c
			if tlsConfig != nil {
				tc, err := c.ServerTLS(t.ctx, tlsConfig)
				if err != nil {
					t.log.Debug("TLS handshake failed", "remote", c.ip.String(), "err", err)
					c.Close()
					return
				}
				nc = tc
			}
			handle(c, nc)
		}()
	})
}

// Wait waits for every handle call started by Serve to return. Call it after Shutdown (a forced
// one closes the connections, and their handlers then end).
func (t *Tracker) Wait() { t.handlers.Wait() }

// Admit counts raw in as Serve does with what it accepts, for a server with an accept loop of its
// own (or a test): the error is ErrTooMany, ErrTooManyFromIP or ErrShuttingDown, and raw is then
// left to the caller. The Conn must be closed.
func (t *Tracker) Admit(raw net.Conn) (*Conn, error) { return t.admit(raw, time.Now()) }

// admit counts a new connection in. At the per-address cap it is refused: that address is the one
// holding too much. At the total cap it sheds, from the connections that have waited on their
// peer for ShedAfter or more, longest idle first:
//
//  1. a not-authenticated one whose address holds more than its share (the cap divided by the
//     addresses present, the newcomer's included);
//  2. any not-authenticated one;
//  3. an authenticated one whose address holds more than its share.
//
// A newcomer whose own address would go over its share may only shed its own address's
// connections, so a hundred busy addresses cannot churn out the others. Refusal comes only when
// nothing may be shed.
func (t *Tracker) admit(raw net.Conn, now time.Time) (*Conn, error) {
	ip := PeerIP(raw.RemoteAddr())
	b := Bucket(ip)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closing {
		return nil, ErrShuttingDown
	}
	if perIP := t.opts.MaxConnectionsPerIP; perIP > 0 && t.byBucket[b] >= perIP {
		return nil, ErrTooManyFromIP
	}
	if total := t.opts.MaxConnections; total > 0 && len(t.conns) >= total {
		v := t.victimLocked(b, now)
		if v == nil {
			return nil, ErrTooMany
		}
		t.shedLocked(v, now)
	}
	t.nextID++
	c := &Conn{Conn: raw, t: t, id: t.nextID, ip: ip, bucket: b, start: now}
	c.lastActive.Store(now.UnixNano())
	t.conns[c] = struct{}{}
	t.byBucket[b]++
	return c, nil
}

// victimLocked picks the connection to shed for a newcomer from bucket b (see admit), or nil.
func (t *Tracker) victimLocked(b netip.Prefix, now time.Time) *Conn {
	buckets := len(t.byBucket)
	if t.byBucket[b] == 0 {
		buckets++
	}
	share := 1
	if t.opts.MaxConnections > 0 {
		share = max(1, t.opts.MaxConnections/buckets)
	}
	fits := t.byBucket[b]+1 <= share
	cutoff := now.Add(-t.opts.ShedAfter).UnixNano()
	var best *Conn
	bestRank, bestLast := 3, int64(0)
	for c := range t.conns {
		if !fits && c.bucket != b {
			continue
		}
		last := c.lastActive.Load()
		if last > cutoff || !c.reading.Load() {
			continue // talking, or busy on our side
		}
		over := t.byBucket[c.bucket] > share
		var rank int
		switch authed := c.authed.Load(); {
		case !authed && over:
			rank = 0
		case !authed:
			rank = 1
		case over:
			rank = 2
		default:
			continue
		}
		if rank < bestRank || (rank == bestRank && last < bestLast) {
			best, bestRank, bestLast = c, rank, last
		}
	}
	return best
}

// shedLocked ends v at once and frees its slot for the newcomer.
func (t *Tracker) shedLocked(v *Conn, now time.Time) {
	t.removeLocked(v)
	v.Stop(errShed)
	v.Conn.Close()
	idle := now.Sub(time.Unix(0, v.lastActive.Load())).Round(time.Millisecond)
	t.noteLocked("connection shed for a newcomer", now,
		"remote", v.ip.String(), "idle", idle, "authenticated", v.authed.Load())
}

// refuse tells raw why it is refused and closes it, in the background so that Accept goes on: on
// an implicit-TLS port the line costs a handshake. When maxRefusers are under way, raw is just
// closed.
func (t *Tracker) refuse(raw net.Conn, reason error, tlsConfig *tls.Config) {
	t.note("connection refused", "remote", PeerIP(raw.RemoteAddr()).String(), "reason", reason.Error())
	if t.opts.Refusal == nil || errors.Is(reason, ErrShuttingDown) {
		raw.Close()
		return
	}
	select {
	case t.refusers <- struct{}{}:
	default:
		raw.Close()
		return
	}
	t.refusing.Add(1)
	go func() {
		defer func() { <-t.refusers; t.refusing.Done() }()
		defer raw.Close()
		raw.SetDeadline(time.Now().Add(refuseTimeout))
		var w io.Writer = raw
		if tlsConfig != nil {
			tc := tls.Server(raw, tlsConfig)
			if tc.Handshake() != nil {
				return
			}
			w = tc
		}
		io.WriteString(w, t.opts.Refusal(reason))
	}()
}

func (t *Tracker) remove(c *Conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.removeLocked(c)
}

func (t *Tracker) removeLocked(c *Conn) {
	if c.removed {
		return
	}
	c.removed = true
	delete(t.conns, c)
	if t.byBucket[c.bucket]--; t.byBucket[c.bucket] <= 0 {
		delete(t.byBucket, c.bucket)
	}
	if t.drained != nil && len(t.conns) == 0 {
		close(t.drained)
		t.drained = nil
	}
}

// Len reports how many connections are held.
func (t *Tracker) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.conns)
}

// StopAccepting closes every listener and waits for their Serve loops to return; from then on
// nothing is admitted. Shutdown does it first.
func (t *Tracker) StopAccepting() {
	t.mu.Lock()
	t.closing = true
	t.mu.Unlock()
	t.listeners.Close()
	t.listeners.Wait()
}

// Shutdown closes every listener, waits for their Serve loops, then drains: every connection's
// next Read (at once for those blocked in one) returns ErrDraining, except within a transaction,
// which ends first. It returns when no connection is left, or when ctx ends: it then closes
// every connection left and returns ctx's error. Later calls wait the same way.
func (t *Tracker) Shutdown(ctx context.Context) error {
	t.mu.Lock()
	t.closing = true
	if !t.draining {
		t.draining = true
		t.drained = make(chan struct{})
		if len(t.conns) == 0 {
			close(t.drained)
			t.drained = nil
		}
	}
	drained := t.drained
	conns := make([]*Conn, 0, len(t.conns))
	for c := range t.conns {
		conns = append(conns, c)
	}
	t.mu.Unlock()
	t.listeners.Close()
	t.listeners.Wait()
	for _, c := range conns {
		c.drain()
	}
	refused := make(chan struct{})
	go func() { t.refusing.Wait(); close(refused) }()
	if drained == nil {
		drained = closedChan
	}
	for _, ch := range []chan struct{}{drained, refused} {
		select {
		case <-ch:
		case <-ctx.Done():
			t.cancel()
			t.mu.Lock()
			for c := range t.conns {
				c.Conn.Close()
			}
			t.mu.Unlock()
			return ctx.Err()
		}
	}
	t.cancel()
	return nil
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// eventCount bounds the log: one line per kind of event every logEvery, with the number of
// events it stands for; the others go to the debug level.
type eventCount struct {
	last    time.Time
	skipped int
}

func (t *Tracker) note(msg string, attrs ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.noteLocked(msg, time.Now(), attrs...)
}

func (t *Tracker) noteLocked(msg string, now time.Time, attrs ...any) {
	e := t.events[msg]
	if e == nil {
		e = &eventCount{}
		t.events[msg] = e
	}
	if now.Sub(e.last) < logEvery {
		e.skipped++
		t.log.Debug(msg, attrs...)
		return
	}
	if e.skipped > 0 {
		attrs = append(attrs, "more_since_last_line", e.skipped)
	}
	e.last, e.skipped = now, 0
	t.log.Info(msg, attrs...)
}

// noteTimeout logs a connection cut by one of its deadlines; an idle one is routine.
func (t *Tracker) noteTimeout(c *Conn, cause string, now time.Time) {
	if cause == "idle" || cause == "protocol deadline" {
		t.log.Debug("connection timed out", "remote", c.ip.String(), "cause", cause)
		return
	}
	t.note("connection too slow; dropped", "remote", c.ip.String(), "cause", cause,
		"age", now.Sub(c.start).Round(time.Millisecond))
}
