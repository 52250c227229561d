// Package testutil holds helpers shared by Postie's tests: test certificates,
// a goroutine-safe log buffer, and ListenerHeldBy, which checks through
// /proc that a listening port belongs to a given process tree.
package testutil

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"slices"
	"sync"
	"testing"
	"time"
)

// Certificate makes a self-signed ECDSA P-256 certificate valid for an hour
// either side of now, for hosts plus localhost, 127.0.0.1 and ::1, and a
// pool that trusts it. A host that parses as an IP address goes into the
// IP SANs, any other into the DNS SANs; the first host is the common name.
func Certificate(t testing.TB, hosts ...string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key := newKey(t)
	cn := "localhost"
	if len(hosts) > 0 {
		cn = hosts[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		// A CA flag lets the certificate act as its own root for
		// verifiers stricter than Go's (Python's ssl, fetchmail).
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	addSANs(tmpl, slices.Concat(hosts, []string{"localhost", "127.0.0.1", "::1"}))
	leaf := create(t, tmpl, tmpl, key, key)
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}, roots
}

// ServerTLS returns a server configuration holding a fresh Certificate for
// hosts. Clients that must verify it can trust Certificates[0].Leaf.
func ServerTLS(t testing.TB, hosts ...string) *tls.Config {
	t.Helper()
	cert, _ := Certificate(t, hosts...)
	return &tls.Config{Certificates: []tls.Certificate{cert}}
}

// SyncBuffer is a bytes.Buffer that several goroutines may write to at
// once, for logs written by servers under test. The zero value is ready.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p to the buffer.
func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
