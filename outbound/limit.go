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

// limitConn asks the Limiter for a connection to t. While the destination
// is at its cap, it closes idle connections one at a time, the oldest to
// the same host first, then any: the others stay for reuse.
func (c *Client) limitConn(domain string, t target) (func(), error) {
	l := c.opts.Limiter
	if l == nil || t.smarthost {
		return func() {}, nil
	}
	for {
		release, err := l.Connect(domain, t.name)
		if err == nil {
			return release, nil
		}
		if !c.pool.closeOldestIdle(t.name) && !c.pool.closeOldestIdle("") {
			return nil, err
		}
	}
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

// closeOldestIdle closes the idle connection to host ("" for any host)
// that was opened first; false if there is none.
func (p *pool) closeOldestIdle(host string) bool {
	p.mu.Lock()
	var oldest *idleSession
	var oldestKey poolKey
	for key, list := range p.idle {
		for _, is := range list {
			name, _, _ := strings.Cut(is.s.label, "[")
			if (host == "" || strings.EqualFold(name, host)) && (oldest == nil || is.s.born.Before(oldest.s.born)) {
				oldest, oldestKey = is, key
			}
		}
	}
	if oldest == nil {
		p.mu.Unlock()
		return false
	}
	p.mu.Unlock()
	if !p.remove(oldestKey, oldest) {
		return true // taken or timed out meanwhile: room was made anyway, or ask again
	}
	oldest.timer.Stop()
	oldest.s.quit()
	return true
}
