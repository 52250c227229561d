package metrics

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// scrape fetches the handler's text output as "name{labels}" → value.
func scrape(t *testing.T, m *Metrics) map[string]float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("scrape: %d %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q, want the text format", ct)
	}
	return parse(t, rec.Body)
}

func parse(t *testing.T, r io.Reader) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

func TestCountersAndGauges(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	m := New(Options{Now: func() time.Time { return now }, NoRuntime: true})
	m.MessageAccepted("mx")
	m.MessageAccepted("mx")
	m.Refused("mx", "rcpt", "unknown_recipient")
	m.Delivered("local", 3)
	m.Delivery("deferred")
	m.Bounce()
	m.Login("imap", "failed")
	m.Login("imap", "ok")
	m.Login("imap", "ok")
	m.Connection("imaps")
	m.JunkVerdict("junk")
	m.InboundVerdict("accept")
	var open atomic.Int64
	open.Store(4)
	if err := m.WatchConnections("imap", func() int { return int(open.Load()) }); err != nil {
		t.Fatal(err)
	}
	if err := m.WatchConnections("imap", func() int { return 0 }); err == nil {
		t.Error("a role watched twice: no error")
	}
	oldest := now.Add(-90 * time.Second)
	var statsCalls atomic.Int64
	if err := m.WatchQueue(func() (int, time.Time) { statsCalls.Add(1); return 7, oldest }); err != nil {
		t.Fatal(err)
	}
	notAfter := time.Date(2027, 5, 6, 0, 0, 0, 0, time.UTC)
	if err := m.WatchCertificate(func() *tls.Certificate { return testCert(t, notAfter) }); err != nil {
		t.Fatal(err)
	}

	got := scrape(t, m)
	if n := statsCalls.Load(); n != 1 {
		t.Errorf("queue stats read %d times in one scrape, want 1 (it takes the queue's lock)", n)
	}
	want := map[string]float64{
		`postie_messages_received_total{role="mx"}`:                                        2,
		`postie_messages_received_total{role="submission"}`:                                0,
		`postie_messages_refused_total{reason="unknown_recipient",role="mx",stage="rcpt"}`: 1,
		`postie_messages_delivered_total{destination="local"}`:                             3,
		`postie_messages_delivered_total{destination="remote"}`:                            0,
		`postie_deliveries_total{result="deferred"}`:                                       1,
		`postie_deliveries_total{result="failed"}`:                                         0,
		`postie_bounces_total`:                                                             1,
		`postie_logins_total{protocol="imap",result="failed"}`:                             1,
		`postie_logins_total{protocol="imap",result="ok"}`:                                 2,
		`postie_logins_total{protocol="pop3",result="ok"}`:                                 0,
		`postie_connections_total{role="imaps"}`:                                           1,
		`postie_connections_open{role="imap"}`:                                             4,
		`postie_junk_verdicts_total{verdict="junk"}`:                                       1,
		`postie_inbound_verdicts_total{action="accept"}`:                                   1,
		`postie_queue_messages`:                                                            7,
		`postie_queue_oldest_age_seconds`:                                                  90,
		`postie_tls_certificate_expiry_timestamp_seconds`:                                  float64(notAfter.Unix()),
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	// Gauges are read at each scrape.
	open.Store(1)
	if g := scrape(t, m)[`postie_connections_open{role="imap"}`]; g != 1 {
		t.Errorf("connections_open after a change: %v, want 1", g)
	}
}

func TestEmptyQueueAndNoCertificate(t *testing.T) {
	m := New(Options{NoRuntime: true})
	if err := m.WatchQueue(func() (int, time.Time) { return 0, time.Time{} }); err != nil {
		t.Fatal(err)
	}
	if err := m.WatchCertificate(func() *tls.Certificate { return nil }); err != nil {
		t.Fatal(err)
	}
	got := scrape(t, m)
	if g, ok := got["postie_queue_oldest_age_seconds"]; !ok || g != 0 {
		t.Errorf("age of an empty queue: %v (present %v), want 0", g, ok)
	}
	if _, ok := got["postie_tls_certificate_expiry_timestamp_seconds"]; ok {
		t.Error("an expiry reported without a certificate")
	}
}

func TestRuntimeCollectors(t *testing.T) {
	got := scrape(t, New(Options{}))
	if _, ok := got["go_goroutines"]; !ok {
		t.Error("no go_goroutines")
	}
}

func TestNilCountsNothing(t *testing.T) {
	var m *Metrics
	m.MessageAccepted("mx")
	m.Refused("mx", "mail", "rate_limit")
	m.Delivered("local", 1)
	m.Delivery("failed")
	m.Bounce()
	m.Login("imap", "ok")
	m.Connection("smtp")
	m.JunkVerdict("junk")
	m.InboundVerdict("reject")
}

func testCert(t *testing.T, notAfter time.Time) *tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mail.example.test"},
		NotBefore: notAfter.Add(-time.Hour), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key} // no Leaf: parsed by the collector
}
