package dane

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/miekg/dns"

	"postie/internal/dnstest"
	"postie/internal/testutil"
)

func chainOf(t testing.TB, ca *testutil.CA, hosts []string, validity ...time.Time) []*x509.Certificate {
	t.Helper()
	cert := ca.Issue(hosts, validity...)
	var out []*x509.Certificate
	for _, der := range cert.Certificate {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

func sum256(b []byte) []byte { s := sha256.Sum256(b); return s[:] }
func sum512(b []byte) []byte { s := sha512.Sum512(b); return s[:] }

func TestVerify(t *testing.T) {
	ca := testutil.NewCA(t)
	now := time.Now()
	chain := chainOf(t, ca, []string{"mx.remote.test"})
	leaf, root := chain[0], chain[1]
	expired := chainOf(t, ca, []string{"other.test"}, now.Add(-48*time.Hour), now.Add(-24*time.Hour))
	other := chainOf(t, testutil.NewCA(t), []string{"mx.remote.test"})

	ok := map[string]struct {
		rec   Record
		chain []*x509.Certificate
	}{
		"EE spki sha256":             {Record{3, 1, 1, sum256(leaf.RawSubjectPublicKeyInfo)}, chain},
		"EE cert sha512":             {Record{3, 0, 2, sum512(leaf.Raw)}, chain},
		"EE cert full":               {Record{3, 0, 0, leaf.Raw}, chain},
		"EE ignores names and dates": {Record{3, 1, 1, sum256(expired[0].RawSubjectPublicKeyInfo)}, expired},
		"TA spki sha256":             {Record{2, 1, 1, sum256(root.RawSubjectPublicKeyInfo)}, chain},
		"TA cert sha256":             {Record{2, 0, 1, sum256(root.Raw)}, chain},
	}
	for name, tc := range ok {
		if err := Verify([]Record{tc.rec}, "mx.remote.test.", tc.chain, now); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	bad := map[string]struct {
		recs  []Record
		host  string
		chain []*x509.Certificate
	}{
		"EE other key":           {[]Record{{3, 1, 1, sum256(other[0].RawSubjectPublicKeyInfo)}}, "mx.remote.test", chain},
		"TA other CA":            {[]Record{{2, 1, 1, sum256(other[1].RawSubjectPublicKeyInfo)}}, "mx.remote.test", chain},
		"TA name mismatch":       {[]Record{{2, 1, 1, sum256(root.RawSubjectPublicKeyInfo)}}, "mx2.remote.test", chain},
		"TA does not match leaf": {[]Record{{2, 1, 1, sum256(leaf.RawSubjectPublicKeyInfo)}}, "mx.remote.test", chain},
		"PKIX-EE unusable":       {[]Record{{1, 1, 1, sum256(leaf.RawSubjectPublicKeyInfo)}}, "mx.remote.test", chain},
		"PKIX-TA unusable":       {[]Record{{0, 1, 1, sum256(root.RawSubjectPublicKeyInfo)}}, "mx.remote.test", chain},
		"bad matching type":      {[]Record{{3, 1, 3, sum256(leaf.RawSubjectPublicKeyInfo)}}, "mx.remote.test", chain},
		"short digest":           {[]Record{{3, 1, 1, sum256(leaf.RawSubjectPublicKeyInfo)[:31]}}, "mx.remote.test", chain},
		"no chain":               {[]Record{{3, 1, 1, sum256(leaf.RawSubjectPublicKeyInfo)}}, "mx.remote.test", nil},
	}
	for name, tc := range bad {
		if err := Verify(tc.recs, tc.host, tc.chain, now); !errors.Is(err, ErrMismatch) {
			t.Errorf("%s: Verify = %v, want ErrMismatch", name, err)
		}
	}
	if got := Usable([]Record{{1, 1, 1, sum256(nil)}, {3, 1, 1, sum256(nil)}}); len(got) != 1 || got[0].Usage != 3 {
		t.Errorf("Usable = %v", got)
	}
}

func TestLookupTLSA(t *testing.T) {
	s := dnstest.New(t)
	data := hex.EncodeToString(sum256([]byte("key")))
	s.TLSA("_25._tcp.mx.secure.test", 3, 1, 1, data)
	s.Authenticated("_25._tcp.mx.secure.test", true)
	s.TLSA("_25._tcp.mx.plain.test", 3, 1, 1, data)
	s.A("mx.none.test", "192.0.2.1")
	s.Authenticated("_25._tcp.mx.none.test", true)
	s.ServFail("_25._tcp.mx.broken.test")
	r, err := NewResolver(s.Addr(), "")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	got, err := r.LookupTLSA(ctx, "mx.secure.test", 25)
	if err != nil || !got.Secure || len(got.Records) != 1 || got.Records[0].String() != "3 1 1 "+data {
		t.Errorf("secure: %+v %v", got, err)
	}
	if got, err := r.LookupTLSA(ctx, "mx.plain.test.", 25); err != nil || got.Secure || len(got.Records) != 1 {
		t.Errorf("without AD: %+v %v", got, err)
	}
	if got, err := r.LookupTLSA(ctx, "mx.none.test", 25); err != nil || !got.Secure || len(got.Records) != 0 {
		t.Errorf("validated denial: %+v %v", got, err)
	}
	if _, err := r.LookupTLSA(ctx, "mx.broken.test", 25); err == nil {
		t.Error("SERVFAIL gave no error")
	}
	s.MX("secure.test", 10, "mx.secure.test")
	s.Authenticated("secure.test", true)
	if ok, err := r.Secure(ctx, "secure.test", dns.TypeMX); !ok || err != nil {
		t.Errorf("Secure(MX secure.test) = %v %v", ok, err)
	}
	if ok, err := r.Secure(ctx, "mx.none.test", dns.TypeA); ok || err != nil {
		t.Errorf("Secure(A mx.none.test) = %v %v", ok, err)
	}
}

func TestNewResolverTrustsOnlyLoopbackFromResolvConf(t *testing.T) {
	dir := t.TempDir()
	write := func(text string) string {
		p := filepath.Join(dir, "resolv.conf")
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	r, err := NewResolver("", write("nameserver 127.0.0.1\nnameserver 192.0.2.53\n"))
	if err != nil || r.Addr() != "127.0.0.1:53" {
		t.Errorf("loopback: %v %v", r, err)
	}
	if _, err := NewResolver("", write("nameserver 192.0.2.53\nnameserver 127.0.0.1\n")); !errors.Is(err, ErrNoResolver) {
		t.Errorf("remote first nameserver: %v, want ErrNoResolver", err)
	}
	if _, err := NewResolver("", filepath.Join(dir, "missing")); !errors.Is(err, ErrNoResolver) {
		t.Errorf("no resolv.conf: %v", err)
	}
}

// FuzzTLSAAnswer: any DNS answer from the resolver (wire form) is read
// without panic into at most maxTLSA records, and verifying a real chain
// against them never panics and succeeds only through a usable record.
func FuzzTLSAAnswer(f *testing.F) {
	ca := testutil.NewCA(f)
	chain := chainOf(f, ca, []string{"mx.remote.test"})
	for _, recs := range [][]Record{
		{{3, 1, 1, sum256(chain[0].RawSubjectPublicKeyInfo)}},
		{{2, 0, 1, sum256(chain[1].Raw)}, {1, 1, 1, sum256(nil)}, {3, 0, 0, []byte{1}}},
	} {
		m := new(dns.Msg)
		m.SetQuestion("_25._tcp.mx.remote.test.", dns.TypeTLSA)
		m.Response, m.AuthenticatedData = true, true
		for _, r := range recs {
			m.Answer = append(m.Answer, &dns.TLSA{
				Hdr:   dns.RR_Header{Name: "_25._tcp.mx.remote.test.", Rrtype: dns.TypeTLSA, Class: dns.ClassINET, Ttl: 60},
				Usage: r.Usage, Selector: r.Selector, MatchingType: r.MatchingType, Certificate: hex.EncodeToString(r.Data),
			})
		}
		wire, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(wire)
	}
	now := time.Now()
	f.Fuzz(func(t *testing.T, wire []byte) {
		in := new(dns.Msg)
		if in.Unpack(wire) != nil {
			return
		}
		res := tlsaAnswer(in)
		if len(res.Records) > maxTLSA || res.Secure != in.AuthenticatedData {
			t.Fatalf("%d records, secure %v", len(res.Records), res.Secure)
		}
		if Verify(res.Records, "mx.remote.test", chain, now) == nil && len(Usable(res.Records)) == 0 {
			t.Fatal("verified without a usable record")
		}
	})
}

// TestTLSAAnswerBounded: a huge TLSA RRset is cut at 64 records.
func TestTLSAAnswerBounded(t *testing.T) {
	m := new(dns.Msg)
	m.SetQuestion("_25._tcp.mx.remote.test.", dns.TypeTLSA)
	for i := 0; i < 80; i++ {
		m.Answer = append(m.Answer, &dns.TLSA{Hdr: dns.RR_Header{Name: "_25._tcp.mx.remote.test.", Rrtype: dns.TypeTLSA, Class: dns.ClassINET},
			Usage: 3, Certificate: "00"})
	}
	if got := tlsaAnswer(m); len(got.Records) != 64 {
		t.Errorf("%d records kept, want 64", len(got.Records))
	}
}
