package webconf

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"
)

// TestACMETLSALPN: with ACMETLSALPN, an ACME tls-alpn-01 validation
// (which offers only "acme-tls/1") completes its handshake on ServeTLS
// and negotiates that protocol; without, the handshake fails.
func TestACMETLSALPN(t *testing.T) {
	cert := testCert(t)
	for _, on := range []bool{true, false} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s := New(Options{Host: "mail.example.test", Domains: []string{"example.test"}, ACMETLSALPN: on,
			TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}})
		go s.ServeTLS(ln)
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{
			InsecureSkipVerify: true, ServerName: "mail.example.test", NextProtos: []string{"acme-tls/1"},
		})
		switch {
		case on && err != nil:
			t.Errorf("with ACMETLSALPN: %v", err)
		case on && c.ConnectionState().NegotiatedProtocol != "acme-tls/1":
			t.Errorf("with ACMETLSALPN: negotiated %q", c.ConnectionState().NegotiatedProtocol)
		case !on && err == nil:
			t.Errorf("without ACMETLSALPN: acme-tls/1 negotiated %q", c.ConnectionState().NegotiatedProtocol)
		}
		if c != nil {
			c.Close()
		}
		s.http.Close()
	}
}

func testCert(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mail.example.test"},
		DNSNames: []string{"mail.example.test"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
