package netconn

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// timeoutError is a net.Error that reports a timeout, so that protocol engines (go-smtp answers
// "421 4.4.2 Idle timeout") treat a connection ended by the Tracker like one whose deadline passed.
type timeoutError struct{ msg string }

func (e *timeoutError) Error() string   { return e.msg }
func (e *timeoutError) Timeout() bool   { return true }
func (e *timeoutError) Temporary() bool { return true }

var (
	// ErrDraining ends the reads of a connection that Shutdown drains.
	ErrDraining net.Error = &timeoutError{"netconn: server shutting down"}
	// errShed ends a connection that was shed to make room for a newcomer.
	errShed net.Error = &timeoutError{"netconn: connection shed for a newcomer"}
)

// Conn is one connection admitted by a Tracker, below TLS. Every Read and Write sets its own
// deadline, the earliest of:
//
//   - IdleTimeout from now (a silent peer);
//   - once the peer has started sending after our last write (a command, a DATA, a literal, a TLS
//     flight), CommandTimeout plus one second per MinRate bytes received since, counted from that
//     first byte, and CommandTimeout from now (a stall inside it). Our next write (the reply) ends
//     the command. This bounds a slowloris without knowing the protocol: whatever it sends, the
//     bytes must come at MinRate on average after a grace of CommandTimeout;
//   - within a transaction (BeginTransaction), TransactionTimeout plus one second per MinRate bytes
//     received since it began;
//   - before the TLS handshake of an implicit-TLS port is done, HandshakeTimeout from accept;
//   - the deadline the protocol engine set itself with SetReadDeadline (go-imap's 30 s per command
//     before login, for instance), so the Tracker never lengthens one.
//
// A Write may take CommandTimeout plus one second per MinRate bytes written (a peer that stops
// reading is cut too), and never longer than IdleTimeout or the engine's own write deadline.
//
// A read that times out stays timed out: go-smtp would otherwise read the rest of an interrupted
// DATA as commands (go-smtp issue #196).
type Conn struct {
	net.Conn // the accepted connection
	t        *Tracker
	id       uint64
	ip       netip.Addr
	bucket   netip.Prefix
	start    time.Time

	// Read without c.mu by the Tracker when it looks for a connection to shed.
	reading    atomic.Bool  // blocked in Read: waiting for the peer
	lastActive atomic.Int64 // UnixNano of the last byte in either direction
	authed     atomic.Bool
	logLines   atomic.Int32

	mu             sync.Mutex
	winStart       time.Time // first byte received since our last write; zero: none
	winBytes       int64
	txStart        time.Time // BeginTransaction; zero: none
	txBytes        int64
	handshakeUntil time.Time
	userRead       time.Time // the engine's own deadlines
	userWrite      time.Time
	busy           bool // in a transaction: Shutdown lets it finish
	draining       bool
	stop           error     // sticky: every later Read returns it
	cause          string    // what the deadline of the Read under way stands for
	readDL         time.Time // the deadline of the Read under way
	removed        bool      // guarded by t.mu: no longer counted
}

// ID is the connection's number, unique within its Tracker, for logs.
func (c *Conn) ID() uint64 { return c.id }

// IP is the peer's address (the zero Addr for a peer without one).
func (c *Conn) IP() netip.Addr { return c.ip }

// LogCounter is a counter of log lines about this connection, for servers that bound them per
// connection; it starts at 0 and lives as long as the connection (across STARTTLS).
func (c *Conn) LogCounter() *atomic.Int32 { return &c.logLines }

// SetAuthenticated records that the peer logged in. A connection that has is shed only after
// every idle one that has not, and only when its address holds more than its share.
func (c *Conn) SetAuthenticated() { c.authed.Store(true) }

// Authenticated reports whether SetAuthenticated was called.
func (c *Conn) Authenticated() bool { return c.authed.Load() }

// BeginTransaction marks the start of a unit of work (SMTP: MAIL to the end of DATA) that
// Shutdown lets finish and that must end within TransactionTimeout plus its bytes at MinRate.
// Calling it again restarts neither clock.
func (c *Conn) BeginTransaction() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.busy {
		c.busy, c.txStart, c.txBytes = true, time.Now(), 0
	}
}

// EndTransaction ends the transaction; a connection that Shutdown drains ends at its next read.
func (c *Conn) EndTransaction() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.busy, c.txStart, c.txBytes = false, time.Time{}, 0
	if c.draining {
		c.Conn.SetReadDeadline(time.Now()) // wake a blocked Read
	}
}

// Stopped reports whether reading has ended for good (a deadline passed,
// Stop, or a drain). An engine that reads lines through bufio gets the part
// of a line that came before the end as if it were whole: a server asks
// this before acting on a command, and acts on none once it is true.
func (c *Conn) Stopped() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stop != nil
}

// Stop makes every later Read return err (an engine that writes its last reply and then reads
// sees err and ends the connection). The first Stop wins.
func (c *Conn) Stop(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stop == nil {
		c.stop = err
	}
}

// drain asks the connection to end as soon as it is not in a transaction: a blocked Read is
// woken. The gate is c.stop, checked under c.mu after the deadline is set, so no wake-up is lost.
func (c *Conn) drain() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.draining = true
	if !c.busy {
		c.Conn.SetReadDeadline(time.Now())
	}
}

// ServerTLS runs the server side of a TLS handshake over c (an implicit-TLS port, or after
// STARTTLS) within HandshakeTimeout, and returns the TLS connection. On failure c is left open.
func (c *Conn) ServerTLS(ctx context.Context, cfg *tls.Config) (*tls.Conn, error) {
	tc := tls.Server(c, cfg)
	if err := c.Handshake(ctx, tc); err != nil {
		return nil, err
	}
	return tc, nil
}

// Handshake runs tc's handshake within HandshakeTimeout; tc must be a TLS connection over c,
// directly or through wrappers of the server's own.
func (c *Conn) Handshake(ctx context.Context, tc *tls.Conn) error {
	c.mu.Lock()
	c.handshakeUntil = time.Now().Add(c.t.opts.HandshakeTimeout)
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.handshakeUntil = time.Time{}
		c.mu.Unlock()
	}()
	return tc.HandshakeContext(ctx)
}

func (c *Conn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if c.stop == nil && c.draining && !c.busy {
		c.stop = ErrDraining
	}
	if err := c.stop; err != nil {
		c.mu.Unlock()
		return 0, err
	}
	dl, why := c.readDeadlineLocked(time.Now())
	c.Conn.SetReadDeadline(dl)
	c.cause, c.readDL = why, dl
	c.reading.Store(true)
	c.mu.Unlock()

	n, err := c.Conn.Read(p)

	c.reading.Store(false)
	now := time.Now()
	c.mu.Lock()
	if n > 0 {
		if c.winStart.IsZero() {
			c.winStart = now
		}
		c.winBytes += int64(n)
		if !c.txStart.IsZero() {
			c.txBytes += int64(n)
		}
		c.lastActive.Store(now.UnixNano())
	}
	cause := ""
	if err != nil && isTimeout(err) && c.stop == nil {
		c.stop = err
		if !c.draining {
			cause = c.cause
		}
	}
	c.mu.Unlock()
	if cause != "" {
		c.t.noteTimeout(c, cause, now) // after c.mu: the Tracker's lock comes first
	}
	return n, err
}

func (c *Conn) Write(p []byte) (int, error) {
	c.mu.Lock()
	now := time.Now()
	dl := earliest(now.Add(c.t.opts.IdleTimeout), now.Add(c.t.opts.CommandTimeout+c.t.atRate(int64(len(p)))))
	dl = earliest(earliest(dl, c.userWrite), c.handshakeUntil)
	c.Conn.SetWriteDeadline(dl)
	c.mu.Unlock()

	n, err := c.Conn.Write(p)

	if n > 0 {
		c.mu.Lock()
		c.winStart, c.winBytes = time.Time{}, 0 // our reply: the peer's command is over
		c.mu.Unlock()
		c.lastActive.Store(time.Now().UnixNano())
	}
	return n, err
}

// SetReadDeadline records the engine's own read deadline; each Read uses it when it comes first.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.userRead = t
	if c.reading.Load() {
		// A Read under way keeps the deadline it was given unless this one is earlier
		// (recomputing from now would push the idle and command deadlines back). dl is
		// never zero: the idle timeout bounds it.
		if dl, why := c.readDeadlineLocked(time.Now()); dl.Before(c.readDL) {
			c.cause, c.readDL = why, dl
			return c.Conn.SetReadDeadline(dl)
		}
	}
	return nil
}

// SetWriteDeadline records the engine's own write deadline; each Write uses it when it comes first.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.userWrite = t
	return nil
}

func (c *Conn) SetDeadline(t time.Time) error {
	c.SetWriteDeadline(t)
	return c.SetReadDeadline(t)
}

// Close closes the connection and gives its slot back; it may be called more than once.
func (c *Conn) Close() error {
	c.t.remove(c)
	return c.Conn.Close()
}

// NetConn returns the accepted connection, as tls.Conn's NetConn does.
func (c *Conn) NetConn() net.Conn { return c.Conn }

// readDeadlineLocked is the deadline of the next Read, and what it stands for (for the log).
func (c *Conn) readDeadlineLocked(now time.Time) (time.Time, string) {
	o := &c.t.opts
	dl, cause := now.Add(o.IdleTimeout), "idle"
	take := func(t time.Time, why string) {
		if !t.IsZero() && t.Before(dl) {
			dl, cause = t, why
		}
	}
	if !c.winStart.IsZero() {
		take(c.winStart.Add(o.CommandTimeout+c.t.atRate(c.winBytes)), "command too slow")
		take(now.Add(o.CommandTimeout), "stalled inside a command")
	}
	if !c.txStart.IsZero() {
		take(c.txStart.Add(o.TransactionTimeout+c.t.atRate(c.txBytes)), "transaction too slow")
	}
	take(c.handshakeUntil, "TLS handshake too slow")
	take(c.userRead, "protocol deadline")
	return dl, cause
}

func earliest(a, b time.Time) time.Time {
	if b.IsZero() || (!a.IsZero() && a.Before(b)) {
		return a
	}
	return b
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
