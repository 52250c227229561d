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

	// tracker accepts, admits (shedding idle connections at the cap),
	// times and drains the connections.
	tracker *netconn.Tracker
	closing atomic.Bool
	mu      sync.Mutex
	locked  map[string]struct{} // mailboxes held by a session
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
	deadlines   netconn.Deadlines
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
		locked:       make(map[string]struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.tracker = netconn.NewTracker(netconn.Options{
		MaxConnections: cfg.maxConns, MaxConnectionsPerIP: cfg.maxPerIP,
		IdleTimeout: cfg.idleTimeout, Deadlines: cfg.deadlines,
		Refusal: refusal, Logger: cfg.log,
	})
	return s
}

// refusal is what a connection over the limits is told.
func refusal(reason error) string {
	if errors.Is(reason, netconn.ErrTooManyFromIP) {
		return "-ERR [SYS/TEMP] too many connections from your address\r\n"
	}
	return "-ERR [SYS/TEMP] too many connections\r\n"
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
	var tlsConfig *tls.Config
	if implicitTLS {
		tlsConfig = s.tlsConfig
	}
	err := s.tracker.Serve(ln, tlsConfig, s.handle)
	if errors.Is(err, netconn.ErrClosed) {
		return ErrServerClosed
	}
	return err
}

// handle runs a session on nc (the TLS connection over tc on an
// implicit-TLS port, else tc itself).
func (s *Server) handle(tc *netconn.Conn, nc net.Conn) {
	defer nc.Close()
	newSession(s, tc, nc).serve()
}

// Shutdown stops accepting connections, ends idle sessions (a session in
// the TRANSACTION state is dropped without applying its deletions, as RFC
// 1939 requires for any connection that does not QUIT), lets a command in
// progress finish, and waits for every session to end or ctx to expire, at
// which point it closes the remaining connections.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	// Each session's next read (at once for one waiting on its client)
	// fails; the session sees closing and says goodbye.
	err := s.tracker.Shutdown(ctx)
	s.cancel()
	// Sessions end once their connection is closed; a forced one still
	// releases its maildrop (and flushes its \Seen flags) before this returns.
	s.tracker.Wait()
	return err
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
