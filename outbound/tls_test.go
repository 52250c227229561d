package outbound

// Tests of transport security on the way out: our name in every EHLO,
// MTA-STS (RFC 8461), DANE (RFC 7672), REQUIRETLS (RFC 8689), TLS-RPT
// results, ca_file roots and the source address.

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"postie/dane"
	"postie/envelope"
	"postie/internal/dnstest"
	"postie/internal/testutil"
	"postie/mtasts"
	"postie/tlsrpt"
)

// tlsEnv is env plus what policies need: a test CA that the client
// trusts, a DNS server for the _mta-sts TXT record, the policy host and
// TLSA records (with the AD bit where a test says so), a policy server,
// and a recorder of TLS results.
type tlsEnv struct {
	*env
	ca      *testutil.CA
	ds      *dnstest.Server
	policy  string // served at mta-sts.remote.test; "" serves 404
	mu      sync.Mutex
	port    int
	srv     *httptest.Server
	reports *reportRecorder
	stsDir  string
}

func newTLSEnv(t *testing.T) *tlsEnv {
	te := &tlsEnv{env: newEnv(t), ca: testutil.NewCA(t), ds: dnstest.New(t), reports: &reportRecorder{}, stsDir: t.TempDir()}
	te.ds.A("mta-sts.remote.test", "127.0.0.1")
	te.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		te.mu.Lock()
		p := te.policy
		te.mu.Unlock()
		if p == "" || r.URL.Path != "/.well-known/mta-sts.txt" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte(p))
	}))
	te.srv.TLS = te.ca.ServerTLS("mta-sts.remote.test")
	te.srv.StartTLS()
	t.Cleanup(te.srv.Close)
	_, port, _ := net.SplitHostPort(te.srv.Listener.Addr().String())
	te.port, _ = strconv.Atoi(port)
	return te
}

// sts publishes an MTA-STS policy for remote.test.
func (te *tlsEnv) sts(id, mode string, mx ...string) {
	te.ds.Remove("_mta-sts.remote.test")
	te.ds.TXT("_mta-sts.remote.test", "v=STSv1; id="+id)
	text := "version: STSv1\r\nmode: " + mode + "\r\nmax_age: 86400\r\n"
	for _, m := range mx {
		text += "mx: " + m + "\r\n"
	}
	te.mu.Lock()
	te.policy = text
	te.mu.Unlock()
}

// secure marks names as DNSSEC-validated (the AD bit).
func (te *tlsEnv) secure(names ...string) {
	for _, n := range names {
		te.ds.Authenticated(n, true)
	}
}

// tlsa publishes a DANE-EE SPKI SHA-256 record of cert for host's port 25.
func (te *tlsEnv) tlsa(host string, cert tls.Certificate) {
	sum := sha256.Sum256(cert.Leaf.RawSubjectPublicKeyInfo)
	te.ds.TLSA("_25._tcp."+host, 3, 1, 1, hex.EncodeToString(sum[:]))
}

func (te *tlsEnv) client(mod func(*Options)) *Client {
	sts := mtasts.New(mtasts.Options{Resolver: te.ds.Resolver(), RootCAs: te.ca.Pool(), Port: te.port,
		Dir: te.stsDir, Timeout: 5 * time.Second})
	dr, err := dane.NewResolver(te.ds.Addr(), "")
	if err != nil {
		te.t.Fatal(err)
	}
	return te.env.client(func(o *Options) {
		o.RootCAs, o.STS, o.DANE, o.TLSReports = te.ca.Pool(), sts, dr, te.reports
		if mod != nil {
			mod(o)
		}
	})
}

type reportRecorder struct {
	mu  sync.Mutex
	all []tlsrpt.Result
}

func (r *reportRecorder) ReportTLS(res tlsrpt.Result) {
	r.mu.Lock()
	r.all = append(r.all, res)
	r.mu.Unlock()
}

// want fails unless some result has the policy type and result type.
func (r *reportRecorder) want(t *testing.T, pt tlsrpt.PolicyType, rt tlsrpt.ResultType) tlsrpt.Result {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, x := range r.all {
		if x.PolicyType == pt && x.Type == rt {
			return x
		}
	}
	t.Errorf("no TLS result %s/%q among %+v", pt, rt, r.all)
	return tlsrpt.Result{}
}

func wantEnhanced(t *testing.T, err error, temporary bool, enh [3]int) {
	t.Helper()
	var e *envelope.Error
	if !errors.As(err, &e) || e.Temporary() != temporary || e.Enhanced != enh {
		t.Fatalf("err = %v, want %v (temporary %v)", err, enh, temporary)
	}
}

func sendOne(t *testing.T, c *Client, requireTLS bool) error {
	t.Helper()
	tr := &envelope.Transfer{From: "ann@example.test", To: []string{"bob@remote.test"}, Params: envelope.Params{RequireTLS: requireTLS}}
	errs := c.Deliver(context.Background(), tr, strings.NewReader(testBody), int64(len(testBody)))
	if len(errs) != 1 {
		t.Fatalf("%d results", len(errs))
	}
	return errs[0]
}

// TestEHLONamesOurHostEverywhere: the EHLO before STARTTLS, the one after
// it and the one on a plaintext connection all name our hostname; go-smtp
// on its own says "localhost" before STARTTLS.
func TestEHLONamesOurHostEverywhere(t *testing.T) {
	e := newEnv(t)
	tlsSink := newSink(t, sinkOpts{tls: testutil.ServerTLS(t, "mx1.remote.test")})
	plainSink := newSink(t, sinkOpts{})
	e.mx("remote.test", 10, "mx1.remote.test", "192.0.2.1", tlsSink.addr)
	e.mx("plain.test", 10, "mx1.plain.test", "192.0.2.2", plainSink.addr)
	c := e.client(nil)
	wantDelivered(t, deliver(t, c, "ann@example.test", []string{"bob@remote.test"}, testBody))
	wantDelivered(t, deliver(t, c, "ann@example.test", []string{"bob@plain.test"}, testBody))
	for name, s := range map[string]*sink{"STARTTLS": tlsSink, "plaintext": plainSink} {
		names, _ := s.hellos()
		if len(names) == 0 {
			t.Fatalf("%s sink saw no EHLO", name)
		}
		for _, n := range names {
			if n != "postie.example.test" {
				t.Errorf("%s sink: EHLO names %q (all: %q), want postie.example.test", name, n, names)
			}
		}
	}
	if names, _ := tlsSink.hellos(); len(names) != 2 {
		t.Errorf("STARTTLS sink saw %d EHLOs, want 2 (before and after STARTTLS)", len(names))
	}
}

func TestSTSEnforceMXNotInPolicyDefers(t *testing.T) {
	te := newTLSEnv(t)
	s := newSink(t, sinkOpts{tls: te.ca.ServerTLS("mx9.remote.test")})
	te.mx("remote.test", 10, "mx9.remote.test", "192.0.2.9", s.addr)
	te.sts("1", "enforce", "mx1.remote.test")
	err := sendOne(t, te.client(nil), false)
	wantEnhanced(t, err, true, [3]int{4, 7, 5})
	if s.connections() != 0 || len(s.messages()) != 0 {
		t.Errorf("an MX host outside the policy got %d connections, %d messages", s.connections(), len(s.messages()))
	}
	te.reports.want(t, tlsrpt.PolicySTS, tlsrpt.ValidationFailure)
}

func TestSTSEnforceWithoutSTARTTLSDefers(t *testing.T) {
	te := newTLSEnv(t)
	s := newSink(t, sinkOpts{})
	te.mx("remote.test", 10, "mx1.remote.test", "192.0.2.1", s.addr)
	te.sts("1", "enforce", "mx1.remote.test")
	c := te.client(nil)
	for range 2 { // the second attempt must not take a remembered plaintext path
		err := sendOne(t, c, false)
		wantEnhanced(t, err, true, [3]int{4, 7, 4})
	}
	if n := len(s.messages()); n != 0 {
		t.Fatalf("%d messages delivered in plaintext under an enforced policy", n)
	}
	te.reports.want(t, tlsrpt.PolicySTS, tlsrpt.StartTLSNotSupported)
}

func TestSTSEnforceValidCertificateDelivers(t *testing.T) {
	te := newTLSEnv(t)
	s := newSink(t, sinkOpts{tls: te.ca.ServerTLS("mx1.remote.test")})
	te.mx("remote.test", 10, "mx1.remote.test", "192.0.2.1", s.addr)
	te.sts("1", "enforce", "*.remote.test")
	if err := sendOne(t, te.client(nil), false); err != nil {
		t.Fatal(err)
	}
	if m := s.messages(); len(m) != 1 || !m[0].tls {
		t.Fatalf("messages %+v, want one over TLS", m)
	}
	r := te.reports.want(t, tlsrpt.PolicySTS, tlsrpt.Success)
	if r.MXHost != "mx1.remote.test" || r.ReceivingIP != "192.0.2.1" || r.PolicyDomain != "remote.test" ||
		len(r.PolicyStrings) == 0 || r.SendingIP == "" {
		t.Errorf("result %+v", r)
	}
}

func TestSTSEnforceBadCertificatesDefer(t *testing.T) {
	for name, tc := range map[string]struct {
		cfg  func(*tlsEnv) *tls.Config
		want tlsrpt.ResultType
	}{
		"untrusted":  {func(te *tlsEnv) *tls.Config { return testutil.ServerTLS(te.t, "mx1.remote.test") }, tlsrpt.CertificateNotTrusted},
		"other name": {func(te *tlsEnv) *tls.Config { return te.ca.ServerTLS("mx2.remote.test") }, tlsrpt.CertificateHostMismatch},
		"expired": {func(te *tlsEnv) *tls.Config {
			c := te.ca.Issue([]string{"mx1.remote.test"}, time.Now().Add(-72*time.Hour), time.Now().Add(-48*time.Hour))
			return &tls.Config{Certificates: []tls.Certificate{c}}
		}, tlsrpt.CertificateExpired},
	} {
		t.Run(name, func(t *testing.T) {
			te := newTLSEnv(t)
			s := newSink(t, sinkOpts{tls: tc.cfg(te)})
			te.mx("remote.test", 10, "mx1.remote.test", "192.0.2.1", s.addr)
			te.sts("1", "enforce", "mx1.remote.test")
			wantEnhanced(t, sendOne(t, te.client(nil), false), true, [3]int{4, 7, 5})
			if len(s.messages()) != 0 {
				t.Fatal("delivered over TLS the policy refuses")
			}
			te.reports.want(t, tlsrpt.PolicySTS, tc.want)
		})
	}
}

func TestSTSTestingDeliversAndReports(t *testing.T) {
	te := newTLSEnv(t)
	s := newSink(t, sinkOpts{})
	te.mx("remote.test", 10, "mx1.remote.test", "192.0.2.1", s.addr)
	te.sts("1", "testing", "mx1.remote.test")
	if err := sendOne(t, te.client(nil), false); err != nil {
		t.Fatal(err)
	}
	if len(s.messages()) != 1 {
		t.Fatal("testing mode did not deliver")
	}
	te.reports.want(t, tlsrpt.PolicySTS, tlsrpt.StartTLSNotSupported)
}

// TestSTSPolicyCachedOnDiskSurvivesNewClient: the policy learnt by one
// Client holds for the next (a restart), even when the attacker has
// removed the record and the policy host and strips STARTTLS.
func TestSTSPolicyCachedOnDiskSurvivesNewClient(t *testing.T) {
	te := newTLSEnv(t)
	good := newSink(t, sinkOpts{tls: te.ca.ServerTLS("mx1.remote.test")})
	te.mx("remote.test", 10, "mx1.remote.test", "192.0.2.1", good.addr)
	te.sts("1", "enforce", "mx1.remote.test")
	if err := sendOne(t, te.client(nil), false); err != nil {
		t.Fatal(err)
	}
	te.ds.Remove("_mta-sts.remote.test")
	te.srv.Close()
	stripped := newSink(t, sinkOpts{})
	te.net.route("192.0.2.1", 25, stripped.addr)
	wantEnhanced(t, sendOne(t, te.client(nil), false), true, [3]int{4, 7, 4})
	if len(stripped.messages()) != 0 {
		t.Fatal("the new Client forgot the cached policy and delivered in plaintext")
	}
	if _, err := os.Stat(filepath.Join(te.stsDir, "remote.test.json")); err != nil {
		t.Errorf("no policy file on disk: %v", err)
	}
}

func TestDANE(t *testing.T) {
	all := []string{"remote.test", "mx1.remote.test", "_25._tcp.mx1.remote.test"}
	for name, tc := range map[string]struct {
		match     bool
		secure    []string // the names whose answers carry the AD bit
		delivered bool
	}{
		"match with AD":             {match: true, secure: all, delivered: true},
		"mismatch with AD":          {match: false, secure: all, delivered: false},
		"mismatch without AD":       {match: false, delivered: true},
		"mismatch, TLSA without AD": {match: false, secure: all[:2], delivered: true},
		"mismatch, MX without AD":   {match: false, secure: all[1:], delivered: true},
		"mismatch, A without AD":    {match: false, secure: []string{all[0], all[2]}, delivered: true},
	} {
		t.Run(name, func(t *testing.T) {
			te := newTLSEnv(t)
			cert, _ := testutil.Certificate(t, "mx1.remote.test") // self-signed: only DANE can vouch for it
			s := newSink(t, sinkOpts{tls: &tls.Config{Certificates: []tls.Certificate{cert}}})
			te.mx("remote.test", 10, "mx1.remote.test", "192.0.2.1", s.addr)
			if tc.match {
				te.tlsa("mx1.remote.test", cert)
			} else {
				other, _ := testutil.Certificate(t, "mx1.remote.test")
				te.tlsa("mx1.remote.test", other)
			}
			te.ds.A("mx1.remote.test", "192.0.2.1")
			te.ds.MX("remote.test", 10, "mx1.remote.test")
			te.secure(tc.secure...)
			err := sendOne(t, te.client(nil), false)
			if tc.delivered {
				if err != nil || len(s.messages()) != 1 {
					t.Fatalf("err %v, %d messages; want delivered", err, len(s.messages()))
				}
			} else {
				wantEnhanced(t, err, true, [3]int{4, 7, 5})
				if len(s.messages()) != 0 {
					t.Fatal("delivered despite the TLSA mismatch")
				}
				te.reports.want(t, tlsrpt.PolicyTLSA, tlsrpt.ValidationFailure)
			}
			if tc.match {
				te.reports.want(t, tlsrpt.PolicyTLSA, tlsrpt.Success)
			}
		})
	}
}

// TestDANELookupFailuresDefer: when the validating resolver cannot say
// whether the MX answer or the MX host's address is secure, or cannot
// answer the TLSA query of a secure host (SERVFAIL), the host is not tried
// at all: falling back to opportunistic TLS would let whoever breaks the
// lookup turn DANE off (RFC 7672 sections 2.1.1, 2.2).
func TestDANELookupFailuresDefer(t *testing.T) {
	for name, broken := range map[string]string{
		"MX":   "remote.test",
		"A":    "mx1.remote.test",
		"TLSA": "_25._tcp.mx1.remote.test",
	} {
		t.Run(name, func(t *testing.T) {
			te := newTLSEnv(t)
			cert, _ := testutil.Certificate(t, "mx1.remote.test")
			s := newSink(t, sinkOpts{tls: &tls.Config{Certificates: []tls.Certificate{cert}}})
			te.mx("remote.test", 10, "mx1.remote.test", "192.0.2.1", s.addr)
			other, _ := testutil.Certificate(t, "mx1.remote.test")
			te.tlsa("mx1.remote.test", other) // a mismatch, were the lookup to work
			te.ds.A("mx1.remote.test", "192.0.2.1")
			te.ds.MX("remote.test", 10, "mx1.remote.test")
			te.secure("remote.test", "mx1.remote.test", "_25._tcp.mx1.remote.test")
			te.ds.ServFail(broken)
			err := sendOne(t, te.client(nil), false)
			wantEnhanced(t, err, true, [3]int{4, 4, 3})
			if n := len(s.messages()); n != 0 {
				t.Fatalf("%d messages delivered although DANE could not be checked", n)
			}
		})
	}
}

// sendRelaxed sends testBody with a "TLS-Required: No" field (RFC 8689
// section 5) to bob@remote.test.
func sendRelaxed(t *testing.T, c *Client, requireTLS bool) error {
	t.Helper()
	body := "TLS-Required:  no \r\n" + testBody
	tr := &envelope.Transfer{From: "ann@example.test", To: []string{"bob@remote.test"}, Params: envelope.Params{RequireTLS: requireTLS}}
	return c.Deliver(context.Background(), tr, strings.NewReader(body), int64(len(body)))[0]
}

// TestTLSRequiredNo: a message whose header says "TLS-Required: No" is
// delivered although the domain's policy would stop it (an MTA-STS MX
// mismatch, no STARTTLS under enforce, a DANE mismatch); its connection is
// not reused for mail without the field; REQUIRETLS overrides the field.
func TestTLSRequiredNo(t *testing.T) {
	t.Run("MTA-STS MX mismatch", func(t *testing.T) {
		te := newTLSEnv(t)
		s := newSink(t, sinkOpts{tls: te.ca.ServerTLS("mx9.remote.test")})
		te.mx("remote.test", 10, "mx9.remote.test", "192.0.2.9", s.addr)
		te.sts("1", "enforce", "mx1.remote.test")
		c := te.client(nil)
		if err := sendRelaxed(t, c, false); err != nil || len(s.messages()) != 1 {
			t.Fatalf("err %v, %d messages; want delivered", err, len(s.messages()))
		}
		// The next message has no such field: the policy applies again,
		// and the idle connection left by the first is not used.
		wantEnhanced(t, sendOne(t, c, false), true, [3]int{4, 7, 5})
		if n := len(s.messages()); n != 1 {
			t.Fatalf("%d messages: one without TLS-Required: No went out despite the policy", n)
		}
	})
	t.Run("no STARTTLS under enforce", func(t *testing.T) {
		te := newTLSEnv(t)
		s := newSink(t, sinkOpts{})
		te.mx("remote.test", 10, "mx1.remote.test", "192.0.2.1", s.addr)
		te.sts("1", "enforce", "mx1.remote.test")
		if err := sendRelaxed(t, te.client(nil), false); err != nil || len(s.messages()) != 1 {
			t.Fatalf("err %v, %d messages; want delivered in plaintext", err, len(s.messages()))
		}
	})
	t.Run("DANE mismatch", func(t *testing.T) {
		te := newTLSEnv(t)
		cert, _ := testutil.Certificate(t, "mx1.remote.test")
		s := newSink(t, sinkOpts{tls: &tls.Config{Certificates: []tls.Certificate{cert}}})
		te.mx("remote.test", 10, "mx1.remote.test", "192.0.2.1", s.addr)
		other, _ := testutil.Certificate(t, "mx1.remote.test")
		te.tlsa("mx1.remote.test", other)
		te.ds.A("mx1.remote.test", "192.0.2.1")
		te.ds.MX("remote.test", 10, "mx1.remote.test")
		te.secure("remote.test", "mx1.remote.test", "_25._tcp.mx1.remote.test")
		if err := sendRelaxed(t, te.client(nil), false); err != nil || len(s.messages()) != 1 {
			t.Fatalf("err %v, %d messages; want delivered", err, len(s.messages()))
		}
		if !s.messages()[0].tls {
			t.Error("STARTTLS was offered but not used")
		}
	})
	t.Run("REQUIRETLS wins", func(t *testing.T) {
		te := newTLSEnv(t)
		s := newSink(t, sinkOpts{})
		te.mx("remote.test", 10, "mx1.remote.test", "192.0.2.1", s.addr)
		wantEnhanced(t, sendRelaxed(t, te.client(nil), true), false, [3]int{5, 7, 30})
		if len(s.messages()) != 0 {
			t.Fatal("a REQUIRETLS message went out without verified TLS")
		}
	})
}

// TestDANEUnusableTLSAStillRequiresTLS: secure TLSA records that are all
// unusable (here PKIX-EE, usage 1) still say the host does TLS: without
// STARTTLS the host is deferred, never used in plaintext; with it any
// certificate will do (RFC 7672 section 2.2, Postfix's "encrypt"), but
// that is not verified TLS for REQUIRETLS.
func TestDANEUnusableTLSAStillRequiresTLS(t *testing.T) {
	setup := func(t *testing.T, o sinkOpts) (*tlsEnv, *sink) {
		te := newTLSEnv(t)
		s := newSink(t, o)
		te.mx("remote.test", 10, "mx1.remote.test", "192.0.2.1", s.addr)
		sum := sha256.Sum256([]byte("some key"))
		te.ds.TLSA("_25._tcp.mx1.remote.test", 1, 1, 1, hex.EncodeToString(sum[:]))
		te.ds.A("mx1.remote.test", "192.0.2.1")
		te.ds.MX("remote.test", 10, "mx1.remote.test")
		te.secure("remote.test", "mx1.remote.test", "_25._tcp.mx1.remote.test")
		return te, s
	}
	t.Run("no STARTTLS", func(t *testing.T) {
		te, s := setup(t, sinkOpts{})
		wantEnhanced(t, sendOne(t, te.client(nil), false), true, [3]int{4, 7, 4})
		if len(s.messages()) != 0 {
			t.Fatal("delivered in plaintext to a host with TLSA records")
		}
		te.reports.want(t, tlsrpt.PolicyTLSA, tlsrpt.StartTLSNotSupported)
	})
	t.Run("any certificate", func(t *testing.T) {
		cert, _ := testutil.Certificate(t, "other.name.test")
		te, s := setup(t, sinkOpts{tls: &tls.Config{Certificates: []tls.Certificate{cert}}, requireTLS: true})
		if err := sendOne(t, te.client(nil), false); err != nil || len(s.messages()) != 1 || !s.messages()[0].tls {
			t.Fatalf("err %v, %d messages; want delivered over TLS", err, len(s.messages()))
		}
		wantEnhanced(t, sendOne(t, te.client(nil), true), false, [3]int{5, 7, 30})
		if len(s.messages()) != 1 {
			t.Fatal("a REQUIRETLS message went out over unverified TLS")
		}
	})
}

// TestDANEWinsOverSTS: the MTA-STS policy names another MX host, but the
// host's TLSA records vouch for it: DANE applies (RFC 8461 section 2).
func TestDANEWinsOverSTS(t *testing.T) {
	te := newTLSEnv(t)
	cert, _ := testutil.Certificate(t, "mx1.remote.test")
	s := newSink(t, sinkOpts{tls: &tls.Config{Certificates: []tls.Certificate{cert}}})
	te.mx("remote.test", 10, "mx1.remote.test", "192.0.2.1", s.addr)
	te.sts("1", "enforce", "other.remote.test")
	te.tlsa("mx1.remote.test", cert)
	te.ds.A("mx1.remote.test", "192.0.2.1")
	te.ds.MX("remote.test", 10, "mx1.remote.test")
	te.secure("remote.test", "mx1.remote.test", "_25._tcp.mx1.remote.test")
	if err := sendOne(t, te.client(nil), false); err != nil || len(s.messages()) != 1 {
		t.Fatalf("err %v, %d messages", err, len(s.messages()))
	}
}

func TestRequireTLS(t *testing.T) {
	t.Run("plain sink, no policy", func(t *testing.T) {
		te := newTLSEnv(t)
		s := newSink(t, sinkOpts{})
		te.mx("remote.test", 10, "mx1.remote.test", "192.0.2.1", s.addr)
		wantEnhanced(t, sendOne(t, te.client(nil), true), false, [3]int{5, 7, 30})
		if len(s.messages()) != 0 {
			t.Fatal("a REQUIRETLS message went out without verified TLS")
		}
	})
	t.Run("opportunistic TLS, no policy", func(t *testing.T) {
		te := newTLSEnv(t)
		s := newSink(t, sinkOpts{tls: te.ca.ServerTLS("mx1.remote.test"), requireTLS: true})
		te.mx("remote.test", 10, "mx1.remote.test", "192.0.2.1", s.addr)
		wantEnhanced(t, sendOne(t, te.client(nil), true), false, [3]int{5, 7, 30})
	})
	t.Run("verified, but the host lacks REQUIRETLS", func(t *testing.T) {
		te := newTLSEnv(t)
		s := newSink(t, sinkOpts{tls: te.ca.ServerTLS("mx1.remote.test")})
		te.mx("remote.test", 10, "mx1.remote.test", "192.0.2.1", s.addr)
		te.sts("1", "enforce", "mx1.remote.test")
		wantEnhanced(t, sendOne(t, te.client(nil), true), false, [3]int{5, 7, 30})
		if len(s.messages()) != 0 {
			t.Fatal("sent to a host without REQUIRETLS")
		}
	})
	t.Run("policy cannot be fetched", func(t *testing.T) {
		te := newTLSEnv(t)
		s := newSink(t, sinkOpts{})
		te.mx("remote.test", 10, "mx1.remote.test", "192.0.2.1", s.addr)
		te.ds.TXT("_mta-sts.remote.test", "v=STSv1; id=1") // but the policy host answers 404
		wantEnhanced(t, sendOne(t, te.client(nil), true), true, [3]int{4, 7, 30})
		te.reports.want(t, tlsrpt.PolicySTS, tlsrpt.STSPolicyFetchError)
	})
	t.Run("policy record cannot be looked up", func(t *testing.T) {
		te := newTLSEnv(t)
		s := newSink(t, sinkOpts{})
		te.mx("remote.test", 10, "mx1.remote.test", "192.0.2.1", s.addr)
		te.ds.ServFail("_mta-sts.remote.test") // a DNS failure is no proof of no policy
		wantEnhanced(t, sendOne(t, te.client(nil), true), true, [3]int{4, 7, 30})
		if len(s.messages()) != 0 {
			t.Fatal("a REQUIRETLS message went out without verified TLS")
		}
	})
	t.Run("testing policy counts as enforce", func(t *testing.T) {
		te := newTLSEnv(t)
		s := newSink(t, sinkOpts{})
		te.mx("remote.test", 10, "mx1.remote.test", "192.0.2.1", s.addr)
		te.sts("1", "testing", "mx1.remote.test")
		wantEnhanced(t, sendOne(t, te.client(nil), true), true, [3]int{4, 7, 4})
	})
	t.Run("verified and advertised", func(t *testing.T) {
		te := newTLSEnv(t)
		s := newSink(t, sinkOpts{tls: te.ca.ServerTLS("mx1.remote.test"), requireTLS: true})
		te.mx("remote.test", 10, "mx1.remote.test", "192.0.2.1", s.addr)
		te.sts("1", "testing", "mx1.remote.test")
		c := te.client(nil)
		if err := sendOne(t, c, false); err != nil { // leaves an idle, unverified-policy connection
			t.Fatal(err)
		}
		if err := sendOne(t, c, true); err != nil {
			t.Fatal(err)
		}
		m := s.messages()
		if len(m) != 2 || !m[1].requireTLS || !m[1].tls || m[0].requireTLS {
			t.Fatalf("messages %+v, want the second with REQUIRETLS over TLS", m)
		}
	})
}

func TestRequireTLSThroughSmarthost(t *testing.T) {
	ca := testutil.NewCA(t)
	for _, adv := range []bool{true, false} {
		e := newEnv(t)
		s := newSink(t, sinkOpts{tls: ca.ServerTLS("relay.test"), requireTLS: adv})
		e.dns.addHost("relay.test", "192.0.2.50")
		e.net.route("192.0.2.50", 587, s.addr)
		c := e.client(func(o *Options) { o.Smarthost, o.RootCAs = "relay.test:587", ca.Pool() })
		err := sendOne(t, c, true)
		if adv {
			if err != nil || len(s.messages()) != 1 || !s.messages()[0].requireTLS {
				t.Errorf("smarthost with REQUIRETLS: %v, %+v", err, s.messages())
			}
		} else {
			wantEnhanced(t, err, false, [3]int{5, 7, 30})
		}
	}
}

func TestSourceIP(t *testing.T) {
	e := newEnv(t)
	s := newSink(t, sinkOpts{})
	_, port, _ := net.SplitHostPort(s.addr)
	e.dns.addMX("remote.test", 10, "mx1.remote.test")
	e.dns.addHost("mx1.remote.test", "127.0.0.1")
	p, _ := strconv.Atoi(port)
	c := e.client(func(o *Options) { o.Dial, o.Port, o.SourceIP = nil, p, net.ParseIP("127.0.0.2") })
	wantDelivered(t, deliver(t, c, "ann@example.test", []string{"bob@remote.test"}, testBody))
	_, remotes := s.hellos()
	if len(remotes) == 0 {
		t.Fatal("no connection")
	}
	for _, r := range remotes {
		if host, _, _ := net.SplitHostPort(r); host != "127.0.0.2" {
			t.Errorf("connection from %s, want 127.0.0.2", r)
		}
	}
}

func TestLoadRoots(t *testing.T) {
	ca := testutil.NewCA(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "ca.pem")
	os.WriteFile(path, ca.PEM(), 0o644)
	pool, err := LoadRoots(path)
	if err != nil {
		t.Fatal(err)
	}
	cert := ca.Issue([]string{"mx.test"})
	if err := verifyPeer(tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert.Leaf}}, "mx.test", pool); err != nil {
		t.Errorf("a certificate of the ca_file CA does not verify: %v", err)
	}
	if p, err := LoadRoots(""); p != nil || err != nil {
		t.Errorf(`LoadRoots("") = %v, %v`, p, err)
	}
	os.WriteFile(path, []byte("not a certificate"), 0o644)
	if _, err := LoadRoots(path); err == nil {
		t.Error("a file without PEM was accepted")
	}
	if _, err := LoadRoots(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing file was accepted")
	}
}

type stsSpy struct {
	mu    sync.Mutex
	asked []string
}

func (s *stsSpy) Lookup(_ context.Context, domain string) (*mtasts.Policy, error) {
	s.mu.Lock()
	s.asked = append(s.asked, domain)
	s.mu.Unlock()
	return nil, nil
}

// TestSTSLooksUpALabel: the policy of an internationalised domain is
// looked up under its A-label, where DNS has it.
func TestSTSLooksUpALabel(t *testing.T) {
	e := newEnv(t)
	s := newSink(t, sinkOpts{utf8: true})
	e.mx("xn--bcher-kva.test", 10, "mx1.xn--bcher-kva.test", "192.0.2.1", s.addr)
	spy := &stsSpy{}
	c := e.client(func(o *Options) { o.STS = spy })
	wantDelivered(t, deliver(t, c, "ann@example.test", []string{"bob@bücher.test"}, testBody))
	if len(spy.asked) != 1 || spy.asked[0] != "xn--bcher-kva.test" {
		t.Errorf("policies looked up for %q, want the A-label", spy.asked)
	}
}

// TestDANETA: a DANE-TA record names the CA; the MX's chain must lead to
// it and name the MX host (RFC 7672 section 3.2), whatever the WebPKI says.
func TestDANETA(t *testing.T) {
	for _, tc := range []struct {
		certName  string
		delivered bool
	}{{"mx1.remote.test", true}, {"other.remote.test", false}} {
		te := newTLSEnv(t)
		ca := testutil.NewCA(t) // not among the client's roots
		s := newSink(t, sinkOpts{tls: ca.ServerTLS(tc.certName)})
		te.mx("remote.test", 10, "mx1.remote.test", "192.0.2.1", s.addr)
		sum := sha256.Sum256(ca.Cert.RawSubjectPublicKeyInfo)
		te.ds.TLSA("_25._tcp.mx1.remote.test", 2, 1, 1, hex.EncodeToString(sum[:]))
		te.ds.A("mx1.remote.test", "192.0.2.1")
		te.secure("remote.test", "mx1.remote.test", "_25._tcp.mx1.remote.test")
		err := sendOne(t, te.client(nil), false)
		if tc.delivered && (err != nil || len(s.messages()) != 1) {
			t.Errorf("%s: err %v, %d messages; want delivered", tc.certName, err, len(s.messages()))
		}
		if !tc.delivered {
			wantEnhanced(t, err, true, [3]int{4, 7, 5})
			if n := len(s.messages()); n != 0 {
				t.Errorf("%s: %d messages delivered to a host whose chain names another", tc.certName, n)
			}
		}
	}
}
