// Package tlsconf provides the server TLS configuration every listener
// shares: a certificate read from files, or self-signed on first start, that
// can be swapped in place (on SIGHUP) without restarting listeners.
//
// With ACME on (EnableACME, then RunACME in the background), certificates
// for a list of names are obtained from an ACME server and renewed by
// themselves, and every handshake prefers the ACME certificate for the
// client's SNI name (no SNI: the first name's) over the configured or
// self-signed one, which stands in until the ACME one exists: listeners
// come up at once and switch without a restart. A handshake never waits
// for the ACME server. Challenges: tls-alpn-01 through Config's
// GetCertificate (the HTTPS listener must offer the "acme-tls/1"
// protocol) and http-01 through ACMEHTTPHandler.
//
// ACME is golang.org/x/crypto/acme/autocert rather than go-acme/lego:
// autocert is already a dependency (lego would bring dozens of modules for
// DNS providers we do not use), it answers both challenges we can serve
// (tls-alpn-01 and http-01; DNS-01, lego's strength, needs a DNS provider
// API, which Postie does not have), caches through a small interface (so
// the cache is written durably, 0600: acmecache.go) and renews on its own
// timers. What it lacks, this package adds: it obtains only when a client
// asks (RunACME asks for every name at start), and a handshake for a name
// without a certificate would wait for the issuance (getCertificate
// serves the stand-in instead).
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"
)

// Manager holds the current certificate and the *tls.Config that serves it.
type Manager struct {
	certFile, keyFile string // what Reload reads
	selfSigned        bool
	hostname          string
	logger            *slog.Logger
	cert              atomic.Pointer[tls.Certificate]
	config            *tls.Config
	acme              *acmeState // nil: ACME off; set by EnableACME before use
}

// Names of the self-signed pair inside selfSignedDir.
const (
	selfSignedCert = "cert.pem"
	selfSignedKey  = "key.pem"
)

// New loads the certificate in certFile and the key in keyFile. With both
// empty it uses the self-signed pair in selfSignedDir, creating it for
// hostname on first start (and again if it no longer fits hostname or is
// about to expire). A nil logger means slog.Default().
func New(certFile, keyFile, selfSignedDir, hostname string, logger *slog.Logger) (*Manager, error) {
	if logger == nil {
		logger = slog.Default()
	}
	m := &Manager{certFile: certFile, keyFile: keyFile, hostname: hostname, logger: logger}
	switch {
	case certFile != "" && keyFile != "":
	case certFile == "" && keyFile == "":
		if selfSignedDir == "" {
			return nil, errors.New("tlsconf: no certificate files and no directory for a self-signed one")
		}
		m.selfSigned = true
		m.certFile = filepath.Join(selfSignedDir, selfSignedCert)
		m.keyFile = filepath.Join(selfSignedDir, selfSignedKey)
		if err := ensureSelfSigned(selfSignedDir, hostname, logger); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("tlsconf: certificate %q and key %q: set both, or neither for a self-signed certificate", certFile, keyFile)
	}
	cert, err := loadPair(m.certFile, m.keyFile)
	if err != nil {
		return nil, err
	}
	m.cert.Store(cert)
	m.config = &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Microsoft's outbound servers fail deliveries when offered
		// session tickets; sessions are short, so nothing is lost.
		SessionTicketsDisabled: true,
		GetCertificate:         m.getCertificate,
	}
	if m.selfSigned {
		logger.Warn("tls: using a self-signed certificate; mail clients will warn about it: set tls.cert_file and tls.key_file, or tls.acme, for a real one",
			"cert", m.certFile)
	} else {
		m.check(cert)
	}
	return m, nil
}

// Config returns the *tls.Config for every listener and STARTTLS. It is
// shared: do not modify it (Clone it first). It always serves the current
// certificate, so a Reload reaches existing listeners.
func (m *Manager) Config() *tls.Config { return m.config }

// Certificate returns the configured or self-signed certificate (with
// ACME on, the stand-in for names without an ACME certificate).
func (m *Manager) Certificate() *tls.Certificate { return m.cert.Load() }

// Reload reads the certificate and key files again. On error the current
// certificate stays in service. With ACME on, it also makes RunACME try
// the names still without a certificate at once.
func (m *Manager) Reload() error {
	m.kickACME()
	cert, err := loadPair(m.certFile, m.keyFile)
	if err != nil {
		return err
	}
	m.cert.Store(cert)
	m.logger.Info("tls: certificate reloaded", "cert", m.certFile,
		"subject", cert.Leaf.Subject.String(), "not_after", cert.Leaf.NotAfter)
	if !m.selfSigned {
		m.check(cert)
	}
	return nil
}

// loadPair reads and parses a PEM certificate chain and its key.
func loadPair(certFile, keyFile string) (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: read certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: read key: %w", err)
	}
	cert, err := parsePair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: certificate %s with key %s: %w", certFile, keyFile, err)
	}
	return cert, nil
}

// parsePair parses a PEM certificate chain and key, with Leaf always set.
func parsePair(certPEM, keyPEM []byte) (*tls.Certificate, error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	if cert.Leaf == nil { // only with GODEBUG=x509keypairleaf=0
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, err
		}
	}
	return &cert, nil
}

// check logs what will make clients refuse a configured certificate.
func (m *Manager) check(cert *tls.Certificate) {
	leaf := cert.Leaf
	switch left := time.Until(leaf.NotAfter); {
	case left <= 0:
		m.logger.Error("tls: the certificate has expired", "cert", m.certFile, "not_after", leaf.NotAfter)
	case left < 14*24*time.Hour:
		m.logger.Warn("tls: the certificate expires soon", "cert", m.certFile, "not_after", leaf.NotAfter)
	}
	if m.hostname == "" {
		return
	}
	if err := leaf.VerifyHostname(m.hostname); err != nil {
		m.logger.Warn("tls: the certificate does not name this server's hostname", "cert", m.certFile,
			"hostname", m.hostname, "err", err)
	}
}
