package inbound

import (
	"bytes"
	"context"
	"net/netip"
	"runtime"
	"strings"
	"testing"
)

// benchEnv is a full check's DNS: SPF with an include, an RSA-2048 DKIM
// key, a DMARC record; a 10 KB signed message.
func benchEnv(b *testing.B) (*env, []byte) {
	e := newEnv(b)
	e.dns.TXT("sender.test", "v=spf1 include:_spf.esp.test mx -all")
	e.dns.TXT("_spf.esp.test", "v=spf1 ip4:198.51.100.0/24 ip4:192.0.2.0/24 -all")
	e.dns.MX("sender.test", 10, "mx.sender.test")
	e.dns.A("mx.sender.test", "198.51.100.25")
	e.dns.TXT("_dmarc.sender.test", "v=DMARC1; p=reject; rua=mailto:d@sender.test")
	body := strings.Repeat("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n", 140)
	msg := append(message("Bob <bob@sender.test>"), body...)
	return e, e.sign(b, msg, "sender.test", "s2048", rsaKey())
}

// BenchmarkCheck is one full Check (SPF, DKIM, DMARC, the header) with
// every DNS answer coming from the loopback server through Go's resolver.
func BenchmarkCheck(b *testing.B) {
	e, msg := benchEnv(b)
	in := Input{IP: clientIP, Helo: "mx.sender.test", MailFrom: "bob@sender.test"}
	ctx := context.Background()
	if v := e.c.Check(ctx, in, bytes.NewReader(msg), int64(len(msg))); v.DMARC.Result != Pass || v.SPF.Result != Pass {
		b.Fatalf("setup: %s %s %+v", v.SPF.Result, v.DMARC.Result, v.DKIM)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		e.c.Check(ctx, in, bytes.NewReader(msg), int64(len(msg)))
	}
	b.ReportMetric(float64(e.dns.Total())/float64(b.N+1), "queries/op")
}

// BenchmarkCheckParallel runs Checks from 10 goroutines, as 10 SMTP
// sessions would.
func BenchmarkCheckParallel(b *testing.B) {
	e, msg := benchEnv(b)
	in := Input{IP: clientIP, Helo: "mx.sender.test", MailFrom: "bob@sender.test"}
	b.ReportAllocs()
	b.SetParallelism(max(1, 10/runtime.GOMAXPROCS(0))) // goroutines = p × GOMAXPROCS
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			e.c.Check(context.Background(), in, bytes.NewReader(msg), int64(len(msg)))
		}
	})
}

// BenchmarkDNSBLCached is a DNSBL check answered from the cache.
func BenchmarkDNSBLCached(b *testing.B) {
	e := newEnv(b)
	bl := NewDNSBL(e.dns.Resolver(), DNSBLOptions{Zones: []string{"a.test", "b.test"}, Logger: quiet})
	ip := netip.MustParseAddr("192.0.2.1")
	bl.Check(context.Background(), ip)
	b.ReportAllocs()
	for b.Loop() {
		bl.Check(context.Background(), ip)
	}
}
