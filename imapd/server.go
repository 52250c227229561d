package imapd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
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
	MaxConnections      int   // 0: unlimited; at the cap an idle connection is shed, else BYE
	MaxConnectionsPerIP int   // per client address (IPv6: per /64); 0: unlimited
	// IdleTimeout bounds each read and write; 0: 30 minutes (RFC 3501 §5.4's autologout minimum,
	// which IDLE needs). go-imap's own 30 s per command before login applies as well.
	IdleTimeout time.Duration
	// Deadlines bound a command or literal once begun and the TLS handshake (IMAPS and STARTTLS);
	// zero fields take netconn's defaults (see netconn.Conn).
	Deadlines netconn.Deadlines
	Logger    *slog.Logger
	// HeaderCacheBytes bounds the header-field cache shared by all mailboxes; 0: 64 MiB, <0: none.
	HeaderCacheBytes int64
	// NoSearchIndex turns off the per-folder search index (searchindex.go): SEARCH TEXT and BODY
	// then read every message.
	NoSearchIndex bool
	// Trainer learns from messages users move into and out of Junk or mark $Junk/$NotJunk
	// (train.go); nil: no training.
	Trainer Trainer
	// TrainQueue bounds the training jobs (one per command that trains) waiting for the Trainer; when it
	// is full, training is dropped. 0: 1024.
	TrainQueue int
	// Version is the server's version, sent in ID (RFC 2971); "": "dev".
	Version string
}

const (
	defaultAppendLimit = 64 << 20
	defaultHeaderCache = 64 << 20
	loginTimeout       = 30 * time.Second
	defaultIdleTimeout = 30 * time.Minute
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
	strictQ, laxQ *netconn.Queue
	enginesOn     bool // under mu
	enginesDone   sync.WaitGroup
	// tracker accepts, admits (shedding idle connections at the cap), times and drains the
	// connections; the engines take them from their queues.
	tracker  *netconn.Tracker
	mu       sync.Mutex
	sessions map[*session]struct{}
	closed   bool
	busy     busyCount   // sessions inside a command that changes mail
	train    *trainQueue // nil without a Trainer
	trim     *memTrim    // memtrim.go
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
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = defaultIdleTimeout
	}
	s := &Server{
		opts:     opts,
		log:      opts.Logger,
		sessions: make(map[*session]struct{}),
		strictQ:  netconn.NewQueue(),
		laxQ:     netconn.NewQueue(),
	}
	s.tracker = netconn.NewTracker(netconn.Options{
		MaxConnections: opts.MaxConnections, MaxConnectionsPerIP: opts.MaxConnectionsPerIP,
		IdleTimeout: opts.IdleTimeout, Deadlines: opts.Deadlines,
		Refusal: func(error) string { return "* BYE [UNAVAILABLE] Too many connections\r\n" },
		Logger:  s.log,
	})
	s.cache = newFieldCache(max(opts.HeaderCacheBytes, 0))
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.train = newTrainQueue(s.ctx, opts.Trainer, opts.TrainQueue, s.log)
	s.trim = newMemTrim(s.ctx, nil)
	s.boxes = newRegistry(s)
	caps := imap.CapSet{}
	for _, c := range []imap.Cap{
		imap.CapIMAP4rev1, imap.CapIMAP4rev2, imap.CapNamespace, imap.CapUIDPlus, imap.CapESearch,
		imap.CapSearchRes, imap.CapListExtended, imap.CapListStatus, imap.CapMove, imap.CapStatusSize,
		imap.CapChildren, imap.CapSpecialUse, imap.CapCreateSpecialUse, imap.CapLiteralPlus,
		imap.CapBinary, imap.CapUnselect, imap.CapIdle, imap.CapAppendLimit,
		imap.CapCondStore, imap.CapQResync, // condstore.go
		imap.CapID, imap.CapQuota, "QUOTA=RES-STORAGE", // id.go, quota.go
		imapserver.CapCompressDeflate, imap.CapMultiAppend, imap.CapCatenate, // compress: the engine; appendtx.go
		imap.CapNotify, imap.CapPreview, // notify.go, preview.go
	} {
		caps[c] = struct{}{}
	}
	addSortCaps(caps)
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
	s.startEngines()
	// The handshake of an implicit-TLS port is ours (handle): go-imap must see the *tls.Conn, over
	// the write-gathering serverConn.
	err := s.tracker.Serve(ln, nil, func(tc *netconn.Conn, _ net.Conn) { s.handle(tc, implicitTLS) })
	if errors.Is(err, netconn.ErrClosed) {
		return ErrServerClosed
	}
	return fmt.Errorf("imapd: accept: %w", err)
}

// startEngines starts the engines' Serve loops once, unless Shutdown has begun.
func (s *Server) startEngines() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed && !s.enginesOn {
		// Under mu, so that it happens before Shutdown waits for them.
		s.enginesOn = true
		s.enginesDone.Add(2)
		go func() { defer s.enginesDone.Done(); s.strict.Serve(s.strictQ) }()
		go func() { defer s.enginesDone.Done(); s.lax.Serve(s.laxQ) }()
	}
}

// dispatch admits a connection accepted elsewhere (a test's pipe) and hands it on as Serve does.
func (s *Server) dispatch(c net.Conn, implicitTLS bool) {
	tc, err := s.tracker.Admit(c)
	if err != nil {
		c.Close()
		return
	}
	s.startEngines()
	go s.handle(tc, implicitTLS)
}

// handle runs the TLS handshake of an implicit-TLS port (within the tracker's deadline) and hands
// the connection to an engine.
func (s *Server) handle(tc *netconn.Conn, implicitTLS bool) {
	var conn net.Conn = &serverConn{Conn: tc}
	q := s.strictQ
	switch {
	case implicitTLS:
		tlsConn := tls.Server(conn, s.opts.TLSConfig)
		if err := tc.Handshake(s.ctx, tlsConn); err != nil {
			s.log.Debug("imap: TLS handshake failed", "remote", tc.IP(), "err", err)
			conn.Close()
			return
		}
		conn = tlsConn
	case tc.IP().IsLoopback():
		q = s.laxQ // RFC 8314 leaves loopback alone: a local client may log in without TLS
	}
	if !q.Push(conn) {
		conn.Close()
	}
}

// authenticated tells the tracker that the connection under c logged in: it is shed last.
func (s *Server) authenticated(c *imapserver.Conn) {
	nc := c.NetConn()
	if t, ok := nc.(*tls.Conn); ok {
		nc = t.NetConn()
	}
	// After STARTTLS with plaintext pipelined behind it, go-imap puts a wrapper of its own here;
	// such a connection just stays "not authenticated" for shedding.
	if sc, ok := nc.(*serverConn); ok {
		if tc, ok := sc.Conn.(*netconn.Conn); ok {
			tc.SetAuthenticated()
		}
	}
}

// Shutdown stops accepting, lets commands that change mail finish (until ctx ends), says BYE to every
// client and closes all connections.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.tracker.StopAccepting()
	err := s.busy.wait(ctx)
	s.cancel()
	s.train.wait(ctx) // training still queued is dropped; a Train under way sees ctx end
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
	// Whatever is left (a handshake, a greeting) is drained, or closed when ctx ends.
	if e := s.tracker.Shutdown(ctx); err == nil {
		err = e
	}
	// The engines' Serve loops end with their queues; only then is their Close (which closes any
	// connection left) free of a race with a Serve that is still starting.
	s.strictQ.Close()
	s.laxQ.Close()
	s.enginesDone.Wait()
	s.strict.Close()
	s.lax.Close()
	s.boxes.close()
	return err
}

// busyCount counts the sessions inside a command that changes mail; Shutdown waits for none.
type busyCount struct {
	mu   sync.Mutex
	n    int64
	idle chan struct{} // closed when n drops to 0; nil when nobody waits
}

func (b *busyCount) Add(delta int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n += delta
	if b.n == 0 && b.idle != nil {
		close(b.idle)
		b.idle = nil
	}
}

// wait returns when no command is busy, or ctx's error when it ends first.
func (b *busyCount) wait(ctx context.Context) error {
	b.mu.Lock()
	if b.n == 0 {
		b.mu.Unlock()
		return nil
	}
	if b.idle == nil {
		b.idle = make(chan struct{})
	}
	idle := b.idle
	b.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// serverConn is the server's side of a connection, below TLS. It gives its connection slot back on
// Close, and it gathers writes: go-imap flushes after every response line, so FETCH 1:* would cost a
// write(2) per message. Gathered bytes go out when the connection turns to reading (the response is
// complete), when 32 KiB are waiting, or at once while a read is pending (IDLE updates). Write
// deadlines are ours: one per actual write.
type serverConn struct {
	net.Conn // the tracker's *netconn.Conn

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
	return c.Conn.Close()
}

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
