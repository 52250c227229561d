package smtpd

import (
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"sync/atomic"

	"postie/netconn"
)

// trackedConn is what a session needs of its connection's netconn.Conn
// (below TLS): the connection number for the log, and the hooks that tell
// the tracker about transactions (Shutdown lets them finish; they have a
// deadline of their own) and logins (an authenticated connection is shed
// last).
type trackedConn struct {
	*netconn.Conn
	id uint64
	// refusalLogs counts the refusals logged for this connection, which
	// session.logRefusal bounds.
	refusalLogs *atomic.Int32
}

// setBusy marks the start (MAIL) or the end (reset) of a transaction.
func (c *trackedConn) setBusy(busy bool) {
	if busy {
		c.BeginTransaction()
	} else {
		c.EndTransaction()
	}
}

// kill makes the next Read report end of stream, so go-smtp closes the
// connection quietly after the reply it is writing.
func (c *trackedConn) kill() { c.Stop(io.EOF) }

// authenticated records a successful AUTH.
func (c *trackedConn) authenticated() { c.SetAuthenticated() }

// trackedOf finds the tracker's connection under a go-smtp connection
// (which may be a *tls.Conn over it); nil for one we did not accept.
func trackedOf(c net.Conn) *trackedConn {
	if t, ok := c.(*tls.Conn); ok {
		c = t.NetConn()
	}
	if nc, ok := c.(*netconn.Conn); ok {
		return &trackedConn{Conn: nc, id: nc.ID(), refusalLogs: nc.LogCounter()}
	}
	return nil
}

// startTLS runs the server side of the handshake after STARTTLS within the
// tracker's handshake deadline (go-smtp's Server.TLSHandshake).
func (s *Server) startTLS(c net.Conn, cfg *tls.Config) (*tls.Conn, error) {
	if nc, ok := c.(*netconn.Conn); ok {
		return nc.ServerTLS(s.ctx, cfg)
	}
	tc := tls.Server(c, cfg)
	return tc, tc.HandshakeContext(s.ctx)
}

// addrIP is the client's IP address; the zero Addr when there is none (a
// pipe).
func addrIP(a net.Addr) netip.Addr { return netconn.PeerIP(a) }

// limitKey is the unit that per-address rate limits count: the IPv4
// address, or the IPv6 /64, as for connection limits.
func limitKey(ip netip.Addr) string { return netconn.Bucket(ip).String() }
