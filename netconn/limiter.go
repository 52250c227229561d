package netconn

import (
	"errors"
	"net/netip"
	"sync"
)

// Errors of Limiter.Acquire. A server tells them apart only to word its refusal.
var (
	ErrTooMany       = errors.New("netconn: too many connections")
	ErrTooManyFromIP = errors.New("netconn: too many connections from one address")
)

// Limiter counts a server's open connections against a total limit and a limit per Bucket (an
// IPv4 address or an IPv6 /64). It is safe for concurrent use.
type Limiter struct {
	total, perIP int

	mu       sync.Mutex
	open     int
	byBucket map[netip.Prefix]int
}

// NewLimiter returns a Limiter that admits at most total connections in all and perIP from one
// Bucket. A limit of 0 or less is no limit.
func NewLimiter(total, perIP int) *Limiter {
	return &Limiter{total: total, perIP: perIP, byBucket: make(map[netip.Prefix]int)}
}

// Acquire takes a slot for a connection from ip, or returns ErrTooMany or ErrTooManyFromIP. The
// slot is held until release is called; calling release again does nothing.
func (l *Limiter) Acquire(ip netip.Addr) (release func(), err error) {
	b := Bucket(ip)
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.total > 0 && l.open >= l.total:
		return nil, ErrTooMany
	case l.perIP > 0 && l.byBucket[b] >= l.perIP:
		return nil, ErrTooManyFromIP
	}
	l.open++
	l.byBucket[b]++
	var once sync.Once
	return func() { once.Do(func() { l.release(b) }) }, nil
}

func (l *Limiter) release(b netip.Prefix) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.byBucket[b]--; l.byBucket[b] <= 0 {
		delete(l.byBucket, b)
	}
}

// Open reports how many slots are held.
func (l *Limiter) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}
