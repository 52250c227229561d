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
	store       mailStore
	auth        authenticator
	tlsConfig   *tls.Config
	hostname    string
	maxConns    int
	maxPerIP    int
	idleTimeout time.Duration
	log         *slog.Logger
	// trusted reports whether a peer may send a password without TLS.
	// Loopback only; tests replace it to play a remote client.
	trusted func(netip.Addr) bool

	ctx    context.Context // canceled when Shutdown gives up waiting
	cancel context.CancelFunc
	nextID atomic.Uint64

	closing   atomic.Bool
	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{}
	perIP     map[netip.Addr]int
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
	maxConns    int
	maxPerIP    int
	idleTimeout time.Duration
	log         *slog.Logger
}

func newServer(cfg serverConfig) *Server {
	s := &Server{
		store:       cfg.store,
		auth:        cfg.auth,
		tlsConfig:   cfg.tlsConfig,
		hostname:    cfg.hostname,
		maxConns:    cfg.maxConns,
		maxPerIP:    cfg.maxPerIP,
		idleTimeout: cfg.idleTimeout,
		log:         cfg.log,
		trusted:     func(a netip.Addr) bool { return a.IsLoopback() },
		listeners:   make(map[net.Listener]struct{}),
		conns:       make(map[net.Conn]struct{}),
		perIP:       make(map[netip.Addr]int),
		locked:      make(map[string]struct{}),
	}
	if s.hostname == "" {
		s.hostname = "localhost"
	}
	if s.maxConns == 0 {
		s.maxConns = DefaultMaxConnections
	}
	if s.maxPerIP == 0 {
		s.maxPerIP = DefaultMaxConnectionsPerIP
	}
	if s.idleTimeout <= 0 {
		s.idleTimeout = DefaultIdleTimeout
	}
	if s.log == nil {
		s.log = slog.Default()
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
	if !s.trackListener(ln, true) {
		return ErrServerClosed
	}
	defer s.trackListener(ln, false)
	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// Out of file descriptors and the like: wait, as net/http does.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("pop3: accept failed; retrying", "err", err, "delay", backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		ip := peerIP(conn.RemoteAddr())
		if reason := s.admit(conn, ip); reason != "" {
			go s.refuse(conn, reason)
			continue
		}
		go s.handle(conn, ip, implicitTLS)
	}
}

func (s *Server) trackListener(ln net.Listener, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		if s.closing.Load() {
			return false
		}
		s.listeners[ln] = struct{}{}
	} else {
		delete(s.listeners, ln)
	}
	return true
}

// admit registers a new connection, or says why it must be refused.
func (s *Server) admit(conn net.Conn, ip netip.Addr) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closing.Load():
		return "server shutting down"
	case s.maxConns > 0 && len(s.conns) >= s.maxConns:
		return "too many connections"
	case s.maxPerIP > 0 && s.perIP[ip] >= s.maxPerIP:
		return "too many connections from your address"
	}
	s.conns[conn] = struct{}{}
	s.perIP[ip]++
	s.sessions.Add(1)
	return ""
}

func (s *Server) release(conn net.Conn, ip netip.Addr) {
	s.mu.Lock()
	delete(s.conns, conn)
	if s.perIP[ip]--; s.perIP[ip] <= 0 {
		delete(s.perIP, ip)
	}
	s.mu.Unlock()
	s.sessions.Done()
}

// refuse answers a connection over the limits and closes it. The reply is
// sent in clear even on an implicit-TLS port: a TLS client just sees the
// connection fail, which is all it needs to know.
func (s *Server) refuse(conn net.Conn, reason string) {
	s.log.Info("pop3: connection refused", "remote", conn.RemoteAddr().String(), "reason", reason)
	conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	conn.Write([]byte("-ERR [SYS/TEMP] " + reason + "\r\n"))
	conn.Close()
}

func (s *Server) handle(raw net.Conn, ip netip.Addr, implicitTLS bool) {
	defer s.release(raw, ip)
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
	s.mu.Lock()
	s.closing.Store(true)
	for ln := range s.listeners {
		ln.Close()
	}
	// Wake sessions blocked reading a command. timeoutConn.Read checks
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

func peerIP(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(ta.IP); ok {
			return ip.Unmap()
		}
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// mailboxKey is the lock-table key of a user's INBOX; the store folds
// names to lower case, so the lock does too.
func mailboxKey(a account) string {
	return strings.ToLower(a.local) + "@" + strings.ToLower(a.domain)
}

// timeoutConn puts an idle timeout on every read and write, and makes
// reads fail once the server is shutting down.
type timeoutConn struct {
	net.Conn
	timeout time.Duration
	closing *atomic.Bool
}

func (c *timeoutConn) Read(p []byte) (int, error) {
	c.Conn.SetReadDeadline(time.Now().Add(c.timeout))
	if c.closing.Load() {
		return 0, ErrServerClosed
	}
	return c.Conn.Read(p)
}

func (c *timeoutConn) Write(p []byte) (int, error) {
	c.Conn.SetWriteDeadline(time.Now().Add(c.timeout))
	return c.Conn.Write(p)
}
