// Package outbound makes one delivery attempt of one message to the
// recipients of one remote domain: MX resolution (RFC 5321 §5.1, null MX
// RFC 7505), dialing with deadlines from an optional source address,
// STARTTLS (RFC 3207) under the strictest policy the domain publishes —
// DANE (RFC 7672) over MTA-STS (RFC 8461) over opportunistic TLS (RFC
// 7435) — with verified TLS required for REQUIRETLS messages (RFC 8689)
// and no policy applied to a message whose header says "TLS-Required: No"
// (RFC 8689 section 5; TLS still used when offered), per-recipient results, DKIM signing and connection reuse; or, with a
// smarthost configured, relaying everything through it with mandatory
// verified TLS and AUTH PLAIN. Each TLS attempt's outcome goes to an
// optional TLSReporter (RFC 8460).
//
// Retrying, backoff and bounces belong to the queue: Deliver reports, for
// each recipient, nil (the remote server took it), an *envelope.Error with
// the remote reply or a permanent local verdict, or a plain error for
// faults that may pass (DNS, network, timeouts), which the queue treats as
// temporary.
package outbound

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"postie/dkim"
	"postie/envelope"
)

// Defaults for the zero values of Options.
const (
	defaultPort           = 25
	defaultConnectTimeout = 30 * time.Second
	defaultCommandTimeout = 5 * time.Minute // RFC 5321 §4.5.3.2
)

// Limits of one attempt and of connection reuse.
const (
	maxAddrsPerAttempt = 16               // addresses dialed per Deliver, over all MX hosts
	idleTimeout        = 30 * time.Second // how long a used connection waits for the next message
	maxIdlePerKey      = 2                // idle connections kept per domain
	maxSessionUses     = 100              // messages per connection
	maxSessionAge      = 5 * time.Minute  // then the connection is closed rather than reused
	quitTimeout        = 5 * time.Second  // for the courtesy QUIT
	minTransferRate    = 16 << 10         // bytes/s the DATA deadline allows for, on top of CommandTimeout
	plainMemoTTL       = time.Hour        // how long a host without working STARTTLS is dialed in plaintext directly
	plainMemoMax       = 4096             // hosts remembered so
)

// Options configure a Client. Only Hostname is needed in production; the
// rest have defaults or are for tests.
type Options struct {
	Hostname string   // our name in EHLO; "" means os.Hostname
	Resolver Resolver // nil: net.DefaultResolver (see NewResolver)
	Port     int      // remote SMTP port, 25 if 0; tests point it at loopback sinks
	// Dial opens TCP connections; nil means a net.Dialer. It is always
	// given "ip:port": names are resolved through Resolver first.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	ConnectTimeout time.Duration // per dial; 30 s if 0
	// CommandTimeout bounds each command's reply; the reply to the final
	// dot of DATA gets twice as long (10 min by default, RFC 5321
	// §4.5.3.2.6). 5 min if 0.
	CommandTimeout time.Duration

	Smarthost          string      // "host:port": relay all mail through it, no MX lookup
	SmarthostTLS       string      // "starttls" (default, required) or "tls" (implicit, RFC 8314)
	SmarthostUsername  string      // AUTH PLAIN when set
	SmarthostPassword  string      //
	SmarthostTLSConfig *tls.Config // nil: system roots; ServerName defaults to the smarthost's host

	// RootCAs verify certificates where a policy asks for it (MTA-STS
	// enforce, the smarthost) and, for the logs, everywhere else; nil: the
	// system's roots. LoadRoots adds [outbound] ca_file to them.
	RootCAs *x509.CertPool
	// SourceIP and SourceIPv6 are the local addresses connections to
	// IPv4 and IPv6 hosts are made from; nil lets the system choose. Only
	// the default Dial uses them.
	SourceIP, SourceIPv6 net.IP
	// STS finds MTA-STS policies (RFC 8461); nil: none are applied.
	STS STSPolicies
	// DANE asks a validating resolver for TLSA records (RFC 7672); nil:
	// DANE is not applied.
	DANE DANEResolver
	// TLSReports receives the outcome of every TLS attempt (RFC 8460);
	// nil: none are reported.
	TLSReports TLSReporter

	// Limiter caps connections per destination (see Limiter); nil: no cap.
	Limiter Limiter

	// LocalAddrs reports our own addresses: an MX host that is us is not
	// dialed, nor is any MX less preferred than us (RFC 5321 §5.1).
	LocalAddrs func(ip net.IP) bool
	Signer     *dkim.Signer // nil: no DKIM signing
	Logger     *slog.Logger // nil: slog.Default()
}

// Client delivers messages to remote domains. It is safe for concurrent
// use; Close releases the connections it keeps for reuse.
type Client struct {
	opts     Options
	hostname string
	resolver Resolver
	log      *slog.Logger
	pool     *pool
	plain    plainMemo
}

// New returns a Client for opts, filling in defaults.
func New(opts Options) *Client {
	c := &Client{opts: opts, hostname: opts.Hostname, resolver: opts.Resolver, log: opts.Logger}
	if c.hostname == "" {
		c.hostname, _ = os.Hostname()
		if c.hostname == "" {
			c.hostname = "localhost"
		}
	}
	if c.resolver == nil {
		c.resolver = net.DefaultResolver
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	if c.opts.Port == 0 {
		c.opts.Port = defaultPort
	}
	if c.opts.ConnectTimeout <= 0 {
		c.opts.ConnectTimeout = defaultConnectTimeout
	}
	if c.opts.CommandTimeout <= 0 {
		c.opts.CommandTimeout = defaultCommandTimeout
	}
	if c.opts.Dial == nil {
		c.opts.Dial = c.dialFrom
	}
	c.pool = newPool(idleTimeout, c.log)
	return c
}

// dialFrom is the default Dial: from SourceIP or SourceIPv6, by the
// family of the address dialed.
func (c *Client) dialFrom(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: c.opts.ConnectTimeout}
	if host, _, err := net.SplitHostPort(addr); err == nil {
		if ip := net.ParseIP(host); ip != nil {
			src := c.opts.SourceIP
			if ip.To4() == nil {
				src = c.opts.SourceIPv6
			}
			if src != nil {
				d.LocalAddr = &net.TCPAddr{IP: src}
			}
		}
	}
	return d.DialContext(ctx, network, addr)
}

// Close closes the connections kept for reuse. The Client stays usable;
// later connections are simply not kept.
func (c *Client) Close() error {
	c.pool.close()
	return nil
}

// Deliver makes one delivery attempt of the message body (size bytes,
// CRLF line ends) from the envelope sender t.From ("" for the null
// sender) to t.To, which must all be in one domain. It returns one error
// per recipient, nil meaning the remote server accepted it.
//
// The message's parameters go along where the host supports them: RET
// and ENVID on MAIL, NOTIFY and ORCPT on RCPT (RFC 3461) when the host
// advertises DSN; a recipient accepted by a host without DSN is marked in
// t.NoDSN, so the queue can send the "relayed" notice NOTIFY=SUCCESS asks
// for. t.Params.RequireTLS is sent as REQUIRETLS.
//
// Every MX host and address is tried in order until the recipients are
// settled. A 5xx reply to a recipient is final. A 4xx reply to a recipient
// (greylisting, a full mailbox) is retried at the next MX host in the same
// attempt, and stays temporary if none takes it, so a backup MX can accept
// what the primary defers.
func (c *Client) Deliver(ctx context.Context, t *envelope.Transfer, body io.ReaderAt, size int64) []error {
	from, rcpts := t.From, t.To
	d := newDelivery(t)
	if len(rcpts) == 0 {
		return d.results
	}
	if err := checkEnvelope(from, rcpts); err != nil {
		d.settleAll(err)
		return d.results
	}
	msg, err := c.prepare(from, rcpts, body, size)
	if err != nil {
		d.settleAll(err)
		return d.results
	}
	d.msg = msg
	_, domain := envelope.Split(rcpts[0])
	domain = envelope.CanonDomain(domain)
	key := poolKey{domain: domain}
	if c.opts.Smarthost != "" {
		key = poolKey{smarthost: true}
	}

	used := make(map[string]bool)
	// A REQUIRETLS message takes no idle connection: whether TLS must
	// be verified to the host is decided per message.
	if !t.Params.RequireTLS {
		if s := c.pool.take(key, c.hostname); s != nil {
			used[s.addr] = true
			c.run(ctx, d, s, key)
		}
	}
	if !d.done() {
		c.tryRoute(ctx, d, domain, key, used)
	}
	return d.finish(ctx)
}

// tryRoute resolves where mail for domain goes and tries each address in
// turn until every recipient is settled.
func (c *Client) tryRoute(ctx context.Context, d *delivery, domain string, key poolKey, used map[string]bool) {
	var targets []target
	var err error
	if c.opts.Smarthost != "" {
		targets, err = c.smarthostRoute(ctx)
	} else {
		targets, err = c.route(ctx, domain)
	}
	if err != nil {
		if isTemporary(err) {
			d.hostFailed(err) // keeps a more telling reply from a reused connection
		} else {
			d.settleAll(err)
		}
		return
	}
	var dp domainPolicy
	if c.opts.Smarthost == "" {
		dp = c.domainPolicy(ctx, d, domain)
	}
	dials := 0
	for _, t := range targets {
		if t.err != nil {
			d.hostFailed(t.err)
			continue
		}
		var hp hostPolicy
		if !t.smarthost {
			if hp, err = c.hostPolicy(ctx, dp, t); err != nil {
				c.log.Info("outbound: host skipped", "domain", domain, "host", t.name, "err", err)
				d.hostFailed(err)
				continue
			}
		}
		for _, ip := range t.addrs {
			if d.done() || ctx.Err() != nil || dials == maxAddrsPerAttempt {
				return
			}
			addr := net.JoinHostPort(ip.String(), fmt.Sprint(t.port))
			if used[addr] {
				continue
			}
			used[addr] = true
			dials++
			release, err := c.limitConn(domain, t)
			if err != nil {
				d.hostFailed(err) // the destination is at its cap: the queue tries later
				return
			}
			s, err := c.connect(ctx, dp, hp, t, ip)
			if err != nil {
				release()
				c.log.Info("outbound: host failed", "domain", domain, "host", t.label(ip), "err", err)
				d.hostFailed(err)
				continue
			}
			attachRelease(s, release)
			s.relaxed = dp.relaxed
			c.run(ctx, d, s, key)
		}
	}
}

// run carries one transaction over s, then keeps s for reuse or closes it.
func (c *Client) run(ctx context.Context, d *delivery, s *session, key poolKey) {
	stop := context.AfterFunc(ctx, func() { s.conn.Close() })
	out := c.transact(d, s)
	if !stop() {
		out = broken // ctx ended: the connection was closed under us
	}
	s.uses++
	switch {
	case out == broken:
		s.c.Close()
	case out == delivered && !s.relaxed && s.uses < maxSessionUses && time.Since(s.born) < maxSessionAge && c.pool.put(key, s):
	default:
		s.quit()
	}
}

func (c *Client) connect(ctx context.Context, dp domainPolicy, hp hostPolicy, t target, ip net.IP) (*session, error) {
	if t.smarthost {
		return c.dialSmarthost(ctx, t, ip)
	}
	return c.dialMX(ctx, dp, hp, t, ip)
}

// checkEnvelope rejects addresses that cannot be put on an SMTP command
// line; they are validated upstream, so this is a guard, not a parser.
func checkEnvelope(from string, rcpts []string) error {
	if strings.ContainsAny(from, "\r\n<>") {
		return envelope.Errorf(553, 5, 1, 7, "bad sender address %q", from)
	}
	_, first := envelope.Split(rcpts[0])
	for _, r := range rcpts {
		if strings.ContainsAny(r, "\r\n<>") || !strings.Contains(r, "@") {
			return envelope.Errorf(553, 5, 1, 3, "bad recipient address %q", r)
		}
		if _, dom := envelope.Split(r); !strings.EqualFold(strings.TrimSuffix(dom, "."), strings.TrimSuffix(first, ".")) {
			return fmt.Errorf("outbound: recipients %s and %s are in different domains", rcpts[0], r)
		}
	}
	return nil
}

// isTemporary reports whether the queue will retry err: everything but a
// 5xx *envelope.Error.
func isTemporary(err error) bool {
	var e *envelope.Error
	if errors.As(err, &e) {
		return e.Temporary()
	}
	return true
}
