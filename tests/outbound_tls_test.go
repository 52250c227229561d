package tests

// Transport security on the way out, end to end (issue 12): the real
// binary sends through loopback sinks with certificates from a test CA
// (trusted through [outbound] ca_file), resolving through a loopback DNS
// server that sets the AD bit where a test needs DNSSEC. MTA-STS itself is
// tested in package outbound, whose fetcher can be pointed at a loopback
// HTTPS server; the binary always fetches policies from port 443.

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"postie/internal/dnstest"
	"postie/internal/testutil"
)

// tlsWorld is remote.test, whose one MX host mx1.remote.test is a
// sink on 127.0.0.3, and the [outbound] settings that reach it.
type tlsWorld struct {
	dns  *dnstest.Server
	ca   *testutil.CA
	sink *sink
	port string
	conf string
}

func newTLSWorld(t *testing.T, sinkTLS func(*testutil.CA) *tls.Config, requireTLS bool, extra string) *tlsWorld {
	t.Helper()
	w := &tlsWorld{dns: dnstest.New(t), ca: testutil.NewCA(t)}
	var cfg *tls.Config
	if sinkTLS != nil {
		cfg = sinkTLS(w.ca)
	}
	w.sink = newSink(t, "127.0.0.3:0", func(srv *smtp.Server) { srv.TLSConfig, srv.EnableREQUIRETLS = cfg, requireTLS })
	_, w.port, _ = net.SplitHostPort(w.sink.addr)
	w.dns.MX("remote.test", 10, "mx1.remote.test")
	w.dns.A("mx1.remote.test", "127.0.0.3")
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, w.ca.PEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	w.conf = fmt.Sprintf("\n[outbound]\nresolver = %q\nport = %s\nconnect_timeout = \"2s\"\nca_file = %q\n%s",
		w.dns.Addr(), w.port, caFile, extra)
	return w
}

// secureTLSA publishes a DANE-EE record for cert at mx1.remote.test and
// marks the MX, the address and the TLSA answers as DNSSEC-validated.
func (w *tlsWorld) secureTLSA(cert tls.Certificate) {
	sum := sha256.Sum256(cert.Leaf.RawSubjectPublicKeyInfo)
	tlsa := "_" + w.port + "._tcp.mx1.remote.test"
	w.dns.TLSA(tlsa, 3, 1, 1, hex.EncodeToString(sum[:]))
	for _, n := range []string{"remote.test", "mx1.remote.test", tlsa} {
		w.dns.Authenticated(n, true)
	}
}

func sendTo(t *testing.T, in *instance, requireTLS bool) {
	t.Helper()
	body := "From: ann@example.test\r\nTo: bob@remote.test\r\nSubject: sealed\r\n\r\nfor your eyes\r\n"
	if err := submitWith(t, in, "ann@example.test", &smtp.MailOptions{RequireTLS: requireTLS}, []rcptArg{{"bob@remote.test", nil}}, body); err != nil {
		t.Fatalf("submit (REQUIRETLS %v): %v", requireTLS, err)
	}
}

func startWith(t *testing.T, conf string) *instance {
	in := newInstance(t, conf)
	in.addUser("ann@example.test")
	in.start()
	return in
}

// TestOutboundEHLONamesHostnameAndSourceIP: every EHLO the remote MX sees,
// before and after STARTTLS, names our hostname (never "localhost"), and
// the connection comes from [outbound] source_ip.
func TestOutboundEHLONamesHostnameAndSourceIP(t *testing.T) {
	w := newTLSWorld(t, func(ca *testutil.CA) *tls.Config { return ca.ServerTLS("mx1.remote.test") }, false,
		"source_ip = \"127.0.0.2\"\n")
	in := startWith(t, w.conf)
	sendTo(t, in, false)
	waitFor(t, "the message at the remote MX", 15*time.Second, func() bool { return len(w.sink.messages()) == 1 })
	helo, from := w.sink.greetings()
	msgs := w.sink.messages()
	if len(helo) < 2 || !msgs[0].tls {
		t.Errorf("EHLOs %q, TLS %v: want two EHLOs around STARTTLS", helo, msgs[0].tls)
	}
	for _, h := range helo {
		if h != "mx.example.test" {
			t.Errorf("EHLO %q (all: %q), want mx.example.test", h, helo)
		}
	}
	for _, f := range from {
		if host, _, _ := net.SplitHostPort(f); host != "127.0.0.2" {
			t.Errorf("connection from %s, want source_ip 127.0.0.2", f)
		}
	}
}

// TestOutboundDANE: with the AD bit, a TLSA record that does not match the
// MX's certificate defers the message (it is never sent, in clear or
// otherwise); once the record matches, the next retry delivers it.
func TestOutboundDANE(t *testing.T) {
	cert, _ := testutil.Certificate(t, "mx1.remote.test") // self-signed: only DANE can vouch for it
	w := newTLSWorld(t, func(*testutil.CA) *tls.Config {
		return &tls.Config{Certificates: []tls.Certificate{cert}}
	}, false, "")
	other, _ := testutil.Certificate(t, "mx1.remote.test")
	w.secureTLSA(other)
	in := startWith(t, w.conf)
	sendTo(t, in, false)
	waitFor(t, "a DANE deferral in the log", 15*time.Second, func() bool {
		return strings.Contains(in.log(), "TLS does not satisfy the policy")
	})
	if m := w.sink.messages(); len(m) != 0 {
		t.Fatalf("delivered despite the TLSA mismatch")
	}
	if list := in.mustRun("", "queue", "list"); !strings.Contains(list, "bob@remote.test") || !strings.Contains(list, "4.7.5") {
		t.Errorf("queue list does not show the deferral:\n%s", list)
	}
	w.dns.Remove("_" + w.port + "._tcp.mx1.remote.test")
	w.secureTLSA(cert)
	waitFor(t, "delivery once the TLSA record matches", 20*time.Second, func() bool { return len(w.sink.messages()) == 1 })
	if m := w.sink.messages(); !m[0].tls {
		t.Error("delivered without TLS")
	}
}

// TestOutboundRequireTLSToPlainSinkBounces: a REQUIRETLS message to a
// domain with neither MTA-STS nor DANE, whose MX has no STARTTLS, is not
// sent and bounces with 5.7.30 (RFC 8689).
func TestOutboundRequireTLSToPlainSinkBounces(t *testing.T) {
	w := newTLSWorld(t, nil, false, "")
	in := startWith(t, w.conf)
	sendTo(t, in, true)
	var dsn []byte
	waitFor(t, "a bounce in ann's INBOX", 15*time.Second, func() bool {
		for _, b := range messages(t, in.maildir("example.test", "ann")) {
			dsn = b
			return true
		}
		return false
	})
	if !bytes.Contains(dsn, []byte("Status: 5.7.30")) || !bytes.Contains(dsn, []byte("REQUIRETLS")) {
		t.Errorf("bounce lacks 5.7.30 / REQUIRETLS:\n%s", dsn)
	}
	if m := w.sink.messages(); len(m) != 0 {
		t.Errorf("the plain sink got %d messages", len(m))
	}
}

// TestOutboundCAFileVerifiesSmarthost: the smarthost's certificate comes
// from the test CA; trusted through ca_file, the relay is used (its TLS is
// always verified), and a REQUIRETLS message goes through it when it
// advertises REQUIRETLS.
func TestOutboundCAFileVerifiesSmarthost(t *testing.T) {
	w := newTLSWorld(t, func(ca *testutil.CA) *tls.Config { return ca.ServerTLS("127.0.0.3") }, true, "")
	in := startWith(t, w.conf+fmt.Sprintf("smarthost = %q\n", w.sink.addr))
	sendTo(t, in, true)
	waitFor(t, "the message at the smarthost", 15*time.Second, func() bool { return len(w.sink.messages()) == 1 })
	if m := w.sink.messages(); !m[0].tls || !m[0].mail.RequireTLS {
		t.Errorf("at the smarthost: TLS %v, REQUIRETLS %v", m[0].tls, m[0].mail.RequireTLS)
	}
}
