package tlsconf

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"postie/safeio"
)

const (
	selfSignedLifetime = 10 * 365 * 24 * time.Hour
	// renewBefore: a self-signed certificate this close to its end is
	// replaced at start rather than left to expire while running.
	renewBefore = 30 * 24 * time.Hour
)

// ensureSelfSigned makes sure dir holds a usable self-signed pair for
// hostname, creating (or replacing) it when needed.
func ensureSelfSigned(dir, hostname string, logger *slog.Logger) error {
	certFile, keyFile := filepath.Join(dir, selfSignedCert), filepath.Join(dir, selfSignedKey)
	reason, err := selfSignedProblem(certFile, keyFile, hostname)
	if err != nil {
		return err
	}
	if reason == "" {
		return nil
	}
	certPEM, keyPEM, err := generate(hostname, time.Now())
	if err != nil {
		return fmt.Errorf("tlsconf: make a self-signed certificate: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("tlsconf: %w", err)
	}
	// The key first: the certificate is what marks the pair complete, and a
	// pair that does not match is replaced at the next start.
	if err := safeio.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return fmt.Errorf("tlsconf: write %s: %w", keyFile, err)
	}
	if err := safeio.WriteFile(certFile, certPEM, 0o644); err != nil {
		return fmt.Errorf("tlsconf: write %s: %w", certFile, err)
	}
	logger.Info("tls: made a self-signed certificate", "cert", certFile, "hostname", hostname, "reason", reason)
	return nil
}

// selfSignedProblem says why the pair in certFile and keyFile must be
// (re)made, or "" if it is fine. Files that cannot be read are an error:
// overwriting what we cannot even read would hide a real problem.
func selfSignedProblem(certFile, keyFile, hostname string) (string, error) {
	certPEM, err := os.ReadFile(certFile)
	if errors.Is(err, fs.ErrNotExist) {
		return "first start", nil
	} else if err != nil {
		return "", fmt.Errorf("tlsconf: read self-signed certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if errors.Is(err, fs.ErrNotExist) {
		return "key missing", nil
	} else if err != nil {
		return "", fmt.Errorf("tlsconf: read self-signed key: %w", err)
	}
	cert, err := parsePair(certPEM, keyPEM)
	switch {
	case err != nil:
		return "unusable: " + err.Error(), nil
	case time.Until(cert.Leaf.NotAfter) < renewBefore:
		return "expiring", nil
	case hostname != "" && cert.Leaf.VerifyHostname(hostname) != nil:
		return "hostname changed", nil
	}
	return "", nil
}

// generate makes an ECDSA P-256 key and a self-signed certificate for
// hostname (and localhost, for tests and local clients), valid from now.
func generate(hostname string, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: hostname},
		NotBefore:             now.Add(-time.Hour), // tolerate clients with a slow clock
		NotAfter:              now.Add(selfSignedLifetime),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	for _, name := range []string{hostname, "localhost"} {
		if ip := net.ParseIP(name); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if name != "" && (len(tmpl.DNSNames) == 0 || tmpl.DNSNames[0] != name) {
			tmpl.DNSNames = append(tmpl.DNSNames, name)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}
