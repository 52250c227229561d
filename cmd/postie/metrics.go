package main

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"time"

	"postie/accounts"
	"postie/envelope"
	"postie/junk"
	"postie/mda"
	"postie/metrics"
	"postie/outbound"
	"postie/smtpd"
)

// The [metrics] role. When metrics.listen is empty s.metrics is nil and
// every function here hands back what it was given: nothing is wrapped,
// nothing counted. Otherwise the counters are fed by thin adapters around
// what serve wires together (each embeds the concrete type, so any other
// method it has stays visible), and the gauges read the servers, the
// queue and the certificate at each scrape.

// newMetrics returns the metrics when [metrics] listen names an address.
func (s *server) newMetrics() {
	if len(s.cfg.Metrics.Listen) > 0 {
		s.metrics = metrics.New(metrics.Options{})
	}
}

// smtpMetrics is smtpd's Options.Metrics: nil (not a nil pointer in an
// interface) when metrics are off.
func (s *server) smtpMetrics() smtpd.Metrics {
	if s.metrics == nil {
		return nil
	}
	return s.metrics
}

// listenMetrics binds the metrics listeners and starts watching the
// servers, the queue and the certificate; it runs after every other role
// is built.
func (s *server) listenMetrics() error {
	if s.metrics == nil {
		return nil
	}
	m := s.metrics
	for role, open := range map[string]func() int{
		"smtp": s.mx.Connections, "submission": s.submission.Connections,
		"imap": s.imap.Connections, "pop3": s.pop3.Connections,
	} {
		if err := m.WatchConnections(role, open); err != nil {
			return err
		}
	}
	if err := m.WatchQueue(s.queue.Stats); err != nil {
		return err
	}
	if err := m.WatchCertificate(s.servedCertificate); err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	s.metricsHTTP = &http.Server{
		Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 16 << 10,
	}
	for _, a := range s.cfg.Metrics.Listen {
		err := s.bind("metrics", a, func(ln net.Listener) error {
			if err := s.metricsHTTP.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// servedCertificate is the certificate a client asking for hostname
// gets: with ACME, the issued one once there is one (the lookup never
// waits for the ACME server), else the configured or self-signed one.
func (s *server) servedCertificate() *tls.Certificate {
	if get := s.tls.Config().GetCertificate; get != nil {
		if c, err := get(&tls.ClientHelloInfo{ServerName: s.cfg.Hostname}); err == nil && c != nil {
			return c
		}
	}
	return s.tls.Certificate()
}

// shutdownMetrics stops the metrics listeners (none: nothing to do).
func (s *server) shutdownMetrics(ctx context.Context) error {
	if s.metricsHTTP == nil {
		return nil
	}
	return s.metricsHTTP.Shutdown(ctx)
}

// countConnections counts each connection ln accepts under role.
func (s *server) countConnections(role string, ln net.Listener) net.Listener {
	if s.metrics == nil {
		return ln
	}
	return &countingListener{Listener: ln, m: s.metrics, role: role}
}

type countingListener struct {
	net.Listener
	m    *metrics.Metrics
	role string
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.m.Connection(l.role)
	}
	return c, err
}

// countLogins counts each login by protocol (the service the role names)
// and result.
func (s *server) countLogins(a *authAdapter) smtpd.Auth {
	if s.metrics == nil {
		return a
	}
	return &countingAuth{authAdapter: a, m: s.metrics}
}

type countingAuth struct {
	*authAdapter
	m *metrics.Metrics
}

func (a *countingAuth) Login(ctx context.Context, remoteIP, service, username, password string) (*accounts.User, error) {
	u, err := a.authAdapter.Login(ctx, remoteIP, service, username, password)
	result := "ok"
	switch {
	case err == nil:
	case errors.Is(err, accounts.ErrAuthFailed):
		result = "failed"
	case errors.Is(err, accounts.ErrThrottled):
		result = "throttled"
	case ctx.Err() != nil:
		return u, err // the client went away: no login was tried
	default:
		result = "error"
	}
	a.m.Login(service, result)
	return u, err
}

// countLocal counts the recipients an SMTP role's Delivery stored here:
// those it accepted at one of our domains (the MX role only has such; on
// submission the others went to the queue, counted when delivered).
func (s *server) countLocal(d smtpd.Delivery) smtpd.Delivery {
	if s.metrics == nil {
		return d
	}
	return &countingDelivery{Delivery: d, m: s.metrics, local: s.accounts.IsLocalDomain}
}

type countingDelivery struct {
	smtpd.Delivery
	m     *metrics.Metrics
	local func(domain string) bool
}

func (d *countingDelivery) Deliver(ctx context.Context, env *envelope.Envelope, body io.Reader) []error {
	errs := d.Delivery.Deliver(ctx, env, body)
	n := 0
	for i, err := range errs {
		if err == nil && i < len(env.To) {
			if _, dom := envelope.Split(env.To[i]); d.local(dom) {
				n++
			}
		}
	}
	d.m.Delivered("local", n)
	return errs
}

// countBounces counts the DSNs the queue hands to the router.
func (s *server) countBounces(r *mda.Relay) interface {
	Deliver(context.Context, *envelope.Envelope, io.Reader) []error
} {
	if s.metrics == nil {
		return r
	}
	return &countingBouncer{Relay: r, m: s.metrics}
}

type countingBouncer struct {
	*mda.Relay
	m *metrics.Metrics
}

func (b *countingBouncer) Deliver(ctx context.Context, env *envelope.Envelope, body io.Reader) []error {
	errs := b.Relay.Deliver(ctx, env, body)
	if len(errs) == 1 && errs[0] == nil {
		b.m.Bounce()
	}
	return errs
}

// countDeliveries counts the queue's remote delivery attempts, per
// recipient, by result.
func (s *server) countDeliveries(c *outbound.Client) interface {
	Deliver(context.Context, *envelope.Transfer, io.ReaderAt, int64) []error
} {
	if s.metrics == nil {
		return c
	}
	return &countingDeliverer{Client: c, m: s.metrics}
}

type countingDeliverer struct {
	*outbound.Client
	m *metrics.Metrics
}

func (d *countingDeliverer) Deliver(ctx context.Context, t *envelope.Transfer, body io.ReaderAt, size int64) []error {
	errs := d.Client.Deliver(ctx, t, body, size)
	for _, err := range errs {
		var ee *envelope.Error
		switch {
		case err == nil:
			d.m.Delivery("delivered")
			d.m.Delivered("remote", 1)
		case errors.As(err, &ee) && ee.Code >= 500 && ee.Code < 600:
			d.m.Delivery("failed")
		default:
			d.m.Delivery("deferred")
		}
	}
	return errs
}

// countInspections counts the checks' verdicts on mail from outside.
func (s *server) countInspections(c *mda.Checks) mda.Inspector {
	if s.metrics == nil {
		return c
	}
	return &countingChecks{Checks: c, m: s.metrics}
}

type countingChecks struct {
	*mda.Checks
	m *metrics.Metrics
}

func (c *countingChecks) Inspect(ctx context.Context, env *envelope.Envelope, msg io.ReaderAt, size int64) *mda.Inspection {
	in := c.Checks.Inspect(ctx, env, msg, size)
	if in != nil {
		c.m.InboundVerdict(in.Action.String())
	}
	return in
}

// countJunk counts the junk filter's verdicts.
func (s *server) countJunk(f *junk.Filter) mda.JunkFilter {
	if s.metrics == nil {
		return f
	}
	return &countingJunk{Filter: f, m: s.metrics}
}

type countingJunk struct {
	*junk.Filter
	m *metrics.Metrics
}

// ClassifyFeatures is what the router asks, once per recipient.
func (j *countingJunk) ClassifyFeatures(path string, fe *junk.Features, snd junk.Sender) (junk.Verdict, error) {
	v, err := j.Filter.ClassifyFeatures(path, fe, snd)
	j.m.JunkVerdict(junkVerdict(v, err))
	return v, err
}

func junkVerdict(v junk.Verdict, err error) string {
	switch {
	case err != nil:
		return "error"
	case v.Junk:
		return "junk"
	}
	return "not_junk"
}
