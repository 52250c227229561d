// Package imapd is Postie's IMAP server: go-imap v2's protocol engine (imapserver) with our own
// Session over the maildir store, serving IMAP4rev1 and IMAP4rev2 to mail clients.
package imapd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"postie/accounts"
	"postie/maildir"
	"postie/netconn"
)

// ErrServerClosed is returned by Serve and ServeTLS after Shutdown.
var ErrServerClosed = errors.New("imapd: server closed")

// Authenticator checks a login; accounts.Authenticator satisfies it. A bad login returns an error
// that errors.Is accounts.ErrAuthFailed.
type Authenticator interface {
	Login(ctx context.Context, remoteIP, service, username, password string) (*accounts.User, error)
}

// Options configure a Server. Store and Auth are required.
type Options struct {
	Store               *maildir.Store
	Auth                Authenticator
	TLSConfig           *tls.Config // nil: no STARTTLS and no ServeTLS
	Hostname            string
	AppendLimit         int64 // largest APPEND in bytes; 0: 64 MiB
	MaxConnections      int   // 0: unlimited
	MaxConnectionsPerIP int   // per client address (IPv6: per /64); 0: unlimited
	Logger              *slog.Logger
	// HeaderCacheBytes bounds the header-field cache shared by all mailboxes; 0: 64 MiB, <0: none.
	HeaderCacheBytes int64
}

const (
	defaultAppendLimit = 64 << 20
	defaultHeaderCache = 64 << 20
	loginTimeout       = 30 * time.Second
	greetingTimeout    = 30 * time.Second
)

// Server is an IMAP server. Create it with New.
type Server struct {
	opts  Options
	log   *slog.Logger
	cache *fieldCache
	boxes *registry

	ctx    context.Context // cancelled by Shutdown: ends logins and IDLE refreshers
	cancel context.CancelFunc

	// Two protocol engines: go-imap decides "may this connection log in without TLS" per server
	// (InsecureAuth), so plaintext connections from loopback go to lax, all others to strict.
	strict, lax   *imapserver.Server
	strictQ, laxQ *connQueue
	startEngines  sync.Once
	enginesDone   sync.WaitGroup
	listeners     netconn.Listeners
	limits        *netconn.Limiter
	mu            sync.Mutex
	sessions      map[*session]struct{}
	closed        bool
	busy          atomic.Int64 // sessions inside a command that changes mail
}

// New returns a server; it listens only when Serve or ServeTLS is called.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.AppendLimit <= 0 {
		opts.AppendLimit = defaultAppendLimit
	}
	if opts.HeaderCacheBytes == 0 {
		opts.HeaderCacheBytes = defaultHeaderCache
	}
	s := &Server{
		opts:     opts,
		log:      opts.Logger,
		limits:   netconn.NewLimiter(opts.MaxConnections, opts.MaxConnectionsPerIP),
		sessions: make(map[*session]struct{}),
		strictQ:  newConnQueue(),
		laxQ:     newConnQueue(),
	}
	s.cache = newFieldCache(max(opts.HeaderCacheBytes, 0))
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.boxes = newRegistry(s)
	caps := imap.CapSet{}
	for _, c := range []imap.Cap{
		imap.CapIMAP4rev1, imap.CapIMAP4rev2, imap.CapNamespace, imap.CapUIDPlus, imap.CapESearch,
		imap.CapSearchRes, imap.CapListExtended, imap.CapListStatus, imap.CapMove, imap.CapStatusSize,
		imap.CapChildren, imap.CapSpecialUse, imap.CapCreateSpecialUse, imap.CapLiteralPlus,
		imap.CapBinary, imap.CapUnselect, imap.CapIdle, imap.CapAppendLimit,
	} {
		caps[c] = struct{}{}
	}
	logger := engineLogger{s.log}
	newEngine := func(insecure bool) *imapserver.Server {
		return imapserver.New(&imapserver.Options{
			NewSession:   s.newSession,
			Caps:         caps,
			Logger:       logger,
			TLSConfig:    opts.TLSConfig,
			InsecureAuth: insecure,
		})
	}
	s.strict, s.lax = newEngine(false), newEngine(true)
	return s
}

// Serve accepts plaintext connections (port 143 style, STARTTLS offered when TLSConfig is set).
func (s *Server) Serve(ln net.Listener) error { return s.serve(ln, false) }

// ServeTLS accepts implicit-TLS connections (port 993 style).
func (s *Server) ServeTLS(ln net.Listener) error {
	if s.opts.TLSConfig == nil {
		return errors.New("imapd: ServeTLS needs Options.TLSConfig")
	}
	return s.serve(ln, true)
}

func (s *Server) serve(ln net.Listener, implicitTLS bool) error {
	err := s.listeners.Serve(ln, s.log, func(c net.Conn) { s.dispatch(c, implicitTLS) })
	if errors.Is(err, netconn.ErrClosed) {
		return ErrServerClosed
	}
	return fmt.Errorf("imapd: accept: %w", err)
}

// dispatch applies the connection limits and hands the connection to an engine.
func (s *Server) dispatch(c net.Conn, implicitTLS bool) {
	ip := netconn.PeerIP(c.RemoteAddr())
	lc, ok := s.admit(c, ip)
	if !ok {
		s.log.Warn("imap connection refused: too many connections", "remote_ip", ip)
		if !implicitTLS {
			c.SetWriteDeadline(time.Now().Add(time.Second))
			io.WriteString(c, "* BYE Too many connections\r\n")
		}
		c.Close()
		return
	}
	// Until go-imap sets its own, a deadline for the TLS handshake and the first command: a client
	// that connects and says nothing must not hold a slot forever.
	lc.Conn.SetReadDeadline(time.Now().Add(greetingTimeout))
	// Started here, inside an accept loop, so that Shutdown (which waits for those loops before it
	// waits for the engines) cannot miss them.
	s.startEngines.Do(func() {
		s.enginesDone.Add(2)
		go func() { defer s.enginesDone.Done(); s.strict.Serve(s.strictQ) }()
		go func() { defer s.enginesDone.Done(); s.lax.Serve(s.laxQ) }()
	})
	var conn net.Conn = lc
	q := s.strictQ
	switch {
	case implicitTLS:
		conn = tls.Server(lc, s.opts.TLSConfig)
	case ip.IsLoopback():
		q = s.laxQ // RFC 8314 leaves loopback alone: a local client may log in without TLS
	}
	if !q.push(conn) {
		conn.Close()
	}
}

// admit counts a connection against the limits; the returned conn gives its slot back when closed.
func (s *Server) admit(c net.Conn, ip netip.Addr) (*serverConn, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, false
	}
	release, err := s.limits.Acquire(ip)
	if err != nil {
		return nil, false
	}
	return &serverConn{Conn: c, release: release}, true
}

// Shutdown stops accepting, lets commands that change mail finish (until ctx ends), says BYE to every
// client and closes all connections.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.listeners.Close()
	s.listeners.Wait()
	s.strictQ.close()
	s.laxQ.close()

	var err error
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for s.busy.Load() > 0 && err == nil {
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-tick.C:
		}
	}
	s.cancel()
	s.mu.Lock()
	sessions := make([]*session, 0, len(s.sessions))
	for sess := range s.sessions {
		sessions = append(sessions, sess)
	}
	s.mu.Unlock()
	// BYE waits for a response being written; a stuck client must not hold Shutdown past ctx.
	var byes sync.WaitGroup
	for _, sess := range sessions {
		byes.Add(1)
		go func() {
			defer byes.Done()
			sess.conn.Bye("Server shutting down")
		}()
	}
	said := make(chan struct{})
	go func() { byes.Wait(); close(said) }()
	select {
	case <-said:
	case <-ctx.Done():
		err = ctx.Err()
	}
	// The engines' Serve loops end with their queues; only then is their Close (which closes any
	// connection left) free of a race with a Serve that is still starting.
	s.enginesDone.Wait()
	s.strict.Close()
	s.lax.Close()
	s.boxes.close()
	return err
}

// serverConn is the server's side of a connection, below TLS. It gives its connection slot back on
// Close, and it gathers writes: go-imap flushes after every response line, so FETCH 1:* would cost a
// write(2) per message. Gathered bytes go out when the connection turns to reading (the response is
// complete), when 32 KiB are waiting, or at once while a read is pending (IDLE updates). Write
// deadlines are ours: one per actual write.
type serverConn struct {
	net.Conn
	release func() // the connection's slot in Server.limits

	mu      sync.Mutex
	buf     *[]byte
	reading bool
	werr    error
}

const (
	writeGather  = 32 << 10
	writeTimeout = time.Minute
)

func (c *serverConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	err := c.flushLocked()
	c.reading = err == nil
	c.mu.Unlock()
	if err != nil {
		return 0, err
	}
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.reading = false
	c.mu.Unlock()
	return n, err
}

func (c *serverConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.werr != nil {
		return 0, c.werr
	}
	if c.reading || len(p) >= writeGather {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
		return c.writeLocked(p)
	}
	if c.buf != nil && len(*c.buf)+len(p) > writeGather {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
	}
	if c.buf == nil {
		c.buf = gatherPool.Get().(*[]byte)
	}
	*c.buf = append(*c.buf, p...)
	return len(p), nil
}

// gatherPool lends write buffers, so a connection waiting in IDLE holds none.
var gatherPool = sync.Pool{New: func() any { b := make([]byte, 0, writeGather); return &b }}

func (c *serverConn) flushLocked() error {
	if c.werr != nil {
		return c.werr
	}
	if c.buf == nil {
		return nil
	}
	_, err := c.writeLocked(*c.buf)
	*c.buf = (*c.buf)[:0]
	gatherPool.Put(c.buf)
	c.buf = nil
	return err
}

func (c *serverConn) writeLocked(p []byte) (int, error) {
	c.Conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	n, err := c.Conn.Write(p)
	if err != nil {
		c.werr = err
	}
	return n, err
}

// SetWriteDeadline is ignored: writes are gathered, and each real write gets its own deadline.
func (c *serverConn) SetWriteDeadline(time.Time) error { return nil }

func (c *serverConn) SetDeadline(t time.Time) error { return c.Conn.SetReadDeadline(t) }

func (c *serverConn) Close() error {
	c.mu.Lock()
	if c.werr == nil && c.buf != nil {
		c.Conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		c.Conn.Write(*c.buf)
		c.werr = net.ErrClosed
	}
	c.mu.Unlock()
	err := c.Conn.Close()
	c.release()
	return err
}

// connQueue is a net.Listener fed by our accept loops, so that each engine sees only the
// connections meant for it.
type connQueue struct {
	ch     chan net.Conn
	done   chan struct{}
	closer sync.Once
}

func newConnQueue() *connQueue {
	return &connQueue{ch: make(chan net.Conn), done: make(chan struct{})}
}

func (q *connQueue) push(c net.Conn) bool {
	select {
	case q.ch <- c:
		return true
	case <-q.done:
		return false
	}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) close() { q.closer.Do(func() { close(q.done) }) }

func (q *connQueue) Close() error { q.close(); return nil }

func (q *connQueue) Addr() net.Addr { return queueAddr{} }

type queueAddr struct{}

func (queueAddr) Network() string { return "imapd" }
func (queueAddr) String() string  { return "imapd" }

// remoteIP is the client's address as the Authenticator and the logs take it.
func remoteIP(a net.Addr) string { return netconn.PeerIP(a).String() }

// engineLogger sends go-imap's log lines to slog. Its routine lines (a client that went away) are
// debug noise; panics recovered by the engine are errors.
type engineLogger struct{ l *slog.Logger }

func (e engineLogger) Printf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if strings.HasPrefix(msg, "panic") {
		e.l.Error("imap engine", "msg", msg)
		return
	}
	e.l.Debug("imap engine", "msg", msg)
}
