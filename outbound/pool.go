package outbound

import (
	"log/slog"
	"sync"
	"time"
)

// poolKey says which messages may share a connection: those to the same
// domain, or all of them through the smarthost.
type poolKey struct {
	smarthost bool
	domain    string
}

// pool keeps connections open for a short while after a delivery, so the
// next message to the same domain skips the connect, TLS and EHLO.
type pool struct {
	ttl    time.Duration
	log    *slog.Logger
	mu     sync.Mutex
	idle   map[poolKey][]*idleSession
	closed bool
}

type idleSession struct {
	s     *session
	timer *time.Timer
}

func newPool(ttl time.Duration, log *slog.Logger) *pool {
	return &pool{ttl: ttl, log: log, idle: make(map[poolKey][]*idleSession)}
}

// put keeps s for reuse. It reports false when the pool is full or closed;
// the caller then closes s.
func (p *pool) put(key poolKey, s *session) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || len(p.idle[key]) >= maxIdlePerKey {
		return false
	}
	is := &idleSession{s: s}
	// Whoever removes is from the list under the lock owns the session:
	// this timer, take or close.
	is.timer = time.AfterFunc(p.ttl, func() {
		if p.remove(key, is) {
			s.quit()
		}
	})
	p.idle[key] = append(p.idle[key], is)
	return true
}

func (p *pool) remove(key poolKey, is *idleSession) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	list := p.idle[key]
	for i, x := range list {
		if x == is {
			p.idle[key] = append(list[:i], list[i+1:]...)
			if len(p.idle[key]) == 0 {
				delete(p.idle, key)
			}
			return true
		}
	}
	return false
}

// take returns an idle session for key, checked alive with RSET and
// greeted again, or nil.
func (p *pool) take(key poolKey, hostname string) *session {
	for {
		p.mu.Lock()
		list := p.idle[key]
		if len(list) == 0 {
			p.mu.Unlock()
			return nil
		}
		is := list[len(list)-1]
		p.idle[key] = list[:len(list)-1]
		if len(p.idle[key]) == 0 {
			delete(p.idle, key)
		}
		p.mu.Unlock()
		is.timer.Stop()

		s := is.s
		// RSET proves the connection alive and clears any state; go-smtp
		// then wants a new EHLO, which also refreshes the extensions.
		err := s.c.Reset()
		if err == nil {
			err = s.c.Hello(hostname)
		}
		if err == nil {
			return s
		}
		p.log.Debug("outbound: idle connection is gone", "host", s.label, "err", err)
		s.c.Close()
	}
}

// close closes every idle session and keeps no more.
func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	var all []*idleSession
	for _, list := range p.idle {
		all = append(all, list...)
	}
	p.idle = make(map[poolKey][]*idleSession)
	p.mu.Unlock()
	for _, is := range all {
		is.timer.Stop()
		is.s.quit()
	}
}
