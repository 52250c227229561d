package outbound

import (
	"net"
	"strings"
	"sync"
)

// Limiter caps the connections open at once per destination (package
// queue's Throttle implements it; a destination is the Limiter's notion,
// by recipient domain or MX host). Idle connections kept for reuse count
// too: when the cap is reached, idle ones to the same host are closed
// first to make room.
type Limiter interface {
	// Connect asks to open one connection to host (an MX host name) for
	// mail to domain. It returns release, called once when that connection
	// is closed, or a temporary error when the destination may not have
	// one more now: the attempt then ends with that error for every
	// recipient not yet settled.
	Connect(domain, host string) (release func(), err error)
}

// limitConn asks the Limiter for a connection to t, closing idle
// connections to the same host (then any idle connection) when they are
// what keeps the destination at its cap.
func (c *Client) limitConn(domain string, t target) (func(), error) {
	l := c.opts.Limiter
	if l == nil || t.smarthost {
		return func() {}, nil
	}
	release, err := l.Connect(domain, t.name)
	if err == nil {
		return release, nil
	}
	if c.pool.closeIdle(t.name) == 0 && c.pool.closeIdle("") == 0 {
		return nil, err
	}
	return l.Connect(domain, t.name)
}

// attachRelease makes closing s's connection, however it happens (QUIT,
// a broken connection, the idle timer), call release once.
func attachRelease(s *session, release func()) {
	s.conn.Conn = &releaseConn{Conn: s.conn.Conn, release: release}
}

// releaseConn calls release when the connection is closed.
type releaseConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (r *releaseConn) Close() error {
	err := r.Conn.Close()
	r.once.Do(r.release)
	return err
}

// closeIdle closes the idle connections to host ("" for every host) and
// returns how many it closed.
func (p *pool) closeIdle(host string) int {
	p.mu.Lock()
	var gone []*idleSession
	for key, list := range p.idle {
		keep := list[:0]
		for _, is := range list {
			if name, _, _ := strings.Cut(is.s.label, "["); host == "" || strings.EqualFold(name, host) {
				gone = append(gone, is)
			} else {
				keep = append(keep, is)
			}
		}
		if len(keep) == 0 {
			delete(p.idle, key)
		} else {
			p.idle[key] = keep
		}
	}
	p.mu.Unlock()
	for _, is := range gone {
		is.timer.Stop()
		is.s.quit()
	}
	return len(gone)
}
