package tests

import (
	"path/filepath"
	"strings"
	"testing"

	"postie/dkim"
	"postie/dnsrecords"
	"postie/internal/dnstest"
)

// dnsInstance is a test instance whose [outbound] resolver is s, with DKIM
// keys made for both its domains; it returns the DKIM records.
func dnsInstance(t *testing.T, s *dnstest.Server) (*instance, map[string]string) {
	t.Helper()
	in := newInstance(t, "\n[outbound]\nresolver = \""+s.Addr()+"\"\n")
	keys := map[string]string{}
	for _, d := range []string{"example.test", "other.test"} {
		in.mustRun("", "dkim", "keygen", d)
		_, v, err := dkim.Record(filepath.Join(in.dir, "data", "dkim"), d, "postie")
		if err != nil {
			t.Fatal(err)
		}
		keys[d] = v
	}
	return in, keys
}

// fillZone publishes every record `postie dns` asks for domain, except
// the owner names in skip.
func fillZone(s *dnstest.Server, d, dkimTXT string, skip ...string) {
	has := func(name string) bool {
		for _, n := range skip {
			if n == name {
				return false
			}
		}
		return true
	}
	const mx = "mx.example.test"
	if has(d) {
		s.MX(d, 10, mx)
		s.TXT(d, "v=spf1 mx -all")
	}
	if has("postie._domainkey." + d) {
		s.TXT("postie._domainkey."+d, dkimTXT)
	}
	if has("_dmarc." + d) {
		s.TXT("_dmarc."+d, "v=DMARC1; p=quarantine; rua=mailto:postmaster@"+d)
	}
	s.TXT("_mta-sts."+d, "v=STSv1; id="+dnsrecords.DefaultSTSPolicy.ID(mx))
	s.TXT("_smtp._tls."+d, "v=TLSRPTv1; rua=mailto:postmaster@"+d)
	for svc, port := range map[string]uint16{"_submissions": 465, "_submission": 587, "_imaps": 993, "_imap": 143, "_pop3s": 995, "_pop3": 110, "_autodiscover": 443} {
		if has(svc + "._tcp." + d) {
			s.SRV(svc+"._tcp."+d, 0, 1, port, mx)
		}
	}
	for _, n := range []string{"autoconfig.", "autodiscover.", "mta-sts."} {
		s.CNAME(n+d, mx)
	}
}

func TestDNSPrint(t *testing.T) {
	in, keys := dnsInstance(t, dnstest.New(t))
	out := in.mustRun("", "dns", "-ip", "192.0.2.1")
	for _, want := range []string{
		"example.test.\tIN MX\t10 mx.example.test.",
		"mx.example.test.\tIN A\t192.0.2.1",
		"1.2.0.192.in-addr.arpa.\tIN PTR\tmx.example.test.",
		`_dmarc.other.test.	IN TXT	"v=DMARC1; p=quarantine; rua=mailto:postmaster@other.test"`,
		"_submissions._tcp.other.test.\tIN SRV\t0 1 465 mx.example.test.",
		"autoconfig.example.test.\tIN CNAME\tmx.example.test.",
		`_mta-sts.example.test.	IN TXT	"v=STSv1; id=`,
		"_smtp._tls.example.test.\tIN TXT",
		"NAME", keys["other.test"], // the table has the whole DKIM value on one line
	} {
		if !strings.Contains(out, want) {
			t.Errorf("postie dns output lacks %q:\n%s", want, out)
		}
	}
	id := "v=STSv1; id=" + dnsrecords.DefaultSTSPolicy.ID("mx.example.test")
	if !strings.Contains(out, id) {
		t.Errorf("default policy: output lacks %q", id)
	}
	enforce := newInstance(t, "\n[http]\nmta_sts_mode = \"enforce\"\n")
	if out := enforce.mustRun("", "dns"); strings.Contains(out, id) || !strings.Contains(out, "v=STSv1; id=") {
		t.Errorf("the _mta-sts id does not follow http.mta_sts_mode:\n%s", out)
	}
	if out := in.mustRun("", "dns", "other.test"); strings.Contains(out, "_dmarc.example.test") || !strings.Contains(out, "must be filled in") {
		t.Errorf("postie dns other.test without -ip:\n%s", out)
	}
}

func TestDNSCheckRightZone(t *testing.T) {
	s := dnstest.New(t)
	in, keys := dnsInstance(t, s)
	s.A("mx.example.test", "192.0.2.1")
	s.PTR("192.0.2.1", "mx.example.test")
	for d, k := range keys {
		fillZone(s, d, k)
	}
	out, errOut, code := in.run("", "dns", "check")
	if code != 0 {
		t.Fatalf("dns check on a right zone: exit %d\n%s%s", code, out, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 30 {
		t.Fatalf("too few lines:\n%s", out)
	}
	for _, l := range lines[:len(lines)-1] {
		if !strings.HasPrefix(l, "OK ") {
			t.Errorf("not OK: %q", l)
		}
	}
}

func TestDNSCheckBrokenZone(t *testing.T) {
	s := dnstest.New(t)
	in, keys := dnsInstance(t, s)
	s.A("mx.example.test", "192.0.2.1")
	s.PTR("192.0.2.1", "mx.example.test")
	fillZone(s, "example.test", keys["example.test"], "_dmarc.example.test", "_imap._tcp.example.test")
	fillZone(s, "other.test", keys["other.test"], "other.test", "postie._domainkey.other.test")
	s.MX("other.test", 10, "mail.elsewhere.test")
	s.TXT("other.test", "v=spf1 include:elsewhere.test -all")
	s.TXT("postie._domainkey.other.test", keys["example.test"]) // another domain's key

	out, errOut, code := in.run("", "dns", "check")
	if code != 1 {
		t.Fatalf("dns check on a broken zone: exit %d, want 1\n%s%s", code, out, errOut)
	}
	want := map[string]string{ // owner name and type → status
		"TXT _dmarc.example.test":            "MISSING",
		"SRV _imap._tcp.example.test":        "MISSING",
		"MX other.test":                      "WRONG",
		"TXT other.test":                     "WRONG",
		"TXT postie._domainkey.other.test":   "WRONG",
		"MX example.test":                    "OK",
		"TXT postie._domainkey.example.test": "OK",
	}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) < 4 {
			continue
		}
		key := f[2] + " " + f[3]
		if st, ok := want[key]; ok {
			if f[0] != st {
				t.Errorf("%s: %q, want %s", key, l, st)
			}
			if st == "WRONG" && !strings.Contains(l, "found: ") || st != "OK" && !strings.Contains(l, "want: ") {
				t.Errorf("%s does not say what it found and wants: %q", key, l)
			}
			delete(want, key)
		}
	}
	if len(want) > 0 {
		t.Errorf("not reported: %v\n%s", want, out)
	}
	if !strings.Contains(errOut, "required record") {
		t.Errorf("stderr: %q", errOut)
	}
}
