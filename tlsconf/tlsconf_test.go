package tlsconf

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"postie/internal/testutil"
	"postie/safeio"
)

const hostname = "mail.example.test"

// logBuffer returns a logger that writes into a buffer the test can read.
func logBuffer() (*slog.Logger, *testutil.SyncBuffer) {
	b := &testutil.SyncBuffer{}
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

// writePair writes a fresh certificate for name and its key into dir.
func writePair(t *testing.T, dir, name string) (certFile, keyFile string) {
	t.Helper()
	certPEM, keyPEM, err := generate(name, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "fullchain.pem"), filepath.Join(dir, "privkey.pem")
	if err := safeio.WriteFile(certFile, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := safeio.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestSelfSignedCreatedAndReused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "tls")
	logger, logs := logBuffer()
	m, err := New("", "", dir, hostname, logger)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "self-signed") {
		t.Errorf("no warning about the self-signed certificate in the log:\n%s", logs)
	}

	leaf := m.Certificate().Leaf
	if k, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("key is %T, want ECDSA P-256", leaf.PublicKey)
	}
	if !slices.Contains(leaf.DNSNames, hostname) || !slices.Contains(leaf.DNSNames, "localhost") {
		t.Errorf("DNS names %v, want %s and localhost", leaf.DNSNames, hostname)
	}
	if life := leaf.NotAfter.Sub(leaf.NotBefore); life < 10*365*24*time.Hour-2*time.Hour {
		t.Errorf("valid for %v, want 10 years", life)
	}
	for _, name := range []string{hostname, "localhost", "127.0.0.1"} {
		if err := leaf.VerifyHostname(name); err != nil {
			t.Errorf("certificate does not cover %s: %v", name, err)
		}
	}

	modes := map[string]os.FileMode{dir: 0o700, filepath.Join(dir, "key.pem"): 0o600}
	for path, want := range modes {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s has mode %o, want %o", path, got, want)
		}
	}
	if tmps, _ := filepath.Glob(filepath.Join(dir, ".tmp-*")); len(tmps) > 0 {
		t.Errorf("temporary files left behind: %v", tmps)
	}

	m2, err := New("", "", dir, hostname, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m2.Certificate().Certificate[0], m.Certificate().Certificate[0]) {
		t.Error("second New made a new certificate; want the stored one reused")
	}

	// A new hostname gets a certificate that names it.
	m3, err := New("", "", dir, "mx.other.test", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := m3.Certificate().Leaf.VerifyHostname("mx.other.test"); err != nil {
		t.Errorf("after a hostname change: %v", err)
	}
}

func TestSelfSignedRepairsBrokenPair(t *testing.T) {
	dir := t.TempDir()
	if _, err := New("", "", dir, hostname, nil); err != nil {
		t.Fatal(err)
	}
	// A crash between writing the new key and the new certificate leaves a
	// pair that does not match; the next start replaces it.
	_, keyPEM, err := generate(hostname, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "key.pem"), keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	logger, logs := logBuffer()
	if _, err := New("", "", dir, hostname, logger); err != nil {
		t.Fatalf("New with a mismatched self-signed pair: %v", err)
	}
	if !strings.Contains(logs.String(), "unusable") {
		t.Errorf("log does not say why the certificate was replaced:\n%s", logs)
	}
}

// serve accepts TLS connections on 127.0.0.1 with cfg and answers each
// with "hello\n" until the test ends.
func serve(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	tln := tls.NewListener(ln, cfg)
	wg.Go(func() {
		for {
			c, err := tln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				io.WriteString(c, "hello\n")
				io.Copy(io.Discard, c)
			})
		}
	})
	return ln.Addr().String()
}

// recordingCache is a session cache that notes whether the server ever
// gave the client something to resume with.
type recordingCache struct {
	tls.ClientSessionCache
	mu   sync.Mutex
	puts int
}

func (c *recordingCache) Put(key string, cs *tls.ClientSessionState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cs != nil {
		c.puts++
	}
	c.ClientSessionCache.Put(key, cs)
}

// dial connects, reads the greeting and returns the connection state.
func dial(t *testing.T, addr string, cfg *tls.Config) tls.ConnectionState {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 6)
	// Reading processes any post-handshake message (a TLS 1.3 ticket).
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello\n" {
		t.Fatalf("read %q, %v", buf, err)
	}
	return c.ConnectionState()
}

func TestHandshake(t *testing.T) {
	m, err := New("", "", t.TempDir(), hostname, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, m.Config())
	roots := x509.NewCertPool()
	roots.AddCert(m.Certificate().Leaf)

	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		cache := &recordingCache{ClientSessionCache: tls.NewLRUClientSessionCache(4)}
		cfg := &tls.Config{RootCAs: roots, ServerName: hostname, MinVersion: v, MaxVersion: v, ClientSessionCache: cache}
		st := dial(t, addr, cfg)
		if st.Version != v {
			t.Errorf("version %x, want %x", st.Version, v)
		}
		if !st.PeerCertificates[0].Equal(m.Certificate().Leaf) {
			t.Error("server presented another certificate")
		}
		if st2 := dial(t, addr, cfg); st2.DidResume {
			t.Errorf("TLS %x: session resumed; session tickets must be off", v)
		}
		if cache.puts != 0 {
			t.Errorf("TLS %x: the server issued %d session tickets, want none", v, cache.puts)
		}
	}

	// Clients that verify against 127.0.0.1 or localhost succeed too.
	dial(t, addr, &tls.Config{RootCAs: roots, ServerName: "localhost"})

	// TLS 1.1 and older are refused.
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: hostname, MaxVersion: tls.VersionTLS11})
	if err == nil {
		c.Close()
		t.Error("a TLS 1.1 client completed the handshake")
	}
	if !m.Config().SessionTicketsDisabled || m.Config().MinVersion != tls.VersionTLS12 {
		t.Errorf("Config(): SessionTicketsDisabled %v, MinVersion %x", m.Config().SessionTicketsDisabled, m.Config().MinVersion)
	}
}

func TestReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writePair(t, dir, hostname)
	logger, logs := logBuffer()
	m, err := New(certFile, keyFile, "", hostname, logger)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("warnings for a good certificate:\n%s", logs)
	}
	addr := serve(t, m.Config())
	first := m.Certificate().Leaf

	writePair(t, dir, hostname) // the renewed pair, as certbot writes it
	if err := m.Reload(); err != nil {
		t.Fatal(err)
	}
	second := m.Certificate().Leaf
	if second.Equal(first) {
		t.Fatal("Reload kept the old certificate")
	}
	// The running listener serves the new certificate.
	st := dial(t, addr, &tls.Config{InsecureSkipVerify: true})
	if !st.PeerCertificates[0].Equal(second) {
		t.Error("listener still serves the old certificate after Reload")
	}

	// A bad file is reported and the current certificate stays.
	if err := os.WriteFile(certFile, []byte("not PEM\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err = m.Reload()
	if err == nil || !strings.Contains(err.Error(), certFile) {
		t.Errorf("Reload with a broken certificate = %v, want an error naming %s", err, certFile)
	}
	if !m.Certificate().Leaf.Equal(second) {
		t.Error("a failed Reload replaced the certificate")
	}
	st = dial(t, addr, &tls.Config{InsecureSkipVerify: true})
	if !st.PeerCertificates[0].Equal(second) {
		t.Error("listener lost its certificate after a failed Reload")
	}
}

func TestBadFiles(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writePair(t, dir, hostname)
	otherDir := t.TempDir()
	_, otherKey := writePair(t, otherDir, hostname)
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("-----BEGIN NOTHING-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")

	tests := []struct {
		name, cert, key string
		want            []string // substrings of the error
	}{
		{"missing certificate", missing, keyFile, []string{"read certificate", missing}},
		{"missing key", certFile, missing, []string{"read key", missing}},
		{"not a certificate", garbage, keyFile, []string{garbage, "certificate"}},
		{"not a key", certFile, garbage, []string{garbage, "key"}},
		{"key of another certificate", certFile, otherKey, []string{certFile, otherKey, "does not match"}},
		{"only a certificate", certFile, "", []string{"set both"}},
		{"only a key", "", keyFile, []string{"set both"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cert, tt.key, t.TempDir(), hostname, nil)
			if err == nil {
				t.Fatal("New succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}

	// Files we cannot read are not silently replaced by a new self-signed pair.
	if os.Getuid() != 0 {
		ss := t.TempDir()
		if _, err := New("", "", ss, hostname, nil); err != nil {
			t.Fatal(err)
		}
		os.Chmod(filepath.Join(ss, "key.pem"), 0)
		if _, err := New("", "", ss, hostname, nil); err == nil {
			t.Error("New with an unreadable self-signed key succeeded")
		}
	}
}

func TestCertificateWarnings(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writePair(t, dir, "other.example.test")
	logger, logs := logBuffer()
	if _, err := New(certFile, keyFile, "", hostname, logger); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "does not name this server's hostname") {
		t.Errorf("no warning for a certificate of another name:\n%s", logs)
	}
}
