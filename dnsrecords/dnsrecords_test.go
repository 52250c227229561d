package dnsrecords

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"postie/dkim"
	"postie/internal/dnstest"
	"postie/webconf"
)

func testOptions(t *testing.T) Options {
	t.Helper()
	dir := t.TempDir()
	if _, _, err := dkim.KeyGen(dir, "example.test", "postie"); err != nil {
		t.Fatal(err)
	}
	return Options{
		Hostname: "mx.example.test", Domains: []string{"example.test"},
		IPs:     []netip.Addr{netip.MustParseAddr("192.0.2.1")},
		DKIMDir: dir, DKIMSelector: "postie",
		Ports: Ports{Submissions: 465, Submission: 587, IMAPS: 993},
	}
}

func find(t *testing.T, recs []Record, name, typ string) Record {
	t.Helper()
	for _, r := range recs {
		if r.Name == name && r.Type == typ {
			return r
		}
	}
	t.Fatalf("no %s %s in %+v", typ, name, recs)
	return Record{}
}

func TestWant(t *testing.T) {
	o := testOptions(t)
	recs := Want(o)
	for _, c := range []struct{ name, typ, value string }{
		{"example.test", "MX", "10 mx.example.test."},
		{"mx.example.test", "A", "192.0.2.1"},
		{"1.2.0.192.in-addr.arpa", "PTR", "mx.example.test."},
		{"example.test", "TXT", "v=spf1 mx -all"},
		{"_dmarc.example.test", "TXT", "v=DMARC1; p=quarantine; rua=mailto:postmaster@example.test"},
		{"_smtp._tls.example.test", "TXT", "v=TLSRPTv1; rua=mailto:postmaster@example.test"},
		{"_submissions._tcp.example.test", "SRV", "0 1 465 mx.example.test."},
		{"_imap._tcp.example.test", "SRV", "0 0 0 ."},
		{"_autodiscover._tcp.example.test", "SRV", "0 1 443 mx.example.test."},
		{"autoconfig.example.test", "CNAME", "mx.example.test."},
		{"mta-sts.example.test", "CNAME", "mx.example.test."},
	} {
		if got := find(t, recs, c.name, c.typ).Value; got != c.value {
			t.Errorf("%s %s = %q, want %q", c.name, c.typ, got, c.value)
		}
	}
	_, dk, _ := dkim.Record(o.DKIMDir, "example.test", "postie")
	if got := find(t, recs, "postie._domainkey.example.test", "TXT").Value; got != dk {
		t.Errorf("DKIM = %q, want %q", got, dk)
	}
	sts := find(t, recs, "_mta-sts.example.test", "TXT").Value
	o.STS = STSPolicy{Mode: "enforce", MaxAge: 604800}
	if sts2 := find(t, Want(o), "_mta-sts.example.test", "TXT").Value; sts2 == sts || !strings.HasPrefix(sts2, "v=STSv1; id=") {
		t.Errorf("MTA-STS id did not change with the policy: %q, %q", sts, sts2)
	}

	o.Ports.Autodiscover = 8443
	if got := find(t, Want(o), "_autodiscover._tcp.example.test", "SRV").Value; got != "0 1 8443 mx.example.test." {
		t.Errorf("_autodiscover._tcp with HTTPS on 8443: %q", got)
	}

	// The id hashes the very text the [http] role serves.
	if got, want := o.STS.Text("mx.example.test"), webconf.MTASTSPolicy("enforce", "mx.example.test", 604800*time.Second); got != want {
		t.Errorf("policy text %q, webconf serves %q", got, want)
	}

	o.IPs, o.DKIMDir = nil, t.TempDir()
	recs = Want(o)
	if a := find(t, recs, "mx.example.test", "A"); !a.Placeholder || !strings.Contains(a.Note, "filled in") {
		t.Errorf("A without -ip: %+v", a)
	}
	if d := find(t, recs, "postie._domainkey.example.test", "TXT"); !d.Placeholder || !strings.Contains(d.Note, "postie dkim keygen") {
		t.Errorf("DKIM without key: %+v", d)
	}
}

func TestCheck(t *testing.T) {
	o := testOptions(t)
	_, dk, _ := dkim.Record(o.DKIMDir, "example.test", "postie")
	s := dnstest.New(t)
	// right
	s.MX("example.test", 10, "mx.example.test")
	s.A("mx.example.test", "192.0.2.1")
	s.PTR("192.0.2.1", "mx.example.test")
	s.TXT("example.test", "v=spf1 ip4:192.0.2.0/24 ~all")
	s.TXT("postie._domainkey.example.test", dk)
	s.TXT("_smtp._tls.example.test", "v=TLSRPTv1; rua=mailto:x@example.test")
	s.SRV("_submissions._tcp.example.test", 0, 1, 465, "mx.example.test")
	s.SRV("_imap._tcp.example.test", 0, 0, 0, ".")
	s.CNAME("autoconfig.example.test", "mx.example.test")
	s.A("mta-sts.example.test", "192.0.2.1")
	// wrong
	s.TXT("_dmarc.example.test", "p=none")
	s.SRV("_submission._tcp.example.test", 0, 1, 25, "mx.example.test")
	s.CNAME("autodiscover.example.test", "elsewhere.test")
	s.A("elsewhere.test", "198.51.100.1")
	s.TXT("_mta-sts.example.test", "v=STSv1; id=old")
	// missing: _imaps, _pop3s, _pop3, _autodiscover._tcp

	res := Check(context.Background(), s.Resolver(), o)
	want := map[string]Status{
		"MX example.test": OK, "A mx.example.test": OK, "PTR 1.2.0.192.in-addr.arpa": OK,
		"TXT example.test": OK, "TXT postie._domainkey.example.test": OK,
		"TXT _smtp._tls.example.test": OK, "SRV _submissions._tcp.example.test": OK,
		"SRV _imap._tcp.example.test": OK, "CNAME autoconfig.example.test": OK,
		"CNAME mta-sts.example.test": OK,
		"TXT _dmarc.example.test":    Wrong, "SRV _submission._tcp.example.test": Wrong,
		"CNAME autodiscover.example.test": Wrong, "TXT _mta-sts.example.test": Wrong,
		"SRV _imaps._tcp.example.test": Missing, "SRV _pop3._tcp.example.test": Missing,
		"SRV _autodiscover._tcp.example.test": Missing,
	}
	got := map[string]Result{}
	for _, r := range res {
		got[r.Type+" "+r.Name] = r
	}
	for k, st := range want {
		if r, ok := got[k]; !ok || r.Status != st {
			t.Errorf("%s: %s (found %q), want %s", k, r.Status, r.Found, st)
		}
	}
	if r := got["TXT _dmarc.example.test"]; r.Found != "p=none" || !strings.Contains(r.Want, "DMARC1") {
		t.Errorf("WRONG DMARC says found %q want %q", r.Found, r.Want)
	}
	if AllRequiredOK(res) {
		t.Error("AllRequiredOK with a wrong DMARC record")
	}
	s.TXT("_dmarc.example.test", "v=DMARC1; p=reject")
	if res := Check(context.Background(), s.Resolver(), o); !AllRequiredOK(res) {
		t.Errorf("required records right but AllRequiredOK false: %+v", res)
	}
}

func TestCheckSemantics(t *testing.T) {
	o := testOptions(t)
	o.Domains = []string{"example.test"}
	s := dnstest.New(t)
	s.MX("example.test", 10, "other-mx.test")
	s.A("mx.example.test", "192.0.2.1")
	s.PTR("192.0.2.1", "mx.example.test")
	s.A("unconfirmed.test", "192.0.2.9")
	s.TXT("example.test", "v=spf1 mx ?all")
	s.TXT("postie._domainkey.example.test", "v=DKIM1; k=rsa; p=AAAAnotthekey")
	res := Check(context.Background(), s.Resolver(), o)
	for _, r := range res {
		switch r.Type + " " + r.Name {
		case "MX example.test", "TXT example.test", "TXT postie._domainkey.example.test":
			if r.Status != Wrong {
				t.Errorf("%s %s: %s (found %q), want WRONG", r.Type, r.Name, r.Status, r.Found)
			}
		}
	}

	// Without known addresses the host's are taken from DNS; a PTR that
	// is not forward-confirmed is wrong.
	o.IPs = nil
	s2 := dnstest.New(t)
	s2.A("mx.example.test", "192.0.2.7")
	s2.PTR("192.0.2.7", "mx.example.test")
	s2.A("mx2.example.test", "192.0.2.8")
	s2.PTR("192.0.2.8", "mx.example.test")
	if r := Check(context.Background(), s2.Resolver(), o); r[0].Status != OK || r[1].Type != "PTR" || r[1].Status != OK {
		t.Errorf("host from DNS: %+v", r[:2])
	}
	st, ok, err := checkPTR(context.Background(), s2.Resolver(), netip.MustParseAddr("192.0.2.8"), "mx.example.test")
	if ok || err != nil {
		t.Errorf("PTR not forward-confirmed: ok=%v err=%v found=%q", ok, err, st)
	}
	s2.PTR("192.0.2.10", "other.test")
	s2.A("mx.example.test", "192.0.2.10")
	if st, ok, err := checkPTR(context.Background(), s2.Resolver(), netip.MustParseAddr("192.0.2.10"), "mx.example.test"); ok || err != nil {
		t.Errorf("PTR naming another host: ok=%v err=%v found=%q", ok, err, st)
	}
}

// TestCheckDuplicateRecords: two SPF, DMARC, MTA-STS or TLS-RPT records
// at one name make receivers ignore both, so each is WRONG even when one
// of them is right; a version tag that is not first is no record at all.
func TestCheckDuplicateRecords(t *testing.T) {
	o := testOptions(t)
	s := dnstest.New(t)
	id := DefaultSTSPolicy.ID(o.Hostname)
	s.TXT("example.test", "v=spf1 mx -all", "V=SPF1 ip4:192.0.2.1 -all", "google-site-verification=x")
	s.TXT("_dmarc.example.test", "v=DMARC1; p=none", "v=DMARC1; p=reject")
	s.TXT("_mta-sts.example.test", "v=STSv1; id="+id, "v=STSv1; id=other")
	s.TXT("_smtp._tls.example.test", "rua=mailto:a@example.test; v=TLSRPTv1")
	got := map[string]Result{}
	for _, r := range Check(context.Background(), s.Resolver(), o) {
		got[r.Type+" "+r.Name] = r
	}
	for name, kind := range map[string]string{
		"TXT example.test": "2 v=spf1 records", "TXT _dmarc.example.test": "2 v=DMARC1 records",
		"TXT _mta-sts.example.test": "2 v=STSv1 records", "TXT _smtp._tls.example.test": "",
	} {
		r := got[name]
		if r.Status != Wrong || !strings.Contains(r.Found, kind) {
			t.Errorf("%s: %s, found %q; want WRONG naming %q", name, r.Status, r.Found, kind)
		}
	}

	// One of each, beside unrelated TXT records, is right.
	s2 := dnstest.New(t)
	s2.TXT("example.test", "v=spf1 mx -all", "google-site-verification=x")
	s2.TXT("_dmarc.example.test", "v=DMARC1; p=none")
	s2.TXT("_mta-sts.example.test", "v=STSv1; id="+id)
	s2.TXT("_smtp._tls.example.test", "v=TLSRPTv1; rua=mailto:a@example.test")
	for _, r := range Check(context.Background(), s2.Resolver(), o) {
		if r.Type == "TXT" && !strings.Contains(r.Name, "_domainkey") && r.Status != OK {
			t.Errorf("%s: %s, found %q", r.Name, r.Status, r.Found)
		}
	}
}

// TestCheckEveryRecordWrong: each record of Want present with a wrong
// value is WRONG, saying what it found and what it wants.
func TestCheckEveryRecordWrong(t *testing.T) {
	o := testOptions(t)
	s := dnstest.New(t)
	s.A("mx.example.test", "198.51.100.9")
	s.PTR("192.0.2.1", "other.test")
	s.MX("example.test", 10, "mx.elsewhere.test")
	s.TXT("example.test", "v=spf1 a:mx.elsewhere.test -all")
	s.TXT("postie._domainkey.example.test", "v=DKIM1; k=rsa; p=AAAAnotthekey")
	s.TXT("_dmarc.example.test", "v=spf1 -all")
	s.TXT("_mta-sts.example.test", "v=STSv1; id=old")
	s.TXT("_smtp._tls.example.test", "v=TLSRPTv1;")
	for _, n := range []string{"_submissions", "_submission", "_imaps", "_autodiscover"} {
		s.SRV(n+"._tcp.example.test", 0, 1, 2525, "mx.example.test")
	}
	for _, n := range []string{"_imap", "_pop3s", "_pop3"} {
		s.SRV(n+"._tcp.example.test", 0, 1, 110, "mx.example.test")
	}
	s.A("elsewhere.test", "198.51.100.1")
	for _, n := range []string{"mta-sts", "autoconfig", "autodiscover"} {
		s.CNAME(n+".example.test", "elsewhere.test")
	}
	res := Check(context.Background(), s.Resolver(), o)
	if len(res) != len(Want(o)) {
		t.Fatalf("%d results for %d records", len(res), len(Want(o)))
	}
	for _, r := range res {
		if r.Status != Wrong || r.Found == "" || r.Want == "" {
			t.Errorf("%s %s: %s, found %q, want %q; want WRONG saying both", r.Type, r.Name, r.Status, r.Found, r.Want)
		}
	}
	if AllRequiredOK(res) {
		t.Error("AllRequiredOK on a zone with every record wrong")
	}
}

// TestCheckSPFWithoutKnownIPs: without -ip, an SPF record naming the
// host's address (as DNS gives it) by ip4: is right, one naming another
// address is wrong.
func TestCheckSPFWithoutKnownIPs(t *testing.T) {
	o := testOptions(t)
	o.IPs = nil
	for spf, want := range map[string]Status{
		"v=spf1 ip4:192.0.2.7 -all":           OK,
		"v=spf1 ip4:192.0.2.0/24 ~all":        OK,
		"v=spf1 a:MX.example.test -all":       OK,
		"v=spf1 ip4:198.51.100.1 -all":        Wrong,
		"v=spf1 ip6:2001:db8::/32 -all":       Wrong,
		"v=spf1 ip4:192.0.2.7 include:x ?all": Wrong,
	} {
		s := dnstest.New(t)
		s.A("mx.example.test", "192.0.2.7")
		s.TXT("example.test", spf)
		var got Result
		for _, r := range Check(context.Background(), s.Resolver(), o) {
			if r.Type == "TXT" && r.Name == "example.test" {
				got = r
			}
		}
		if got.Status != want {
			t.Errorf("%q: %s (want %q), want %s", spf, got.Status, got.Want, want)
		}
	}
}

func TestReverseName(t *testing.T) {
	for ip, want := range map[string]string{
		"192.0.2.1":          "1.2.0.192.in-addr.arpa",
		"::ffff:192.0.2.1":   "1.2.0.192.in-addr.arpa",
		"2001:db8::567:89ab": "b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
	} {
		if got := reverseName(netip.MustParseAddr(ip)); got != want {
			t.Errorf("reverseName(%s) = %s, want %s", ip, got, want)
		}
	}
}
