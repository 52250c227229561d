package mtasts

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"postie/internal/dnsutil"
	"postie/safeio"
)

// Resolver is the part of *net.Resolver the lookups need.
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
}

// Options configure a Client; every zero value has a default.
type Options struct {
	Resolver Resolver       // nil: net.DefaultResolver
	RootCAs  *x509.CertPool // roots for the policy host's certificate; nil: the system's
	// Port is where the policy host's HTTPS server is dialed: 443 if 0.
	// Tests point it at a loopback server.
	Port int
	// Dial opens TCP connections to "ip:port" (names are resolved through
	// Resolver first); nil: a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Dir keeps the cached policies, one file per domain, so that they
	// survive restarts; "" caches in memory only.
	Dir     string
	FS      *safeio.FS    // durable writes; nil: the real file system
	Timeout time.Duration // bound of one policy fetch (connect, TLS, reply, body); 30 s if 0
	// Recheck is how long a cached policy is used without looking at the
	// TXT record again for a changed id; 5 min if 0.
	Recheck time.Duration
	Now     func() time.Time // nil: time.Now
	Logger  *slog.Logger     // nil: slog.Default()
}

// maxNoneMemo bounds the domains remembered as having no policy, and
// maxCached those whose cache entry is held in memory.
const (
	maxNoneMemo = 10000
	maxCached   = 50000
)

// Client finds the MTA-STS policies of recipient domains. It is safe for
// concurrent use.
type Client struct {
	opts  Options
	http  *http.Client
	mu    sync.Mutex
	cache map[string]*entry
	// none remembers, for Recheck, when a domain was found without a
	// record, so that mail to it does not cost a TXT query per message.
	none map[string]time.Time
	// fetching holds the policy fetches under way, so that the parallel
	// deliveries of a newsletter to one domain share one.
	// failed remembers, for Recheck, a fetch that failed for a domain
	// without a cached policy: a policy host that is down or drops
	// connections would otherwise cost every message a fetch and its
	// timeout.
	failed    map[string]failure
	fetching  map[string]*fetchCall
	maxCached int // maxCached; tests lower it
}

type failure struct {
	at  time.Time
	err error
}

// fetchCall is one policy fetch that several Lookups wait for.
type fetchCall struct {
	done   chan struct{}
	policy *Policy
	err    error
}

type entry struct {
	policy  *Policy
	fetched time.Time
	expires time.Time // fetch time + max_age
	checked time.Time // when the TXT record's id was last compared
}

// refreshAfter is how long after its fetch a policy whose id has not
// changed is fetched again: daily, or at half its max_age if that is
// shorter. RFC 8461 asks senders to refresh cached policies periodically,
// so that a policy in use does not simply run out at max_age, when a
// fetch blocked by an attacker would leave the domain without one.
func refreshAfter(maxAge time.Duration) time.Duration {
	return min(24*time.Hour, maxAge/2)
}

// stored is a cached policy on disk.
type stored struct {
	Domain  string    `json:"domain"`
	ID      string    `json:"id"`
	Fetched time.Time `json:"fetched"`
	Expires time.Time `json:"expires"`
	Policy  string    `json:"policy"`
}

// New returns a Client for opts.
func New(opts Options) *Client {
	if opts.Resolver == nil {
		opts.Resolver = net.DefaultResolver
	}
	if opts.Port == 0 {
		opts.Port = 443
	}
	if opts.Dial == nil {
		d := &net.Dialer{}
		opts.Dial = d.DialContext
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.Recheck <= 0 {
		opts.Recheck = 5 * time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	c := &Client{opts: opts, cache: map[string]*entry{}, none: map[string]time.Time{}, fetching: map[string]*fetchCall{}, failed: map[string]failure{}, maxCached: maxCached}
	c.http = c.newHTTPClient()
	return c
}

// Lookup returns the policy in force for domain (RFC 8461 section 5.1), or
// nil when it has none. A policy of mode none is returned as such. err
// reports a failure to refresh or fetch the policy (an *Error, for TLS
// reporting) and may come with the still valid cached policy, which then
// applies; or a failed TXT lookup (a DNS error), with no policy.
func (c *Client) Lookup(ctx context.Context, domain string) (*Policy, error) {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	now := c.opts.Now()
	e := c.cached(domain, now)
	if e != nil && now.Sub(e.checked) < c.opts.Recheck {
		return e.policy, nil
	}
	if e == nil && c.knownNone(domain, now) {
		return nil, nil
	}
	if e == nil {
		if err := c.recentFailure(domain, now); err != nil {
			return nil, err
		}
	}
	id, err := c.lookupID(ctx, domain)
	if err == nil && id == "" && e == nil {
		c.noteNone(domain, now)
	}
	if err != nil || id == "" {
		// No usable record: a cached policy still applies until it
		// expires; without one there is no policy. A failed DNS lookup
		// is said, though: whether there is a policy is then unknown
		// (a REQUIRETLS message waits rather than bounces).
		if err != nil {
			c.opts.Logger.Debug("mta-sts: no usable record", "domain", domain, "err", err)
		}
		var de *net.DNSError
		switch {
		case e != nil:
			return e.policy, nil
		case errors.As(err, &de):
			return nil, fmt.Errorf("mta-sts: TXT lookup of _mta-sts.%s: %w", domain, err)
		}
		return nil, nil
	}
	if e != nil && e.policy.ID == id && now.Sub(e.fetched) < refreshAfter(e.policy.MaxAge) {
		c.touch(domain, now)
		return e.policy, nil
	}
	p, err := c.fetchShared(ctx, domain, id, now)
	if err != nil {
		var fe *Error
		if e == nil && errors.As(err, &fe) {
			c.noteFailure(domain, now, err)
		}
		if e != nil {
			// The cached policy applies until it expires; the next
			// try is after Recheck.
			c.touch(domain, now)
			return e.policy, err
		}
		return nil, err
	}
	return p, nil
}

// fetchShared fetches and stores the policy of domain under id, or waits
// for the fetch already under way. The fetch runs on its own, bounded by
// Timeout: a caller whose ctx ends stops waiting without failing the
// others that share it.
func (c *Client) fetchShared(ctx context.Context, domain, id string, now time.Time) (*Policy, error) {
	c.mu.Lock()
	call, ok := c.fetching[domain]
	if !ok {
		call = &fetchCall{done: make(chan struct{})}
		c.fetching[domain] = call
		go c.runFetch(context.WithoutCancel(ctx), call, domain, id, now)
	}
	c.mu.Unlock()
	select {
	case <-call.done:
		return call.policy, call.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *Client) runFetch(ctx context.Context, call *fetchCall, domain, id string, now time.Time) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	p, err := c.fetch(ctx, domain)
	cancel()
	if err != nil {
		c.opts.Logger.Info("mta-sts: cannot fetch policy", "domain", domain, "err", err)
	} else {
		p.ID = id
		c.store(domain, p, now)
	}
	c.mu.Lock()
	delete(c.fetching, domain)
	c.mu.Unlock()
	call.policy, call.err = p, err
	close(call.done)
}

// recentFailure is the error of a fetch for domain that failed within
// Recheck, or nil.
func (c *Client) recentFailure(domain string, now time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f, ok := c.failed[domain]; ok && now.Sub(f.at) < c.opts.Recheck {
		return f.err
	}
	return nil
}

func (c *Client) noteFailure(domain string, now time.Time, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.failed) >= maxNoneMemo {
		clear(c.failed)
	}
	c.failed[domain] = failure{at: now, err: err}
}

func (c *Client) knownNone(domain string, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.none[domain]
	return ok && now.Sub(t) < c.opts.Recheck
}

// noteNone remembers that domain has no record; the memo is bounded by
// dropping it whole when full.
func (c *Client) noteNone(domain string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.none) >= maxNoneMemo {
		clear(c.none)
	}
	c.none[domain] = now
}

// lookupID reads the _mta-sts TXT record. Exactly one STSv1 record must
// be there (section 3.1); otherwise there is no usable record.
func (c *Client) lookupID(ctx context.Context, domain string) (string, error) {
	txts, err := c.opts.Resolver.LookupTXT(ctx, "_mta-sts."+domain)
	if err != nil {
		if dnsutil.NotFound(err) {
			return "", nil
		}
		return "", err
	}
	var ids []string
	for _, t := range txts {
		id, ok, err := ParseRecord(t)
		if !ok {
			continue
		}
		if err != nil {
			return "", err
		}
		ids = append(ids, id)
	}
	switch len(ids) {
	case 0:
		return "", nil
	case 1:
		return ids[0], nil
	}
	return "", fmt.Errorf("mta-sts: %d STSv1 records at _mta-sts.%s", len(ids), domain)
}

// cached returns the unexpired cached policy of domain, from memory or
// else from disk, or nil.
func (c *Client) cached(domain string, now time.Time) *entry {
	c.mu.Lock()
	e, ok := c.cache[domain]
	c.mu.Unlock()
	if !ok {
		e = c.load(domain)
		c.mu.Lock()
		c.makeRoomLocked(now)
		c.cache[domain] = e // nil too: the disk is read once per domain
		c.mu.Unlock()
	}
	if e == nil || !now.Before(e.expires) {
		return nil
	}
	return e
}

// makeRoomLocked keeps the memory cache within maxCached domains (a
// newsletter reaches many): when full, it forgets the domains without a
// policy and the expired policies, then, if still full and the policies
// are on disk (read again when needed), every entry.
func (c *Client) makeRoomLocked(now time.Time) {
	if len(c.cache) < c.maxCached {
		return
	}
	for d, e := range c.cache {
		if e == nil || !now.Before(e.expires) {
			delete(c.cache, d)
		}
	}
	if len(c.cache) >= c.maxCached && c.opts.Dir != "" {
		clear(c.cache) // live policies come back from disk; without a Dir they stay
	}
}

func (c *Client) touch(domain string, now time.Time) {
	c.mu.Lock()
	if e := c.cache[domain]; e != nil {
		cp := *e
		cp.checked = now
		c.cache[domain] = &cp
	}
	c.mu.Unlock()
}

func (c *Client) store(domain string, p *Policy, now time.Time) {
	e := &entry{policy: p, fetched: now, expires: now.Add(p.MaxAge), checked: now}
	c.mu.Lock()
	c.makeRoomLocked(now)
	c.cache[domain] = e
	delete(c.failed, domain)
	c.mu.Unlock()
	path := c.path(domain)
	if path == "" {
		return
	}
	data, err := json.Marshal(stored{Domain: domain, ID: p.ID, Fetched: now, Expires: e.expires, Policy: p.Text})
	if err == nil {
		if err = os.MkdirAll(c.opts.Dir, 0o700); err == nil {
			err = c.opts.FS.WriteFile(path, data, 0o600)
		}
	}
	if err != nil {
		// The policy still applies from memory; only a restart loses it.
		c.opts.Logger.Warn("mta-sts: cannot save policy", "domain", domain, "err", err)
	}
}

// load reads domain's cached policy from disk; nil if absent or unreadable.
func (c *Client) load(domain string) *entry {
	path := c.path(domain)
	if path == "" {
		return nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			c.opts.Logger.Warn("mta-sts: cannot read cached policy", "domain", domain, "err", err)
		}
		return nil
	}
	var s stored
	if err := json.Unmarshal(data, &s); err != nil || s.Domain != domain {
		c.opts.Logger.Warn("mta-sts: ignoring a damaged cached policy", "domain", domain, "err", err)
		return nil
	}
	p, err := Parse(s.Policy)
	if err != nil {
		c.opts.Logger.Warn("mta-sts: ignoring a damaged cached policy", "domain", domain, "err", err)
		return nil
	}
	p.ID = s.ID
	return &entry{policy: p, fetched: s.Fetched, expires: s.Expires, checked: s.Fetched}
}

// path is the cache file of domain, "" when there is no cache directory
// or the name is not a plain host name.
func (c *Client) path(domain string) string {
	if c.opts.Dir == "" || domain == "" || len(domain) > 253 || domain[0] == '.' || strings.Contains(domain, "..") {
		return ""
	}
	for i := 0; i < len(domain); i++ {
		ch := domain[i]
		if !(ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '.' || ch == '_') {
			return ""
		}
	}
	return filepath.Join(c.opts.Dir, domain+".json")
}
