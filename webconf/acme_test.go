package webconf

import (
	"crypto/tls"
	"net"
	"testing"

	"postie/internal/testutil"
)

// TestACMETLSALPN: with ACMETLSALPN, an ACME tls-alpn-01 validation
// (which offers only "acme-tls/1") completes its handshake on ServeTLS
// and negotiates that protocol; without, the handshake fails.
func TestACMETLSALPN(t *testing.T) {
	cert, _ := testutil.Certificate(t, "mail.example.test")
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
