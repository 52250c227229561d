// Package mda is Postie's router: every message accepted anywhere (the MX,
// authenticated submission, the `postie deliver` LDA, and the queue's own
// DSNs) goes through a Router, which decides for each envelope recipient
// where the mail goes. A local address is resolved (user, alias,
// catch-all, +tag, postmaster) and each local copy is written durably
// through maildir, with its trace headers and under quota. An address
// elsewhere (an alias's remote target, or any recipient of mail that may
// be relayed: submission and DSNs to remote senders, see Relaying) is
// handed to the outbound queue, one queued message for all of them
// (Forwarder). Deliver returns one result per envelope recipient; nil
// means the message is durable for that recipient, in a Maildir or in the
// queue, and anything else is an *envelope.Error whose class the SMTP
// reply or the LDA exit code follows.
//
// The router and the queue use each other: the router forwards into the
// queue and the queue bounces through the router. They are built in that
// order: queue.Open, then New with the queue as Forwarder, then queue.Run
// with Relaying() as its Bouncer.
//
// Mail from outside (envelope.Envelope.Inbound: the MX role, a client not
// in the trusted networks) is inspected once spooled, before any copy is
// made (Options.Inspector; Checks is the real one, over package inbound
// and rspamd):
//
//   - Reject: every recipient gets the refusal (550 5.7.1); nothing is
//     stored or queued. Defer: every recipient gets the 451. A temporary
//     DNS error is never a Reject: at worst a Defer, where a refusal
//     would otherwise follow (see package inbound).
//   - Otherwise each copy is stored as: the trace fields (Return-Path,
//     Delivered-To, Received naming the client's forward-confirmed name
//     or "unknown"), the checks' fields (Authentication-Results, and
//     X-Spamd-Result from rspamd), the X-Spam fields, then the message
//     as received with any Authentication-Results field claiming our
//     Hostname removed (RFC 8601 §5), then the body.
//   - Junk, per local recipient: the checks' Junk verdict (DMARC
//     quarantine, SPF fail without a policy, rspamd's "add header") files
//     the copy into the user's Junk folder; failing that, the user's own
//     junk filter (Options.Junk: reputation, then word statistics)
//     decides. Every such copy carries X-Spam-Score (0.000 to 1.000: the
//     filter's spam probability, 1 for a verdict of the checks, 0.5 when
//     no filter ran) and X-Spam-Reason, and a copy filed as junk also
//     X-Spam-Flag: YES. A user without a Junk folder gets it in INBOX.
//
// Mail from trusted networks, authenticated submission, the LDA and the
// queue's DSNs is neither inspected nor filtered. For authenticated
// submission the router notes, after the reply and best-effort, whom the
// user wrote to (JunkFilter.NoteSent), so that their replies are welcome.
package mda

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"

	"postie/accounts"
	"postie/envelope"
	"postie/maildir"
	"postie/safeio"
)

// Directory is what the router needs of the accounts database.
type Directory interface {
	IsLocalDomain(domain string) bool
	Resolve(addr string) (accounts.Resolution, error)
	Lookup(addr string) (*accounts.User, bool)
	Users() []*accounts.User
}

// Forwarder is the outbound queue. Enqueue queues a message for remote
// recipients; EnqueueFailed records recipients that could not be delivered
// so their sender gets a bounce. Both return only once the message is on
// stable storage.
type Forwarder interface {
	Enqueue(ctx context.Context, env *envelope.Envelope, body io.Reader) (string, error)
	EnqueueFailed(ctx context.Context, env *envelope.Envelope, body io.Reader, failed []error) (string, error)
}

// Options configures a Router.
type Options struct {
	Hostname   string
	Directory  Directory
	Store      *maildir.Store
	Forwarder  Forwarder // nil: mail that resolves to remote addresses is refused with a temporary error
	Postmaster string    // receives postmaster@<our domain> when no user or alias has it; "" = first user of that domain
	TmpDir     string    // where bodies for several copies are spooled; "" = os.TempDir()
	Logger     *slog.Logger

	// FS makes the temporary spool file of a large message. nil: the real
	// file system; tests set its Fault. (Each copy is made durable by
	// maildir or the queue, each through its own FS.)
	FS *safeio.FS

	// Inspector checks mail from outside (see the package comment); nil:
	// it is not checked, but forged Authentication-Results are still
	// removed.
	Inspector Inspector
	// Junk is the per-user junk filter for mail from outside; nil: none.
	Junk JunkFilter
}

// Router routes each recipient of a message to its local mailboxes or to
// the outbound queue, and delivers it there. Its methods are safe for
// concurrent use.
type Router struct {
	opts  Options
	log   *slog.Logger
	bufs  sync.Pool // of *[]byte scratch for spool, so a message costs no fresh 96 KiB
	notes sentNotes
}

// New returns a Router.
func New(opts Options) *Router {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	m := &Router{opts: opts, log: log}
	m.bufs.New = func() any { b := make([]byte, spoolScratch); return &b }
	return m
}

// maxHops bounds the Received: headers we accept, to break mail loops
// (RFC 5321 §6.3 suggests at least 100; Postfix uses 50).
const maxHops = 50

// destination is where one envelope recipient's mail goes.
type destination struct {
	users  []*accounts.User
	remote []string
}

// route resolves rcpt to its destination. It is shared by CheckRecipient and
// Deliver so that what RCPT accepted is what DATA delivers. A recipient at
// another domain is queued when relay is allowed, refused otherwise.
func (m *Router) route(rcpt string, relay bool) (destination, error) {
	if _, domain := envelope.Split(rcpt); relay && !m.opts.Directory.IsLocalDomain(domain) {
		if err := envelope.ValidateSender(rcpt); err != nil {
			return destination{}, envelope.Errorf(553, 5, 1, 3, "bad recipient address")
		}
		return destination{remote: []string{rcpt}}, nil
	}
	if err := envelope.Validate(rcpt); err != nil {
		return destination{}, envelope.Errorf(553, 5, 1, 3, "bad recipient address")
	}
	res, err := m.opts.Directory.Resolve(rcpt)
	if err == nil {
		return destination{users: res.Users, remote: res.Remote}, nil
	}
	local, domain := envelope.Split(rcpt)
	if errors.Is(err, envelope.ErrUnknownUser) && strings.EqualFold(local, "postmaster") && m.opts.Directory.IsLocalDomain(domain) {
		if u := m.postmaster(domain); u != nil {
			return destination{users: []*accounts.User{u}}, nil
		}
	}
	return destination{}, err
}

// postmaster finds who receives postmaster@domain (RFC 5321 §4.5.1 requires
// that it exists): the configured address, else the first user of the
// domain, else the first user at all.
func (m *Router) postmaster(domain string) *accounts.User {
	if m.opts.Postmaster != "" {
		if res, err := m.opts.Directory.Resolve(m.opts.Postmaster); err == nil && len(res.Users) > 0 {
			return res.Users[0]
		}
	}
	users := m.opts.Directory.Users()
	for _, u := range users {
		if strings.EqualFold(u.Domain, domain) {
			return u
		}
	}
	if len(users) > 0 {
		return users[0]
	}
	return nil
}

// IsLocalDomain reports whether domain is one of ours.
func (m *Router) IsLocalDomain(domain string) bool { return m.opts.Directory.IsLocalDomain(domain) }

// CheckRecipient tells whether mail for rcpt would be taken, as RCPT TO asks:
// nil, envelope.ErrUnknownUser, envelope.ErrRelayDenied, or
// envelope.ErrQuotaExceeded when the recipient's only mailbox is full.
func (m *Router) CheckRecipient(ctx context.Context, rcpt string) error {
	dest, err := m.route(rcpt, false)
	if err != nil {
		return envelope.AsError(err)
	}
	if len(dest.remote) > 0 && m.opts.Forwarder == nil {
		return envelope.Errorf(451, 4, 3, 0, "forwarding is not available now")
	}
	if len(dest.users) == 1 && len(dest.remote) == 0 {
		if err := m.checkQuota(dest.users[0], 0); err != nil {
			return err
		}
	}
	return nil
}

func (m *Router) checkQuota(u *accounts.User, size int64) error {
	if u.Quota <= 0 {
		return nil
	}
	mu, err := m.opts.Store.User(u.Domain, u.Local)
	if err != nil {
		return envelope.Temp(err)
	}
	used, _, err := mu.Usage()
	if err != nil {
		return envelope.Temp(err)
	}
	if used+size >= u.Quota {
		return envelope.ErrQuotaExceeded
	}
	return nil
}

// Deliver stores the message for every recipient of env. It returns one
// error per env.To (nil: stored durably, on disk and fsynced); every error
// is an *envelope.Error. The body is read once. Recipients at other
// domains are refused: that is the MX role's and the LDA's rule; see
// Relaying for the roles that may send out.
func (m *Router) Deliver(ctx context.Context, env *envelope.Envelope, body io.Reader) []error {
	return m.deliver(ctx, env, body, false)
}

// Relaying returns a Delivery that also takes recipients at other domains,
// queuing them for outbound delivery: for authenticated submission and for
// the bounces the queue sends back to remote senders.
func (m *Router) Relaying() *Relay { return &Relay{m} }

// Relay is a Router that may queue mail for other domains.
type Relay struct{ m *Router }

// Deliver is Router.Deliver with relaying allowed.
func (r *Relay) Deliver(ctx context.Context, env *envelope.Envelope, body io.Reader) []error {
	return r.m.deliver(ctx, env, body, true)
}

func (m *Router) deliver(ctx context.Context, env *envelope.Envelope, body io.Reader, relay bool) []error {
	errs := make([]error, len(env.To))
	dests := make([]destination, len(env.To))
	for i, rcpt := range env.To {
		dests[i], errs[i] = m.route(rcpt, relay)
		if errs[i] != nil {
			errs[i] = envelope.AsError(errs[i])
		}
	}
	if allFailed(errs) {
		_, _ = io.Copy(io.Discard, body)
		return errs
	}

	buf := m.bufs.Get().(*[]byte)
	msg, err := spool(m.opts.FS, body, m.opts.TmpDir, *buf)
	m.bufs.Put(buf)
	if err != nil {
		return fill(errs, envelope.Temp(fmt.Errorf("mda: spool message: %w", err)))
	}
	defer msg.Close()
	if msg.hops > maxHops {
		return fill(errs, envelope.Errorf(554, 5, 4, 6, "too many hops, mail loop suspected"))
	}
	c, err := m.inspect(ctx, env, msg)
	if err != nil {
		return fill(errs, envelope.AsError(err))
	}

	// Queue the remote copies first: if that fails, the recipients it
	// concerns get a temporary error before any local copy of theirs
	// exists, so the sender's retry cannot duplicate mail already stored.
	m.forward(ctx, env, dests, errs, c)
	byUser := m.deliverLocal(ctx, env, dests, errs, c)
	for i := range env.To {
		if errs[i] != nil {
			continue
		}
		var failed error
		for _, u := range dests[i].users {
			if err := byUser[u.Address]; err != nil {
				failed = err
				break
			}
		}
		errs[i] = failed
	}
	m.bounceLate(ctx, env, dests, errs, msg)
	m.logOutcome(env, msg.size, errs)
	if relay && env.AuthUser != "" {
		m.noteSent(env, errs)
	}
	return errs
}

// deliverLocal writes one copy per distinct local user, in parallel (their
// fsyncs overlap), and returns each user's outcome.
func (m *Router) deliverLocal(ctx context.Context, env *envelope.Envelope, dests []destination, errs []error, msg *content) map[string]error {
	type job struct {
		user *accounts.User
		rcpt string
	}
	var jobs []job
	seen := map[string]bool{}
	for i, d := range dests {
		if errs[i] != nil {
			continue
		}
		for _, u := range d.users {
			if !seen[u.Address] {
				seen[u.Address] = true
				jobs = append(jobs, job{u, env.To[i]})
			}
		}
	}
	results := make(map[string]error, len(jobs))
	if len(jobs) == 1 { // the common case: no goroutine needed
		results[jobs[0].user.Address] = m.deliverCopy(ctx, env, jobs[0].user, jobs[0].rcpt, true, msg)
		return results
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, j := range jobs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			err := m.deliverCopy(ctx, env, j.user, j.rcpt, false, msg)
			mu.Lock()
			results[j.user.Address] = err
			mu.Unlock()
		}()
	}
	wg.Wait()
	return results
}

func (m *Router) deliverCopy(ctx context.Context, env *envelope.Envelope, u *accounts.User, rcpt string, only bool, c *content) error {
	if err := ctx.Err(); err != nil {
		return envelope.Temp(err)
	}
	mu, err := m.opts.Store.User(u.Domain, u.Local)
	if err != nil {
		return envelope.Temp(fmt.Errorf("mda: open mailbox of %s: %w", u.Address, err))
	}
	forRcpt := ""
	if only {
		forRcpt = rcpt
	}
	prefix := traceHeaders(env, m.opts.Hostname, u.Address, forRcpt) + c.prefix()
	opts := maildir.DeliverOptions{Quota: u.Quota}
	if c.inbound {
		if v, ok := m.judge(env, u, mu, c); ok {
			prefix += v.fields()
			if v.junk {
				opts.Mailbox = "Junk"
			}
		}
	}
	d, err := m.store(mu, prefix, c, opts)
	if errors.Is(err, maildir.ErrNoSuchMailbox) && opts.Mailbox != "" {
		m.log.Warn("mda: no Junk folder, junk delivered to INBOX", "id", env.ID, "user", u.Address)
		opts.Mailbox = ""
		d, err = m.store(mu, prefix, c, opts)
	}
	switch {
	case errors.Is(err, maildir.ErrQuotaExceeded):
		m.log.Info("mda: over quota", "id", env.ID, "user", u.Address)
		return envelope.ErrQuotaExceeded
	case err != nil:
		m.log.Error("mda: delivery failed", "id", env.ID, "user", u.Address, "err", err)
		return envelope.Temp(fmt.Errorf("mda: deliver to %s: %w", u.Address, err))
	}
	m.log.Debug("mda: delivered", "id", env.ID, "user", u.Address, "mailbox", orDefault(opts.Mailbox, "INBOX"), "file", d.Name, "size", d.Size)
	return nil
}

// store writes one copy: prefix, then the message as stored.
func (m *Router) store(mu *maildir.User, prefix string, c *content, opts maildir.DeliverOptions) (maildir.Delivered, error) {
	body, err := c.copyReader()
	if err != nil {
		return maildir.Delivered{}, err
	}
	return mu.Deliver(io.MultiReader(strings.NewReader(prefix), body), opts)
}

// forward queues one copy for all remote targets of the recipients still
// without an error.
func (m *Router) forward(ctx context.Context, env *envelope.Envelope, dests []destination, errs []error, msg *content) {
	var remote []string
	var params []envelope.RcptParams
	var owners []int
	seen := map[string]bool{}
	for i, d := range dests {
		if errs[i] != nil || len(d.remote) == 0 {
			continue
		}
		owners = append(owners, i)
		for _, r := range d.remote {
			if k := envelope.Key(r); !seen[k] {
				seen[k] = true
				remote = append(remote, r)
				params = append(params, forwardParams(env, i, r))
			}
		}
	}
	if len(remote) == 0 {
		return
	}
	var err error
	if m.opts.Forwarder == nil {
		err = envelope.Errorf(451, 4, 3, 0, "forwarding is not available now")
	} else {
		fwd := *env
		fwd.To, fwd.RcptParams = remote, params
		var body io.Reader
		if body, err = msg.copyReader(); err == nil {
			prefix := traceHeaders(env, m.opts.Hostname, "", "") + msg.prefix()
			_, err = m.opts.Forwarder.Enqueue(ctx, &fwd, io.MultiReader(strings.NewReader(prefix), body))
		}
	}
	if err != nil {
		m.log.Error("mda: forwarding failed", "id", env.ID, "to", remote, "err", err)
		for _, i := range owners {
			errs[i] = envelope.AsError(err)
		}
	}
}

func (m *Router) logOutcome(env *envelope.Envelope, size int64, errs []error) {
	outcome := make([]string, len(errs))
	for i, err := range errs {
		if err == nil {
			outcome[i] = "delivered"
		} else {
			outcome[i] = err.Error()
		}
	}
	m.log.Debug("mda: message", "id", env.ID, "from", env.From, "to", env.To, "size", size, "outcome", outcome)
}

func allFailed(errs []error) bool {
	for _, err := range errs {
		if err == nil {
			return false
		}
	}
	return true
}

func fill(errs []error, err error) []error {
	for i := range errs {
		if errs[i] == nil {
			errs[i] = err
		}
	}
	return errs
}
