package inbound

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"postie/internal/dnstest"
)

const ourHost = "mx.ours.test"

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// rsaKey is made once per test binary: 2048-bit generation is slow.
var rsaKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// env is a DNS server and a Checker that uses it.
type env struct {
	dns *dnstest.Server
	c   *Checker
	pct int // what Options.Percent returns
}

func newEnv(t testing.TB, edit ...func(*Options)) *env {
	e := &env{dns: dnstest.New(t), pct: 50}
	o := Options{
		Hostname: ourHost,
		Domains:  []string{"ours.test", "Other-Ours.test"},
		Percent:  func() int { return e.pct },
		Logger:   quiet,
	}
	for _, f := range edit {
		f(&o)
	}
	e.c = New(e.dns.Resolver(), o)
	return e
}

// A client at 192.0.2.10 (TEST-NET-1; only ever a string in DNS answers).
var clientIP = netip.MustParseAddr("192.0.2.10")

func (e *env) check(t testing.TB, mailFrom string, msg []byte) *Verdict {
	t.Helper()
	in := Input{IP: clientIP, Helo: "client.sender.test", MailFrom: mailFrom}
	return e.c.Check(testCtx(t), in, bytes.NewReader(msg), int64(len(msg)))
}

// message builds a CRLF message with the given From: value (none if "")
// and extra header lines.
func message(from string, extra ...string) []byte {
	var b strings.Builder
	if from != "" {
		b.WriteString("From: " + from + "\r\n")
	}
	for _, h := range extra {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("To: ann@ours.test\r\nSubject: hello\r\nDate: Mon, 01 Jan 2026 10:00:00 +0000\r\n" +
		"Message-ID: <1@sender.test>\r\n\r\nHello Ann,\r\nsee you tomorrow.\r\n")
	return []byte(b.String())
}

// sign DKIM-signs msg for domain/selector with key (RSA or Ed25519) and
// publishes the key in e's DNS.
func (e *env) sign(t testing.TB, msg []byte, domain, selector string, key crypto.Signer) []byte {
	t.Helper()
	var rec string
	switch k := key.Public().(type) {
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		rec = "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der)
	case ed25519.PublicKey:
		rec = "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(k)
	}
	e.dns.Remove(selector + "._domainkey." + domain)
	e.dns.TXT(selector+"._domainkey."+domain, rec)
	var out bytes.Buffer
	err := dkim.Sign(&out, bytes.NewReader(msg), &dkim.SignOptions{
		Domain: domain, Selector: selector, Signer: key,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed,
		BodyCanonicalization:   dkim.CanonicalizationRelaxed,
		HeaderKeys:             []string{"From", "To", "Subject", "Date", "Message-ID"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func ed25519Key(t testing.TB) ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
