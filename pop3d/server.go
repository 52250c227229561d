package pop3d

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"postie/netconn"
)

// ErrServerClosed is returned by Serve and ServeTLS after Shutdown.
var ErrServerClosed = errors.New("pop3d: server closed")

// Defaults for the zero values of Options.
const (
	DefaultMaxConnections      = 1000
	DefaultMaxConnectionsPerIP = 20
	// RFC 1939 §3: an autologout timer, if any, must be at least 10 minutes.
	DefaultIdleTimeout = 10 * time.Minute
)

// Server is a POP3 server. Its sessions share one lock table so that a
// mailbox is open in at most one POP3 session at a time.
type Server struct {
	serverConfig
	// trusted reports whether a peer may send a password without TLS.
	// Loopback only; tests replace it to play a remote client.
	trusted func(netip.Addr) bool

	ctx    context.Context // canceled when Shutdown gives up waiting
	cancel context.CancelFunc
	nextID atomic.Uint64

	listeners netconn.Listeners
	limits    *netconn.Limiter
	closing   atomic.Bool
	mu        sync.Mutex
	conns     map[net.Conn]struct{}
	locked    map[string]struct{} // mailboxes held by a session
	sessions  sync.WaitGroup
}

// serverConfig is Options with the store and the authenticator already
// turned into the engine's interfaces.
type serverConfig struct {
	store       mailStore
	auth        authenticator
	tlsConfig   *tls.Config
	hostname    string
	maxConns    int // 0: DefaultMaxConnections; < 0: no limit
	maxPerIP    int // 0: DefaultMaxConnectionsPerIP; < 0: no limit
	idleTimeout time.Duration
	log         *slog.Logger
}

func newServer(cfg serverConfig) *Server {
	if cfg.hostname == "" {
		cfg.hostname = "localhost"
	}
	if cfg.maxConns == 0 {
		cfg.maxConns = DefaultMaxConnections
	}
	if cfg.maxPerIP == 0 {
		cfg.maxPerIP = DefaultMaxConnectionsPerIP
	}
	if cfg.idleTimeout <= 0 {
		cfg.idleTimeout = DefaultIdleTimeout
	}
	if cfg.log == nil {
		cfg.log = slog.Default()
	}
	s := &Server{
		serverConfig: cfg,
		trusted:      func(a netip.Addr) bool { return a.IsLoopback() },
		limits:       netconn.NewLimiter(cfg.maxConns, cfg.maxPerIP),
		conns:        make(map[net.Conn]struct{}),
		locked:       make(map[string]struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

// Serve accepts plaintext POP3 connections on ln (port 110 style); STLS is
// offered when the server has a TLS configuration. It returns
// ErrServerClosed after Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	return s.serve(ln, false)
}

// ServeTLS accepts implicit-TLS POP3 connections on ln (port 995 style).
func (s *Server) ServeTLS(ln net.Listener) error {
	if s.tlsConfig == nil {
		return errors.New("pop3d: ServeTLS without a TLS configuration")
	}
	return s.serve(ln, true)
}

func (s *Server) serve(ln net.Listener, implicitTLS bool) error {
	err := s.listeners.Serve(ln, s.log, func(conn net.Conn) {
		ip := netconn.PeerIP(conn.RemoteAddr())
		release, reason := s.admit(conn, ip)
		if reason != "" {
			s.refuse(conn, reason, implicitTLS)
			return
		}
		go s.handle(conn, ip, implicitTLS, release)
	})
	if errors.Is(err, netconn.ErrClosed) {
		return ErrServerClosed
	}
	return err
}

// admit registers a new connection, or says why it must be refused. The
// connection's slot is held until release.
func (s *Server) admit(conn net.Conn, ip netip.Addr) (release func(), reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		return nil, "server shutting down"
	}
	slot, err := s.limits.Acquire(ip)
	switch {
	case errors.Is(err, netconn.ErrTooManyFromIP):
		return nil, "too many connections from your address"
	case err != nil:
		return nil, "too many connections"
	}
	s.conns[conn] = struct{}{}
	s.sessions.Add(1)
	return func() {
		s.mu.Lock()
		delete(s.conns, conn)
		s.mu.Unlock()
		slot()
		s.sessions.Done()
	}, ""
}

// refuse answers a connection over the limits and closes it. The reply is
// sent in clear even on an implicit-TLS port: a TLS client just sees the
// connection fail, which is all it needs to know.
// refuse answers a connection over the limits and closes it, in the
// accept loop itself: a goroutine per refusal would let a flood of
// connections pile up goroutines, the very thing the limits prevent. The
// one short line goes into an empty socket buffer, so the write does not
// wait; an implicit-TLS client could not read it in plaintext, so it is
// just closed.
func (s *Server) refuse(conn net.Conn, reason string, implicitTLS bool) {
	s.log.Info("pop3: connection refused", "remote", conn.RemoteAddr().String(), "reason", reason)
	if !implicitTLS {
		conn.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		conn.Write([]byte("-ERR [SYS/TEMP] " + reason + "\r\n"))
	}
	conn.Close()
}

func (s *Server) handle(raw net.Conn, ip netip.Addr, implicitTLS bool, release func()) {
	defer release()
	defer raw.Close()
	c := newSession(s, raw, ip)
	c.serve(implicitTLS)
}

// Shutdown stops accepting connections, ends idle sessions (a session in
// the TRANSACTION state is dropped without applying its deletions, as RFC
// 1939 requires for any connection that does not QUIT), lets a command in
// progress finish, and waits for every session to end or ctx to expire, at
// which point it closes the remaining connections.
func (s *Server) Shutdown(ctx context.Context) error {
	s.listeners.Close()
	s.mu.Lock()
	s.closing.Store(true)
	// Wake sessions blocked reading a command. Each connection's read gate checks
	// closing after it sets its own deadline, so none can miss this.
	for conn := range s.conns {
		conn.SetReadDeadline(time.Now())
	}
	s.mu.Unlock()

	done := make(chan struct{})
	go func() {
		s.sessions.Wait()
		close(done)
	}()
	select {
	case <-done:
		s.cancel()
		return nil
	case <-ctx.Done():
		s.cancel()
		s.mu.Lock()
		for conn := range s.conns {
			conn.Close()
		}
		s.mu.Unlock()
		<-done
		return ctx.Err()
	}
}

// lockMailbox takes the POP3 lock of a mailbox (RFC 1939 §8: one session
// per maildrop); it returns false if another session holds it.
func (s *Server) lockMailbox(key string) (unlock func(), ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, held := s.locked[key]; held {
		return nil, false
	}
	s.locked[key] = struct{}{}
	return func() {
		s.mu.Lock()
		delete(s.locked, key)
		s.mu.Unlock()
	}, true
}

// mailboxKey is the lock-table key of a user's INBOX; the store folds
// names to lower case, so the lock does too.
func mailboxKey(a account) string {
	return strings.ToLower(a.local) + "@" + strings.ToLower(a.domain)
}
