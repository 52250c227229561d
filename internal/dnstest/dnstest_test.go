package dnstest

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestRecordTypes(t *testing.T) {
	s := New(t)
	r := s.Resolver()
	s.A("host.example.test", "192.0.2.1", "192.0.2.2")
	s.AAAA("host.example.test", "2001:db8::1")
	s.MX("example.test", 20, "mx2.example.test")
	s.MX("example.test", 10, "mx1.example.test")
	s.PTR("192.0.2.1", "host.example.test")
	s.PTR("2001:db8::1", "host6.example.test")
	s.CNAME("alias.example.test", "host.example.test")
	s.SRV("_imaps._tcp.example.test", 0, 1, 993, "imap.example.test")

	ips, err := r.LookupIPAddr(ctx(t), "host.example.test")
	if err != nil || len(ips) != 3 {
		t.Fatalf("LookupIPAddr = %v, %v; want 3 addresses", ips, err)
	}
	mxs, err := r.LookupMX(ctx(t), "example.test")
	if err != nil || len(mxs) != 2 || mxs[0].Host != "mx1.example.test." || mxs[0].Pref != 10 {
		t.Fatalf("LookupMX = %v, %v", mxs, err)
	}
	for ip, want := range map[string]string{"192.0.2.1": "host.example.test.", "2001:db8::1": "host6.example.test."} {
		names, err := r.LookupAddr(ctx(t), ip)
		if err != nil || !slices.Equal(names, []string{want}) {
			t.Errorf("LookupAddr(%s) = %v, %v; want %s", ip, names, err, want)
		}
	}
	cname, err := r.LookupCNAME(ctx(t), "alias.example.test")
	if err != nil || cname != "host.example.test." {
		t.Errorf("LookupCNAME = %q, %v", cname, err)
	}
	if ips, err := r.LookupIPAddr(ctx(t), "alias.example.test"); err != nil || len(ips) != 3 {
		t.Errorf("LookupIPAddr through CNAME = %v, %v", ips, err)
	}
	_, srvs, err := r.LookupSRV(ctx(t), "imaps", "tcp", "example.test")
	if err != nil || len(srvs) != 1 || srvs[0].Port != 993 {
		t.Errorf("LookupSRV = %v, %v", srvs, err)
	}
	// Counted by the name asked (not the CNAME target), case-insensitively.
	if n := s.Count("HOST.example.test.", "a"); n != 1 {
		t.Errorf("Count(A) = %d, want 1", n)
	}
}

// A TXT record longer than 255 bytes is split and joined back; one longer
// than the UDP limit comes back truncated and is fetched again over TCP.
func TestLongTXTAndTCPFallback(t *testing.T) {
	s := New(t)
	long := strings.Repeat("k", 3000)
	s.TXT("big.example.test", long)
	txts, err := s.Resolver().LookupTXT(ctx(t), "big.example.test")
	if err != nil || len(txts) != 1 || txts[0] != long {
		t.Fatalf("LookupTXT = %d records, %v; want one of %d bytes", len(txts), err, len(long))
	}
	if got := Chunks(long); len(got) != 12 || len(got[0]) != 255 || len(got[11]) != 3000-11*255 {
		t.Errorf("Chunks: %d chunks", len(got))
	}
	if n := s.Count("big.example.test", "TXT"); n < 2 {
		t.Errorf("Count = %d; want a UDP query and a TCP retry", n)
	}
}

func TestRcodesAndNegativeAnswers(t *testing.T) {
	s := New(t)
	r := s.Resolver()
	s.TXT("sel._domainkey.example.test", "v=DKIM1; p=")
	s.A("temp.example.test", "192.0.2.9")
	s.ServFail("temp.example.test")
	s.NXDomain("gone.example.test")

	var de *net.DNSError
	_, err := r.LookupTXT(ctx(t), "temp.example.test")
	if !errors.As(err, &de) || !de.IsTemporary || de.IsNotFound {
		t.Errorf("SERVFAIL: err = %#v; want a temporary DNSError", err)
	}
	_, err = r.LookupTXT(ctx(t), "gone.example.test")
	if !errors.As(err, &de) || !de.IsNotFound {
		t.Errorf("NXDOMAIN: err = %v; want not found", err)
	}
	// An empty non-terminal and a name without the asked type: NODATA,
	// which Go reports as not found too; the wire RCODE tells them apart.
	for _, name := range []string{"_domainkey.example.test", "sel._domainkey.example.test"} {
		if _, err := r.LookupIPAddr(ctx(t), name); !errors.As(err, &de) || !de.IsNotFound {
			t.Errorf("%s: err = %v; want not found", name, err)
		}
		if rc := rawQuery(t, s, name, dns.TypeA).Rcode; rc != dns.RcodeSuccess {
			t.Errorf("%s: rcode %s, want NOERROR", name, dns.RcodeToString[rc])
		}
	}
	if rc := rawQuery(t, s, "nothing.example.test", dns.TypeA).Rcode; rc != dns.RcodeNameError {
		t.Errorf("unknown name: rcode %s, want NXDOMAIN", dns.RcodeToString[rc])
	}
	s.Rcode("temp.example.test", dns.RcodeSuccess)
	if ips, err := r.LookupIPAddr(ctx(t), "temp.example.test"); err != nil || len(ips) != 1 {
		t.Errorf("after clearing the rcode: %v, %v", ips, err)
	}
}

// TLSA records and the AD bit, for DANE tests.
func TestTLSAAndAD(t *testing.T) {
	s := New(t)
	s.TLSA("_25._tcp.mx.example.test", 3, 1, 1, "0123456789abcdef")
	m := rawQuery(t, s, "_25._tcp.mx.example.test", dns.TypeTLSA)
	if len(m.Answer) != 1 || m.AuthenticatedData {
		t.Fatalf("TLSA answer %v, AD %v; want one record without AD", m.Answer, m.AuthenticatedData)
	}
	if tl := m.Answer[0].(*dns.TLSA); tl.Usage != 3 || tl.Certificate != "0123456789abcdef" {
		t.Errorf("TLSA = %v", tl)
	}
	s.Authenticated("_25._tcp.mx.example.test", true)
	if m := rawQuery(t, s, "_25._tcp.mx.example.test", dns.TypeTLSA); !m.AuthenticatedData {
		t.Error("AD bit not set")
	}
	s.RR(`caa.example.test. 60 IN CAA 0 issue "ca.example.test"`)
	if m := rawQuery(t, s, "caa.example.test", dns.TypeCAA); len(m.Answer) != 1 || m.Answer[0].Header().Ttl != 60 {
		t.Errorf("CAA answer %v", m.Answer)
	}
}

func rawQuery(t *testing.T, s *Server, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	c := &dns.Client{Net: "tcp", Timeout: 5 * time.Second}
	in, _, err := c.ExchangeContext(ctx(t), m, s.Addr())
	if err != nil {
		t.Fatalf("query %s: %v", name, err)
	}
	return in
}
