// Package metrics keeps Postie's Prometheus metrics and serves them in the
// text exposition format. A Metrics owns its own *prometheus.Registry
// (nothing is registered globally), so several servers, or tests, can each
// have one.
//
// Counters are counted through the methods below, which the wiring in
// cmd/postie calls from small adapters around the roles' interfaces;
// gauges (connections open, the queue, the certificate's expiry) are read
// at each scrape through the Watch functions. Every label takes a value
// from a small fixed set chosen by Postie's own code, never from the
// network. Methods are safe for concurrent use; a nil *Metrics counts
// nothing.
//
// The metrics (all prefixed postie_):
//
//	messages_received_total{role}               messages answered 250 at DATA (role mx or submission)
//	messages_refused_total{role,stage,reason}   refused MAIL, RCPT or message (stage mail, rcpt, data)
//	messages_delivered_total{destination}       recipients stored here (local) or delivered by the queue (remote)
//	deliveries_total{result}                    remote delivery attempts per recipient: delivered, deferred, failed
//	bounces_total                               DSNs (bounces and delay notices) handed to senders
//	logins_total{protocol,result}               logins (imap, pop3, submission): ok, failed, throttled, error
//	connections_total{role}                     connections accepted, by listener (smtp, submissions, imaps, ...)
//	connections_open{role}                      connections held now, by server (smtp, submission, imap, pop3)
//	junk_verdicts_total{verdict}                the junk filter's decisions: junk, not_junk, error
//	inbound_verdicts_total{action}              the checks of mail from outside: accept, junk, reject, defer
//	queue_messages                              messages in the outbound queue
//	queue_oldest_age_seconds                    how long the oldest of them has waited (0 when empty)
//	tls_certificate_expiry_timestamp_seconds    when the served certificate expires (Unix time)
//
// plus the Go runtime's and the process's own (go_*, process_*).
package metrics

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const namespace = "postie"

// Metrics is one server's set of metrics.
type Metrics struct {
	reg *prometheus.Registry
	now func() time.Time

	received   *prometheus.CounterVec
	refused    *prometheus.CounterVec
	delivered  *prometheus.CounterVec
	deliveries *prometheus.CounterVec
	bounces    prometheus.Counter
	logins     *prometheus.CounterVec
	conns      *prometheus.CounterVec
	junk       *prometheus.CounterVec
	inbound    *prometheus.CounterVec
}

// Options configure New. The zero value is ready to use.
type Options struct {
	// Now is the clock for the queue's age; nil: time.Now.
	Now func() time.Time
	// NoRuntime leaves out the Go runtime and process collectors (tests
	// that compare a whole scrape).
	NoRuntime bool
}

// New returns a Metrics with every counter registered. Label values known
// in advance start at 0, so a scrape shows them before the first event.
func New(opts Options) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), now: opts.Now}
	if m.now == nil {
		m.now = time.Now
	}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help}, labels)
		m.reg.MustRegister(c) // names are fixed here: a clash is a bug found by any test
		return c
	}
	m.received = counter("messages_received_total", "Messages answered 250 at the end of DATA, by SMTP role (mx, submission).", "role")
	m.refused = counter("messages_refused_total", "Refused MAIL, RCPT and messages, by SMTP role, stage (mail, rcpt, data) and reason.", "role", "stage", "reason")
	m.delivered = counter("messages_delivered_total", "Recipients delivered: stored in a local mailbox (local) or accepted by the remote server (remote).", "destination")
	m.deliveries = counter("deliveries_total", "Remote delivery attempts, per recipient, by result (delivered, deferred, failed).", "result")
	m.logins = counter("logins_total", "Logins by protocol (imap, pop3, submission) and result (ok, failed, throttled, error).", "protocol", "result")
	m.conns = counter("connections_total", "Connections accepted, by listener role.", "role")
	m.junk = counter("junk_verdicts_total", "The junk filter's verdicts on mail from outside, per recipient (junk, not_junk, error).", "verdict")
	m.inbound = counter("inbound_verdicts_total", "The checks' verdicts on messages from outside (accept, junk, reject, defer).", "action")
	m.bounces = prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "bounces_total",
		Help: "DSNs (bounces and delay notices) the queue handed to senders."})
	m.reg.MustRegister(m.bounces)
	for _, role := range []string{"mx", "submission"} {
		m.received.WithLabelValues(role)
	}
	for _, d := range []string{"local", "remote"} {
		m.delivered.WithLabelValues(d)
	}
	for _, r := range []string{"delivered", "deferred", "failed"} {
		m.deliveries.WithLabelValues(r)
	}
	for _, p := range []string{"imap", "pop3", "submission"} {
		for _, r := range []string{"ok", "failed"} {
			m.logins.WithLabelValues(p, r)
		}
	}
	if !opts.NoRuntime {
		m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	return m
}

// Registry is the registry the metrics are in, for a caller that adds
// its own.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus text format (or
// OpenMetrics, when the scraper asks for it).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg, EnableOpenMetrics: true})
}

// MessageAccepted counts a message accepted by an SMTP role.
func (m *Metrics) MessageAccepted(role string) {
	if m != nil {
		m.received.WithLabelValues(role).Inc()
	}
}

// Refused counts a refusal by an SMTP role at stage, for reason.
func (m *Metrics) Refused(role, stage, reason string) {
	if m != nil {
		m.refused.WithLabelValues(role, stage, reason).Inc()
	}
}

// Delivered counts n recipients delivered to destination ("local" or
// "remote").
func (m *Metrics) Delivered(destination string, n int) {
	if m != nil && n > 0 {
		m.delivered.WithLabelValues(destination).Add(float64(n))
	}
}

// Delivery counts one recipient's remote delivery attempt with result
// ("delivered", "deferred", "failed").
func (m *Metrics) Delivery(result string) {
	if m != nil {
		m.deliveries.WithLabelValues(result).Inc()
	}
}

// Bounce counts a DSN handed to its recipient.
func (m *Metrics) Bounce() {
	if m != nil {
		m.bounces.Inc()
	}
}

// Login counts a login over protocol with result ("ok", "failed",
// "throttled", "error").
func (m *Metrics) Login(protocol, result string) {
	if m != nil {
		m.logins.WithLabelValues(protocol, result).Inc()
	}
}

// Connection counts a connection accepted by a listener of role.
func (m *Metrics) Connection(role string) {
	if m != nil {
		m.conns.WithLabelValues(role).Inc()
	}
}

// JunkVerdict counts a junk filter verdict ("junk", "not_junk", "error").
func (m *Metrics) JunkVerdict(verdict string) {
	if m != nil {
		m.junk.WithLabelValues(verdict).Inc()
	}
}

// InboundVerdict counts the checks' verdict on a message from outside
// ("accept", "junk", "reject", "defer").
func (m *Metrics) InboundVerdict(action string) {
	if m != nil {
		m.inbound.WithLabelValues(action).Inc()
	}
}

// WatchConnections has each scrape report open() as the connections held
// by the server of role. Each role may be watched once.
func (m *Metrics) WatchConnections(role string, open func() int) error {
	g := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: namespace, Name: "connections_open", Help: "Connections held now, by server role.",
		ConstLabels: prometheus.Labels{"role": role},
	}, func() float64 { return float64(open()) })
	if err := m.reg.Register(g); err != nil {
		return fmt.Errorf("metrics: connections of %s: %w", role, err)
	}
	return nil
}

// WatchQueue has each scrape report the outbound queue's size and the
// age of its oldest message from stats (the oldest's arrival, zero when
// empty), calling stats once per scrape: both gauges come from the same
// snapshot, and the queue's lock is taken once.
func (m *Metrics) WatchQueue(stats func() (messages int, oldest time.Time)) error {
	if err := m.reg.Register(queueCollector{stats: stats, now: m.now}); err != nil {
		return fmt.Errorf("metrics: queue: %w", err)
	}
	return nil
}

var (
	queueSizeDesc = prometheus.NewDesc(namespace+"_queue_messages", "Messages in the outbound queue.", nil, nil)
	queueAgeDesc  = prometheus.NewDesc(namespace+"_queue_oldest_age_seconds",
		"How long the oldest message in the outbound queue has waited (0 when it is empty).", nil, nil)
)

// queueCollector reads the queue's stats once per scrape for both gauges.
type queueCollector struct {
	stats func() (int, time.Time)
	now   func() time.Time
}

func (c queueCollector) Describe(ch chan<- *prometheus.Desc) { ch <- queueSizeDesc; ch <- queueAgeDesc }

func (c queueCollector) Collect(ch chan<- prometheus.Metric) {
	n, oldest := c.stats()
	age := 0.0
	if !oldest.IsZero() {
		age = max(0, c.now().Sub(oldest).Seconds())
	}
	ch <- prometheus.MustNewConstMetric(queueSizeDesc, prometheus.GaugeValue, float64(n))
	ch <- prometheus.MustNewConstMetric(queueAgeDesc, prometheus.GaugeValue, age)
}

// WatchCertificate has each scrape report when the certificate that
// cert returns expires; nothing is reported while it returns nil or a
// certificate that does not parse.
func (m *Metrics) WatchCertificate(cert func() *tls.Certificate) error {
	if err := m.reg.Register(certCollector{cert}); err != nil {
		return fmt.Errorf("metrics: certificate: %w", err)
	}
	return nil
}

var certExpiryDesc = prometheus.NewDesc(namespace+"_tls_certificate_expiry_timestamp_seconds",
	"When the certificate served to TLS clients expires, as a Unix time.", nil, nil)

// certCollector reads the certificate at each scrape: it is replaced by
// SIGHUP and by ACME without the metrics being told.
type certCollector struct{ cert func() *tls.Certificate }

func (c certCollector) Describe(ch chan<- *prometheus.Desc) { ch <- certExpiryDesc }

func (c certCollector) Collect(ch chan<- prometheus.Metric) {
	leaf := leafOf(c.cert())
	if leaf == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(certExpiryDesc, prometheus.GaugeValue, float64(leaf.NotAfter.Unix()))
}

// leafOf returns the certificate's parsed leaf, nil if there is none.
func leafOf(c *tls.Certificate) *x509.Certificate {
	if c == nil {
		return nil
	}
	if c.Leaf != nil {
		return c.Leaf
	}
	if len(c.Certificate) == 0 {
		return nil
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return nil
	}
	return leaf
}
