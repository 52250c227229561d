package mda

import (
	"cmp"
	"container/list"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"postie/envelope"
	"postie/inbound"
	"postie/rspamd"
)

// Rspamd is what Checks needs of an rspamd client (*rspamd.Client).
type Rspamd interface {
	Check(ctx context.Context, msg io.Reader, meta rspamd.Meta) (rspamd.Result, error)
}

// ChecksOptions configure Checks.
type ChecksOptions struct {
	Resolver inbound.Resolver // required: all DNS goes through it
	// Inbound configures the SPF, DKIM and DMARC checks (Hostname is
	// required); a zero Timeout takes Timeout below, a nil Logger Logger.
	Inbound inbound.Options
	DNSBL   []string // block list zones; none: no block lists
	Rspamd  Rspamd   // nil: rspamd is not asked
	// Timeout bounds each lookup about a client (reverse DNS, block
	// lists, the SPF check started at MAIL FROM); what is not answered by
	// then counts as a temporary error. Zero means 20 seconds.
	Timeout time.Duration
	// CacheTTL is how long the DNS answers of SPF, DKIM and DMARC are
	// kept (see dnsCache); zero means a minute, negative not at all.
	CacheTTL time.Duration
	Logger   *slog.Logger // nil: slog.Default()
}

// Checks is the inbound trust checks, for both of their callers: the MX
// front-end (smtpd's Checks: the client's reverse DNS once per
// connection, block lists at RCPT, SPF started at MAIL FROM) and the
// router (Inspector: SPF, DKIM and DMARC through inbound.Checker, and
// rspamd when configured, on the spooled message). It is safe for
// concurrent use.
//
// Reverse DNS answers are kept per client address for nameTTL (at most
// maxNames of them), and a lookup in flight is shared, so that STARTTLS
// (a new session on the same connection) and a sender's next connection
// cost no lookup. Temporary failures are not kept. Block list answers
// are kept by inbound.DNSBL (10 minutes), the records SPF, DKIM and DMARC
// read for CacheTTL.
type Checks struct {
	o       ChecksOptions
	log     *slog.Logger
	checker *inbound.Checker
	dnsbl   *inbound.DNSBL
	names   nameCache
}

// NewChecks returns Checks over o.
func NewChecks(o ChecksOptions) *Checks {
	if o.Resolver == nil {
		panic("mda: NewChecks: a Resolver is required")
	}
	if o.Timeout <= 0 {
		o.Timeout = 20 * time.Second
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	c := &Checks{o: o, log: log, names: nameCache{byIP: map[netip.Addr]*list.Element{}, lru: list.New()}}
	r := o.Resolver
	if o.CacheTTL >= 0 {
		r = newDNSCache(o.Resolver, cmp.Or(o.CacheTTL, time.Minute))
	}
	opts := o.Inbound
	opts.Timeout = cmp.Or(opts.Timeout, o.Timeout)
	opts.Logger = cmp.Or(opts.Logger, log)
	c.checker = inbound.New(r, opts)
	if len(o.DNSBL) > 0 {
		c.dnsbl = inbound.NewDNSBL(o.Resolver, inbound.DNSBLOptions{Zones: o.DNSBL, Logger: log})
	}
	return c
}

// ClientName returns ip's forward-confirmed reverse DNS name, "" when it
// has none or it could not be found in time.
func (c *Checks) ClientName(ctx context.Context, ip netip.Addr) string {
	ip = ip.Unmap()
	e, owner := c.names.get(ip, time.Now())
	if owner {
		// The lookup is shared with later callers: it is bounded by the
		// timeout, not by this caller's context.
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.o.Timeout)
		rev := inbound.ReverseDNS(lctx, c.o.Resolver, ip)
		cancel()
		c.names.finish(e, rev.Name, rev.Result != inbound.TempError, time.Now())
	}
	select {
	case <-e.done:
		return e.name
	case <-ctx.Done():
		return ""
	}
}

// Blocked returns the refusal (554 5.7.1 naming the list and its reason)
// for a client on one of the DNS block lists, nil otherwise. A list that
// cannot be asked in time counts as not listing the client.
func (c *Checks) Blocked(ctx context.Context, ip netip.Addr) error {
	if c.dnsbl == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.o.Timeout)
	defer cancel()
	if l := c.dnsbl.Check(ctx, ip); l != nil {
		c.log.Info("mda: client on a block list", "remote", ip.String(), "zone", l.Zone, "reason", l.Reason)
		return l.Reply()
	}
	return nil
}

// earlySPF is the SPF check StartMail begins: envelope.Envelope.Early.
type earlySPF struct {
	from string
	done chan struct{}
	res  inbound.SPFResult
}

// StartMail begins the SPF check of a transaction at MAIL FROM, while
// the client sends its recipients and message, and returns it for
// envelope.Envelope.Early. It ends within the timeout, or when ctx ends.
func (c *Checks) StartMail(ctx context.Context, ip netip.Addr, helo, from string) any {
	f := &earlySPF{from: from, done: make(chan struct{})}
	go func() {
		defer close(f.done)
		sctx, cancel := context.WithTimeout(ctx, c.o.Timeout)
		defer cancel()
		f.res = c.checker.SPF(sctx, ip, helo, from)
	}()
	return f
}

// Inspect runs SPF (or takes the result StartMail began), DKIM and DMARC,
// and asks rspamd at the same time when there is one. The strictest
// action of the two wins. rspamd failing is logged and otherwise ignored.
func (c *Checks) Inspect(ctx context.Context, env *envelope.Envelope, msg io.ReaderAt, size int64) *Inspection {
	ip, _ := netip.ParseAddr(env.RemoteAddr)
	in := inbound.Input{IP: ip, Helo: env.Helo, MailFrom: env.From}
	if f, ok := env.Early.(*earlySPF); ok && f.from == env.From {
		select {
		case <-f.done:
			in.SPF = &f.res
		case <-ctx.Done():
		}
	}
	var (
		rs *rspamd.Result
		wg sync.WaitGroup
	)
	if c.o.Rspamd != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rs = c.askRspamd(ctx, env, ip, msg, size)
		}()
	}
	v := c.checker.Check(ctx, in, msg, size)
	wg.Wait()
	ins := &Inspection{Action: v.Action, Reply: v.Reply, Reason: v.Reason, Header: v.Header(), Verified: v.Verified()}
	if rs != nil {
		mergeRspamd(ins, rs)
	}
	c.log.Info("mda: checked", "id", env.ID, "remote", env.RemoteAddr, "spf", string(v.SPF.Result),
		"dkim", dkimSummary(v.DKIM), "dmarc", string(v.DMARC.Result), "action", ins.Action.String(), "reason", ins.Reason)
	return ins
}

func (c *Checks) askRspamd(ctx context.Context, env *envelope.Envelope, ip netip.Addr, msg io.ReaderAt, size int64) *rspamd.Result {
	res, err := c.o.Rspamd.Check(ctx, io.NewSectionReader(msg, 0, size), rspamd.Meta{
		IP: ip, Helo: env.Helo, From: env.From, Rcpts: env.To, Hostname: env.ClientName, QueueID: env.ID,
	})
	if err != nil {
		c.log.Warn("mda: rspamd gave no verdict; the message is taken without it", "id", env.ID, "err", err)
		return nil
	}
	return &res
}

// mergeRspamd adds rspamd's verdict: its header, and its action where it
// is stricter than the checks' own.
func mergeRspamd(ins *Inspection, rs *rspamd.Result) {
	if rs.Header != "" {
		ins.Header += "X-Spamd-Result: " + rs.Header + "\r\n"
	}
	switch {
	case rs.Reject() && ins.Action < inbound.Reject:
		ins.Action, ins.Reason = inbound.Reject, fmt.Sprintf("rspamd reject %.2f", rs.Score)
		ins.Reply = envelope.Errorf(550, 5, 7, 1, "message refused as spam")
	case rs.SoftReject() && ins.Action < inbound.Defer:
		ins.Action, ins.Reason = inbound.Defer, "rspamd "+rs.Action
		ins.Reply = envelope.Errorf(451, 4, 7, 1, "message deferred, try again later")
	case rs.Junk() && ins.Action < inbound.Junk:
		ins.Action, ins.Reason = inbound.Junk, fmt.Sprintf("rspamd %.2f", rs.Score)
	}
}

func dkimSummary(sigs []inbound.DKIMResult) string {
	if len(sigs) == 0 {
		return string(inbound.None)
	}
	s := ""
	for i, k := range sigs {
		if i > 0 {
			s += ","
		}
		s += string(k.Result) + ":" + k.Domain
	}
	return s
}

// Reverse DNS cache bounds.
const (
	nameTTL  = 10 * time.Minute
	maxNames = 4096
)

// nameCache keeps reverse DNS answers per address, least recently used
// first out; an entry whose done is open is a lookup in flight.
type nameCache struct {
	mu   sync.Mutex
	byIP map[netip.Addr]*list.Element
	lru  *list.List // of *nameEntry, most recent first
}

type nameEntry struct {
	ip      netip.Addr
	done    chan struct{}
	name    string
	expires time.Time // zero while in flight
}

// get returns ip's entry; owner is true when the caller made it and must
// do the lookup and call finish.
func (n *nameCache) get(ip netip.Addr, now time.Time) (e *nameEntry, owner bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if el, ok := n.byIP[ip]; ok {
		e := el.Value.(*nameEntry)
		if e.expires.IsZero() || now.Before(e.expires) {
			n.lru.MoveToFront(el)
			return e, false
		}
		n.lru.Remove(el)
		delete(n.byIP, ip)
	}
	e = &nameEntry{ip: ip, done: make(chan struct{})}
	n.byIP[ip] = n.lru.PushFront(e)
	for n.lru.Len() > maxNames {
		old := n.lru.Back()
		n.lru.Remove(old)
		delete(n.byIP, old.Value.(*nameEntry).ip)
	}
	return e, true
}

// finish records the lookup's answer, keeps it if keep, and wakes the
// waiters.
func (n *nameCache) finish(e *nameEntry, name string, keep bool, now time.Time) {
	n.mu.Lock()
	e.name, e.expires = name, now.Add(nameTTL)
	if el, ok := n.byIP[e.ip]; ok && el.Value == e && !keep {
		n.lru.Remove(el)
		delete(n.byIP, e.ip)
	}
	n.mu.Unlock()
	close(e.done)
}
