package metrics

import (
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

// TestNamingConventions runs Prometheus's own linter (promlint) over
// every metric, each with a value: counters end in _total, units are in
// the names (seconds, not milliseconds), help texts are there; and every
// family is in the postie namespace (or the runtime's go_ and process_).
func TestNamingConventions(t *testing.T) {
	m := New(Options{})
	m.MessageAccepted("mx")
	m.Refused("mx", "rcpt", "unknown_recipient")
	m.Delivered("remote", 1)
	m.Delivery("failed")
	m.Bounce()
	m.Login("pop3", "ok")
	m.Connection("smtp")
	m.JunkVerdict("not_junk")
	m.InboundVerdict("reject")
	if err := m.WatchConnections("smtp", func() int { return 1 }); err != nil {
		t.Fatal(err)
	}
	if err := m.WatchQueue(func() (int, time.Time) { return 1, time.Now() }); err != nil {
		t.Fatal(err)
	}
	if err := m.WatchCertificate(func() *tls.Certificate { return testCert(t, time.Now().Add(time.Hour)) }); err != nil {
		t.Fatal(err)
	}
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "postie_") && !strings.HasPrefix(mf.GetName(), "go_") && !strings.HasPrefix(mf.GetName(), "process_") {
			t.Errorf("%s: not in the postie namespace", mf.GetName())
		}
	}
}
