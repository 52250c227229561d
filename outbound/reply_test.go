package outbound

import (
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// hostileMX accepts connections and sends what send writes, counting the
// bytes that the client took before it hung up.
func hostileMX(t *testing.T, send func(c net.Conn) error) (addr string, sent *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	sent = &atomic.Int64{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(20 * time.Second))
				send(&countConn{Conn: c, n: sent})
			}()
		}
	}()
	return ln.Addr().String(), sent
}

type countConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// TestEndlessReplyBounded: an MX host that answers with a reply that
// never ends (one endless line, or endless continuation lines) costs the
// client a bounded amount of memory and an early temporary failure, not
// everything it sends until the command timeout.
func TestEndlessReplyBounded(t *testing.T) {
	chunk := strings.Repeat("x", 64<<10)
	for name, send := range map[string]func(c net.Conn) error{
		"one line": func(c net.Conn) error {
			if _, err := c.Write([]byte("220 ")); err != nil {
				return err
			}
			for {
				if _, err := c.Write([]byte(chunk)); err != nil {
					return err
				}
			}
		},
		"continuation lines": func(c net.Conn) error {
			line := []byte("220-" + chunk[:500] + "\r\n")
			for {
				if _, err := c.Write(line); err != nil {
					return err
				}
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			addr, sent := hostileMX(t, send)
			e.mx("remote.test", 10, "mx1.remote.test", "192.0.2.1", addr)
			c := e.client(func(o *Options) { o.CommandTimeout = 15 * time.Second })
			start := time.Now()
			errs := deliver(t, c, "ann@example.test", []string{"bob@remote.test"}, testBody)
			wantTemp(t, errs[0])
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %v: the reply was read until the timeout", d)
			}
			// What the server wrote includes what sat in the socket
			// buffers when the client gave up (several MB on loopback);
			// without the bound it is hundreds of MB.
			if n := sent.Load(); n > 64<<20 {
				t.Errorf("the server wrote %d bytes of one reply before the client gave up", n)
			}
		})
	}
}
