package outbound

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/net/idna"

	"postie/envelope"
	"postie/internal/dnsutil"
)

// target is one host to try: an MX host, the implicit MX, an address
// literal or the smarthost.
type target struct {
	name      string   // host name without the trailing dot, for messages and TLS ServerName
	pref      uint16   // MX preference
	port      int      //
	addrs     []net.IP // where to dial, in order
	err       error    // why the host cannot be tried (no addresses), if so
	smarthost bool     //
}

// label names one address of t for messages: "mx1.example.test[192.0.2.1]".
func (t target) label(ip net.IP) string {
	return t.name + "[" + ip.String() + "]"
}

// route finds the hosts that receive mail for domain (RFC 5321 §5.1), in
// the order to try them.
func (c *Client) route(ctx context.Context, domain string) ([]target, error) {
	if strings.HasPrefix(domain, "[") {
		return c.literalRoute(domain)
	}
	// DNS knows internationalised names only in their A-label form
	// (RFC 5890): "bücher.test" is looked up as "xn--bcher-kva.test".
	if ascii, err := idna.Lookup.ToASCII(domain); err == nil {
		domain = ascii
	} else {
		return nil, envelope.Errorf(550, 5, 1, 2, "domain %q is not a valid internationalised name", domain)
	}
	mxs, err := c.resolver.LookupMX(ctx, domain)
	implicit := false
	if err != nil && len(mxs) == 0 {
		if !dnsutil.NotFound(err) {
			return nil, fmt.Errorf("outbound: MX lookup for %s: %w", domain, err)
		}
		// No MX records: the domain itself is the implicit MX.
		mxs = []*net.MX{{Host: domain, Pref: 0}}
		implicit = true
	}
	mxs, err = dropNullMX(domain, mxs)
	if err != nil {
		return nil, err
	}
	orderMX(mxs)

	targets := make([]target, 0, len(mxs))
	for _, mx := range mxs {
		t := target{name: strings.TrimSuffix(mx.Host, "."), pref: mx.Pref, port: c.opts.Port}
		t.addrs, t.err = c.lookupHost(ctx, mx.Host)
		if t.err != nil && implicit && !isTemporary(t.err) {
			return nil, envelope.Errorf(550, 5, 1, 2, "domain %s does not exist (no MX and no address records)", domain)
		}
		targets = append(targets, t)
	}
	return c.dropSelf(domain, targets)
}

// dropNullMX applies RFC 7505: a lone "." MX means the domain takes no
// mail. A "." among other MX records is a misconfiguration; it is ignored.
func dropNullMX(domain string, mxs []*net.MX) ([]*net.MX, error) {
	out := mxs[:0:0]
	for _, mx := range mxs {
		if mx.Host != "." && mx.Host != "" {
			out = append(out, mx)
		}
	}
	if len(out) == 0 {
		return nil, envelope.Errorf(556, 5, 1, 10, "domain %s does not accept mail (null MX, RFC 7505)", domain)
	}
	return out, nil
}

// orderMX sorts by preference and shuffles hosts of equal preference, to
// spread load as RFC 5321 §5.1 asks.
func orderMX(mxs []*net.MX) {
	rand.Shuffle(len(mxs), func(i, j int) { mxs[i], mxs[j] = mxs[j], mxs[i] })
	slices.SortStableFunc(mxs, func(a, b *net.MX) int { return int(a.Pref) - int(b.Pref) })
}

// lookupHost resolves an MX host name. A name with no address is a
// permanent failure of that host only (5.4.4); the next host may do.
func (c *Client) lookupHost(ctx context.Context, host string) ([]net.IP, error) {
	name := strings.TrimSuffix(host, ".")
	if ip := net.ParseIP(name); ip != nil {
		return []net.IP{ip}, nil
	}
	addrs, err := c.resolver.LookupIPAddr(ctx, host)
	if err != nil && !dnsutil.NotFound(err) {
		return nil, fmt.Errorf("outbound: address lookup for %s: %w", name, err)
	}
	if len(addrs) == 0 {
		e := envelope.Errorf(550, 5, 4, 4, "host %s has no address records", name)
		e.Err = err
		return nil, e
	}
	ips := make([]net.IP, len(addrs))
	for i, a := range addrs {
		ips[i] = a.IP
	}
	return ips, nil
}

// dropSelf removes the hosts that are us and every host not more preferred
// than us (RFC 5321 §5.1): sending to them would loop.
func (c *Client) dropSelf(domain string, targets []target) ([]target, error) {
	if c.opts.LocalAddrs == nil {
		return targets, nil
	}
	for _, t := range targets {
		if !slices.ContainsFunc(t.addrs, c.opts.LocalAddrs) {
			continue
		}
		cut := slices.IndexFunc(targets, func(o target) bool { return o.pref >= t.pref })
		if cut == 0 {
			return nil, envelope.Errorf(554, 5, 4, 6, "mail for %s loops back to myself (we are its best MX %s)", domain, t.name)
		}
		c.log.Debug("outbound: skipping MX hosts not better than ourselves", "domain", domain, "self", t.name)
		return targets[:cut], nil
	}
	return targets, nil
}

// literalRoute handles an address literal domain, "[192.0.2.1]" or
// "[IPv6:2001:db8::1]" (RFC 5321 §4.1.3).
func (c *Client) literalRoute(domain string) ([]target, error) {
	lit := strings.TrimSuffix(strings.TrimPrefix(domain, "["), "]")
	lit = strings.TrimPrefix(strings.TrimPrefix(lit, "IPv6:"), "ipv6:")
	ip := net.ParseIP(lit)
	if ip == nil {
		return nil, envelope.Errorf(553, 5, 1, 2, "bad address literal %s", domain)
	}
	t := target{name: domain, port: c.opts.Port, addrs: []net.IP{ip}}
	if c.opts.LocalAddrs != nil && c.opts.LocalAddrs(ip) {
		return nil, envelope.Errorf(554, 5, 4, 6, "mail for %s loops back to myself", domain)
	}
	return []target{t}, nil
}

// smarthostRoute resolves the smarthost. Every failure is temporary: the
// mail waits while the administrator fixes the relay's name.
func (c *Client) smarthostRoute(ctx context.Context) ([]target, error) {
	host, portStr, err := net.SplitHostPort(c.opts.Smarthost)
	if err != nil {
		host, portStr = c.opts.Smarthost, "587"
		if c.opts.SmarthostTLS == "tls" {
			portStr = "465"
		}
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port <= 0 || port > 65535 {
		return nil, fmt.Errorf("outbound: bad smarthost %q", c.opts.Smarthost)
	}
	t := target{name: host, port: port, smarthost: true}
	if ip := net.ParseIP(host); ip != nil {
		t.addrs = []net.IP{ip}
		return []target{t}, nil
	}
	addrs, err := c.resolver.LookupIPAddr(ctx, host)
	if err != nil {
		return nil, fmt.Errorf("outbound: resolve smarthost %s: %w", host, err)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("outbound: smarthost %s has no address", host)
	}
	for _, a := range addrs {
		t.addrs = append(t.addrs, a.IP)
	}
	return []target{t}, nil
}
