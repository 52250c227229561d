package mda

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"postie/envelope"
	"postie/internal/dnstest"
	"postie/junk"
)

// BenchmarkDeliverInbound is one message from outside through the router
// with every check on (SPF through an include, an RSA-2048 DKIM signature,
// DMARC; DNS from a loopback server) and the untrained junk filter, against
// the same delivery unchecked, and with every DNS answer asked anew
// (on-uncached). The difference is what the checks cost per message in
// this process; the Maildir fsync is in both.
func BenchmarkDeliverInbound(b *testing.B) {
	for _, mode := range []string{"off", "on", "on-uncached"} {
		on := mode != "off"
		b.Run("checks="+mode, func(b *testing.B) {
			m, _ := newTestMDA(b, nil)
			c, dns := newTestChecks(b, func(o *ChecksOptions) {
				if mode == "on-uncached" {
					o.CacheTTL = -1
				}
			})
			signed := benchSigned(b, dns)
			env := &envelope.Envelope{ID: "b", From: "news@sender.test", To: []string{"ann@example.test"}, RemoteAddr: "192.0.2.7", Helo: "mail.sender.test", Protocol: "ESMTP", Inbound: on}
			if on {
				m.opts.Inspector, m.opts.Junk = c, junk.New(junk.Options{})
			}
			b.ReportAllocs()
			for b.Loop() {
				if errs := m.Deliver(context.Background(), env, bytes.NewReader(signed)); errs[0] != nil {
					b.Fatal(errs[0])
				}
			}
		})
	}
}

// BenchmarkInspect is the checks alone on one signed 4 KiB message (no
// delivery), with the DNS answers kept and asked anew.
func BenchmarkInspect(b *testing.B) {
	for _, cached := range []bool{true, false} {
		name := "dns=cached"
		if !cached {
			name = "dns=uncached"
		}
		b.Run(name, func(b *testing.B) {
			c, dns := newTestChecks(b, func(o *ChecksOptions) {
				if !cached {
					o.CacheTTL = -1
				}
			})
			msg := benchSigned(b, dns)
			env := &envelope.Envelope{ID: "b", From: "news@sender.test", To: []string{"ann@example.test"}, RemoteAddr: "192.0.2.7", Helo: "mail.sender.test", Inbound: true}
			b.ReportAllocs()
			for b.Loop() {
				if ins := c.Inspect(context.Background(), env, bytes.NewReader(msg), int64(len(msg))); !ins.Verified {
					b.Fatalf("not verified: %s", ins.Header)
				}
			}
		})
	}
}

// benchSigned publishes sender.test's SPF (through an include), DMARC
// and an RSA-2048 DKIM key, and returns a 4 KiB message signed with it.
func benchSigned(b *testing.B, dns *dnstest.Server) []byte {
	dns.TXT("sender.test", "v=spf1 include:_spf.esp.test mx -all")
	dns.TXT("_spf.esp.test", "v=spf1 ip4:198.51.100.0/24 ip4:192.0.2.0/24 -all")
	dns.TXT("_dmarc.sender.test", "v=DMARC1; p=reject")
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	dns.TXT("s1._domainkey.sender.test", "v=DKIM1; k=rsa; p="+base64.StdEncoding.EncodeToString(der))
	body := "From: News <news@sender.test>\r\nTo: you@example.test\r\nSubject: bench\r\n\r\n" + strings.Repeat(strings.Repeat("x", 62)+"\r\n", 64)
	var signed bytes.Buffer
	if err := dkim.Sign(&signed, strings.NewReader(body), &dkim.SignOptions{Domain: "sender.test", Selector: "s1", Signer: key}); err != nil {
		b.Fatal(err)
	}
	return signed.Bytes()
}
