package testutil

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
)

func TestCertificateNames(t *testing.T) {
	cert, roots := Certificate(t, "mx.example.test", "192.0.2.7")
	if cert.Leaf.Subject.CommonName != "mx.example.test" {
		t.Errorf("common name %q, want mx.example.test", cert.Leaf.Subject.CommonName)
	}
	for _, name := range []string{"mx.example.test", "192.0.2.7", "localhost", "127.0.0.1", "::1"} {
		_, err := cert.Leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots})
		if err != nil {
			t.Errorf("verify for %s: %v", name, err)
		}
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{DNSName: "other.example.test", Roots: roots}); err == nil {
		t.Error("certificate verified for a name it does not carry")
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{DNSName: "localhost"}); err == nil {
		t.Error("certificate verified without its pool")
	}
}

func TestServerTLSHandshake(t *testing.T) {
	srv := ServerTLS(t, "pop.example.test")
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificates[0].Leaf)
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	errs := make(chan error, 1)
	go func() { errs <- tls.Server(c1, srv).Handshake() }()
	cli := tls.Client(c2, &tls.Config{RootCAs: roots, ServerName: "pop.example.test"})
	if err := cli.Handshake(); err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	if err := <-errs; err != nil {
		t.Fatalf("server handshake: %v", err)
	}
}

func TestSyncBufferConcurrent(t *testing.T) {
	var b SyncBuffer
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 100 {
				fmt.Fprintf(&b, "w%d-%d\n", i, j)
			}
		})
	}
	wg.Wait()
	if n := strings.Count(b.String(), "\n"); n != 800 {
		t.Fatalf("got %d lines, want 800", n)
	}
	if !strings.Contains(b.String(), "w7-99\n") {
		t.Error("a write is missing")
	}
}
