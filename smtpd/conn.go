package smtpd

import (
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"postie/netconn"
)

// limitListener admits connections under the total and per-address limits
// and wraps each in a trackedConn. It sits below TLS for ServeTLS.
type limitListener struct {
	net.Listener
	srv         *Server
	implicitTLS bool
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if tc := l.srv.admit(c); tc != nil {
			return tc, nil
		}
		l.srv.refuse(c, l.implicitTLS)
	}
}

// admit registers c, or returns nil when a limit is reached or the server
// is shutting down.
func (s *Server) admit(c net.Conn) *trackedConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return nil
	}
	release, err := s.limits.Acquire(netconn.PeerIP(c.RemoteAddr()))
	if err != nil {
		return nil
	}
	tc := &trackedConn{srv: s, release: release, id: s.nextID.Add(1)}
	tc.Conn = netconn.NewIdleConn(c, s.opts.IdleTimeout, tc.readGate)
	s.conns[tc] = struct{}{}
	return tc
}

func (s *Server) forget(tc *trackedConn) {
	s.mu.Lock()
	delete(s.conns, tc)
	s.mu.Unlock()
	tc.release()
}

// refuse answers "421 4.7.0 too many connections" and closes c, in the
// background so that Accept goes on. On an implicit-TLS listener the reply
// must go through TLS, so it costs a handshake; when too many refusals are
// already under way, c is just closed.
func (s *Server) refuse(c net.Conn, implicitTLS bool) {
	if s.isClosing() {
		c.Close()
		return
	}
	select {
	case s.reject <- struct{}{}:
	default:
		c.Close()
		return
	}
	s.log.Info("connection refused: too many connections", "remote", netconn.PeerIP(c.RemoteAddr()).String())
	s.rejects.Add(1)
	go func() {
		defer func() { <-s.reject; s.rejects.Done() }()
		defer c.Close()
		c.SetDeadline(time.Now().Add(rejectTimeout))
		var w io.Writer = c
		if implicitTLS {
			tlsConn := tls.Server(c, s.opts.TLSConfig)
			if tlsConn.Handshake() != nil {
				return
			}
			w = tlsConn
		}
		io.WriteString(w, "421 4.7.0 "+s.opts.Hostname+" too many connections, try again later\r\n")
	}()
}

// trackedConn is every accepted connection, below TLS. Its Conn is a
// netconn.IdleConn, so a slow but live client (a long DATA) keeps going and
// a silent one is cut after IdleTimeout. It also knows whether a mail
// transaction is under way, so that Shutdown can close idle connections at
// once and busy ones after their transaction.
type trackedConn struct {
	net.Conn
	srv     *Server
	release func() // the connection's slot in srv.limits
	id      uint64

	mu       sync.Mutex
	busy     bool // between MAIL and the end of the transaction
	draining bool // Shutdown: end the connection when not busy
	dead     error

	// refusalLogs counts the refusals logged for this connection, which
	// session.logRefusal bounds. (Added for issue 9 item 7.)
	refusalLogs atomic.Int32
}

func (c *trackedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b) // the IdleConn consults readGate
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		// Sticky: after a timeout in DATA go-smtp would otherwise read the
		// rest of the message as commands (go-smtp issue #196).
		c.mu.Lock()
		if c.dead == nil {
			c.dead = err
		}
		c.mu.Unlock()
	}
	return n, err
}

// readGate is asked by the IdleConn before each read, once the read
// deadline is set; drain and setBusy wake a blocked read by changing what
// it answers and then moving the deadline to now.
func (c *trackedConn) readGate() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead == nil && c.draining && !c.busy {
		// A timeout makes go-smtp answer 421 and close.
		c.dead = os.ErrDeadlineExceeded
	}
	return c.dead
}

func (c *trackedConn) Close() error {
	c.srv.forget(c)
	return c.Conn.Close()
}

// setBusy marks the start (MAIL) or the end (reset) of a transaction.
func (c *trackedConn) setBusy(busy bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.busy = busy
	if !busy && c.draining {
		c.Conn.SetReadDeadline(time.Now()) // wake a blocked Read
	}
}

// drain asks the connection to end as soon as it is not in a transaction.
func (c *trackedConn) drain() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.draining = true
	if !c.busy {
		c.Conn.SetReadDeadline(time.Now())
	}
}

// kill makes the next Read report end of stream, so go-smtp closes the
// connection quietly after the reply it is writing.
func (c *trackedConn) kill() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead == nil {
		c.dead = io.EOF
	}
}

// trackedOf finds our wrapper under a go-smtp connection (which may be a
// *tls.Conn over it).
func trackedOf(c net.Conn) *trackedConn {
	if t, ok := c.(*tls.Conn); ok {
		c = t.NetConn()
	}
	tc, _ := c.(*trackedConn)
	return tc
}

// addrIP is the client's IP address; the zero Addr when there is none (a
// pipe).
func addrIP(a net.Addr) netip.Addr { return netconn.PeerIP(a) }

// limitKey is the unit that per-address rate limits count: the IPv4
// address, or the IPv6 /64, as for connection limits.
func limitKey(ip netip.Addr) string { return netconn.Bucket(ip).String() }
