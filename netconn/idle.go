package netconn

import (
	"net"
	"time"
)

// IdleConn is a net.Conn whose every Read and Write first moves its own deadline timeout ahead: a
// slow but live peer (a long DATA, a big RETR) goes on as long as it keeps moving, and a silent one
// is cut off after timeout. A single deadline per command would cut the slow one too. It belongs
// below TLS, so that the handshake and every record are timed as well.
type IdleConn struct {
	net.Conn
	timeout time.Duration
	gate    func() error
}

// NewIdleConn wraps c with an idle timeout on each Read and Write; a timeout of 0 or less leaves
// the deadlines alone.
//
// gate, when not nil, is called by every Read after the read deadline is set and before reading;
// its error ends that Read instead. That lets another goroutine stop a reader with no lost
// wake-up: it first changes what gate reports, then calls SetReadDeadline(time.Now()). Whichever
// way the two goroutines interleave, the Read either sees the change or is woken by the deadline.
func NewIdleConn(c net.Conn, timeout time.Duration, gate func() error) *IdleConn {
	return &IdleConn{Conn: c, timeout: timeout, gate: gate}
}

func (c *IdleConn) Read(p []byte) (int, error) {
	if c.timeout > 0 {
		c.Conn.SetReadDeadline(time.Now().Add(c.timeout))
	}
	if c.gate != nil {
		if err := c.gate(); err != nil {
			return 0, err
		}
	}
	return c.Conn.Read(p)
}

func (c *IdleConn) Write(p []byte) (int, error) {
	if c.timeout > 0 {
		c.Conn.SetWriteDeadline(time.Now().Add(c.timeout))
	}
	return c.Conn.Write(p)
}

// NetConn returns the connection below, as tls.Conn's NetConn does.
func (c *IdleConn) NetConn() net.Conn { return c.Conn }
