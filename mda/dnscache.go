package mda

import (
	"container/list"
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"postie/inbound"
	"postie/internal/dnsutil"
)

// maxDNSEntries bounds the answers dnsCache keeps.
const maxDNSEntries = 10000

// dnsCache is the Resolver the checks use: it keeps answers (and "no such
// name or record") for ttl, least recently used out first, because the
// same senders write again and again and each message would otherwise
// ask again for the same SPF, DKIM and DMARC records. net.Resolver does
// not tell record TTLs, so ttl stands for them: keep it short (a minute)
// against the usual TTLs of hours. Temporary failures are not kept, and
// errors are returned as the resolver made them (the SPF and DKIM
// libraries look at *net.DNSError).
type dnsCache struct {
	r   inbound.Resolver
	ttl time.Duration

	mu    sync.Mutex
	lru   *list.List // of *dnsEntry, most recent first
	byKey map[string]*list.Element
}

type dnsEntry struct {
	key     string
	val     any // []string, []*net.MX, []net.IPAddr or []netip.Addr
	err     error
	expires time.Time
}

func newDNSCache(r inbound.Resolver, ttl time.Duration) *dnsCache {
	return &dnsCache{r: r, ttl: ttl, lru: list.New(), byKey: map[string]*list.Element{}}
}

// lookup answers key from the cache or through f; each caller gets its
// own copy of a cached slice.
func lookup[T any](c *dnsCache, key string, f func() ([]T, error)) ([]T, error) {
	key = strings.ToLower(strings.TrimSuffix(key, "."))
	now := time.Now()
	c.mu.Lock()
	if el, ok := c.byKey[key]; ok {
		e := el.Value.(*dnsEntry)
		if now.Before(e.expires) {
			c.lru.MoveToFront(el)
			c.mu.Unlock()
			v, _ := e.val.([]T)
			return slices.Clone(v), e.err
		}
		c.lru.Remove(el)
		delete(c.byKey, key)
	}
	c.mu.Unlock()
	v, err := f()
	if err != nil && !dnsutil.NotFound(err) {
		return v, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e := &dnsEntry{key: key, val: slices.Clone(v), err: err, expires: now.Add(c.ttl)}
	if el, ok := c.byKey[key]; ok {
		el.Value = e
		c.lru.MoveToFront(el)
	} else {
		c.byKey[key] = c.lru.PushFront(e)
	}
	for c.lru.Len() > maxDNSEntries {
		old := c.lru.Back()
		c.lru.Remove(old)
		delete(c.byKey, old.Value.(*dnsEntry).key)
	}
	return v, err
}

func (c *dnsCache) LookupTXT(ctx context.Context, name string) ([]string, error) {
	return lookup(c, "txt "+name, func() ([]string, error) { return c.r.LookupTXT(ctx, name) })
}

func (c *dnsCache) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	return lookup(c, "mx "+name, func() ([]*net.MX, error) { return c.r.LookupMX(ctx, name) })
}

func (c *dnsCache) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	return lookup(c, "ip "+host, func() ([]net.IPAddr, error) { return c.r.LookupIPAddr(ctx, host) })
}

func (c *dnsCache) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	return lookup(c, "ptr "+addr, func() ([]string, error) { return c.r.LookupAddr(ctx, addr) })
}

func (c *dnsCache) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	// Its own prefix: with network "ip" the key would otherwise be
	// LookupIPAddr's, whose cached []net.IPAddr is no []netip.Addr.
	return lookup(c, "netip "+network+" "+host, func() ([]netip.Addr, error) { return c.r.LookupNetIP(ctx, network, host) })
}
