package tlsconf

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// acmeManager is a self-signed Manager with ACME on for names, pointed at
// directory (which the fallback tests never reach).
func acmeManager(t *testing.T, directory string, names ...string) (*Manager, string) {
	t.Helper()
	dir := t.TempDir()
	logger, _ := logBuffer()
	m, err := New("", "", filepath.Join(dir, "tls"), hostname, logger)
	if err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(dir, "acme")
	if err := m.EnableACME(ACMEOptions{Directory: directory, CacheDir: cache, Names: names, RetryMin: time.Hour}); err != nil {
		t.Fatal(err)
	}
	return m, cache
}

// fakeIssued returns a certificate for name as if ACME had issued it,
// valid until notAfter.
func fakeIssued(t *testing.T, name string, notAfter time.Time) *tls.Certificate {
	t.Helper()
	certPEM, keyPEM, err := generate(name, notAfter.Add(-selfSignedLifetime))
	if err != nil {
		t.Fatal(err)
	}
	c, err := parsePair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// served is the certificate a client sending sni (and alpn) gets.
func served(t *testing.T, m *Manager, sni string, alpn ...string) *tls.Certificate {
	t.Helper()
	c, err := m.Config().GetCertificate(&tls.ClientHelloInfo{ServerName: sni, SupportedProtos: alpn})
	if err != nil {
		t.Fatalf("SNI %q: %v", sni, err)
	}
	return c
}

// TestACMEFallback: until a name has its ACME certificate the stand-in
// (here self-signed) is served for it; after, the ACME one for its SNI,
// the first name's without SNI or for a name the stand-in does not cover,
// and the stand-in again once an ACME certificate has expired.
func TestACMEFallback(t *testing.T) {
	const sts = "mta-sts.example.test"
	m, _ := acmeManager(t, "https://127.0.0.1:1/dir", hostname, sts)
	self := m.Certificate()
	for _, sni := range []string{hostname, sts, "", "elsewhere.test"} {
		if served(t, m, sni) != self {
			t.Errorf("SNI %q before issuance: not the self-signed certificate", sni)
		}
	}

	host := fakeIssued(t, hostname, time.Now().Add(90*24*time.Hour))
	m.acme.certs[hostname] = host
	cases := []struct {
		sni  string
		want *tls.Certificate
	}{
		{hostname, host},
		{strings.ToUpper(hostname) + ".", host},
		{sts, self}, // wanted, not there yet: not another name's certificate
		{"", host},
		{"elsewhere.test", host},
		{"localhost", self}, // the stand-in covers it
	}
	for _, c := range cases {
		if served(t, m, c.sni) != c.want {
			t.Errorf("SNI %q with only %s issued: got %v", c.sni, hostname, served(t, m, c.sni).Leaf.DNSNames)
		}
	}

	stsCert := fakeIssued(t, sts, time.Now().Add(90*24*time.Hour))
	m.acme.certs[sts] = stsCert
	if served(t, m, sts) != stsCert {
		t.Errorf("SNI %s: not its own certificate", sts)
	}
	m.acme.certs[hostname] = fakeIssued(t, hostname, time.Now().Add(-time.Minute))
	if served(t, m, hostname) != self || served(t, m, "") != self {
		t.Errorf("an expired ACME certificate is served")
	}

	// A tls-alpn-01 validation goes to autocert, never to a certificate
	// of ours (here it has no token, so the handshake fails).
	if c, err := m.Config().GetCertificate(&tls.ClientHelloInfo{ServerName: hostname, SupportedProtos: []string{acme.ALPNProto}}); err == nil {
		t.Errorf("tls-alpn-01 hello served %v", c.Leaf.DNSNames)
	}
}

// TestACMEHandshake runs a real handshake through Config: the client sees
// the ACME certificate for its SNI once it is there, with no new Config.
func TestACMEHandshake(t *testing.T) {
	m, _ := acmeManager(t, "https://127.0.0.1:1/dir", hostname)
	cfg := m.Config()
	leafOf := func() *x509.Certificate {
		c1, c2 := net.Pipe()
		defer c1.Close()
		defer c2.Close()
		go func() { _ = tls.Server(c2, cfg).Handshake() }()
		cl := tls.Client(c1, &tls.Config{ServerName: hostname, InsecureSkipVerify: true})
		if err := cl.Handshake(); err != nil {
			t.Fatal(err)
		}
		return cl.ConnectionState().PeerCertificates[0]
	}
	if !leafOf().Equal(m.Certificate().Leaf) {
		t.Fatal("before issuance: not the self-signed certificate")
	}
	issued := fakeIssued(t, hostname, time.Now().Add(24*time.Hour))
	m.acme.mu.Lock()
	m.acme.certs[hostname] = issued
	m.acme.mu.Unlock()
	if !leafOf().Equal(issued.Leaf) {
		t.Fatal("after issuance: not the ACME certificate")
	}
}

// TestACMEFromCache: a certificate autocert cached before a restart is in
// service after RunACME's first pass, without the ACME server (which
// fails every request here).
func TestACMEFromCache(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Error(w, "no", http.StatusForbidden)
	}))
	defer srv.Close()
	m, cache := acmeManager(t, srv.URL+"/dir", hostname)
	certPEM, keyPEM, err := generate(hostname, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cache, hostname), append(keyPEM, certPEM...), 0o600); err != nil {
		t.Fatal(err)
	}
	if failed, _ := m.obtainAll(context.Background()); failed != 0 {
		t.Fatalf("%d names failed", failed)
	}
	if got := served(t, m, hostname); got == m.Certificate() || got.Leaf.VerifyHostname(hostname) != nil {
		t.Errorf("cached certificate not served")
	}
	if hits.Load() != 0 {
		t.Errorf("the ACME server was asked %d times", hits.Load())
	}
}

// TestACMESleep: RunACME's wait ends early on a kick (a Reload, on
// SIGHUP), but not sooner than autocertForget after the last failure,
// when autocert would only repeat that failure.
func TestACMESleep(t *testing.T) {
	m, _ := acmeManager(t, "https://127.0.0.1:1/dir", hostname)
	a := m.acme
	type result struct{ kicked, alive bool }
	run := func(ctx context.Context, lastFail time.Time) chan result {
		ch := make(chan result, 1)
		go func() {
			k, al := a.sleep(ctx, time.Hour, lastFail)
			ch <- result{k, al}
		}()
		return ch
	}

	ch := run(context.Background(), time.Now().Add(-2*autocertForget))
	if err := m.Reload(); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-ch:
		if !r.kicked || !r.alive {
			t.Errorf("after a Reload: kicked %v alive %v", r.kicked, r.alive)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a Reload did not end the wait")
	}

	ctx, cancel := context.WithCancel(context.Background())
	ch = run(ctx, time.Now())
	m.kickACME()
	select {
	case <-ch:
		t.Fatal("a Reload right after a failure ended the wait at once")
	case <-time.After(200 * time.Millisecond):
	}
	cancel()
	if r := <-ch; !r.kicked || r.alive {
		t.Errorf("after cancel: kicked %v alive %v", r.kicked, r.alive)
	}
}

// TestACMECacheFiles: the cache directory is 0700 (also when it existed
// wider), each entry 0600, names cannot leave it, a missing entry is
// autocert's cache miss.
func TestACMECacheFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "acme")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	c, err := newDirCache(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, name := range []string{"acme_account+key", hostname, "../../escape"} {
		if err := c.Put(ctx, name, []byte("-----BEGIN EC PRIVATE KEY-----\n")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "..", "..", "escape")); err == nil {
		t.Error("a name left the cache directory")
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 3 {
		t.Errorf("cache holds %d entries, want 3 (no temporary files)", len(entries))
	}
	for _, e := range append(entries, nil) {
		path, want := dir, os.FileMode(0o700)
		if e != nil {
			path, want = filepath.Join(dir, e.Name()), 0o600
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), want)
		}
	}
	if b, err := c.Get(ctx, hostname); err != nil || !strings.Contains(string(b), "PRIVATE KEY") {
		t.Errorf("Get: %q, %v", b, err)
	}
	if err := c.Delete(ctx, hostname); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, hostname); !errors.Is(err, autocert.ErrCacheMiss) {
		t.Errorf("Get after Delete: %v, want ErrCacheMiss", err)
	}
	if err := c.Delete(ctx, hostname); err != nil {
		t.Errorf("Delete of a missing entry: %v", err)
	}
}

// TestACMECacheDirectory: the cache belongs to one ACME server; pointed
// at another (from staging to production), it starts empty.
func TestACMECacheDirectory(t *testing.T) {
	c, err := newDirCache(filepath.Join(t.TempDir(), "acme"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const staging, production = "https://staging.test/dir", "https://production.test/dir"
	if cleared, err := c.bindDirectory(staging); err != nil || cleared {
		t.Fatalf("first bind: cleared %v, %v", cleared, err)
	}
	c.Put(ctx, hostname, []byte("staging certificate"))
	if cleared, err := c.bindDirectory(staging); err != nil || cleared {
		t.Fatalf("same directory: cleared %v, %v", cleared, err)
	}
	if _, err := c.Get(ctx, hostname); err != nil {
		t.Fatalf("same directory: %v", err)
	}
	if cleared, err := c.bindDirectory(production); err != nil || !cleared {
		t.Fatalf("another directory: cleared %v, %v", cleared, err)
	}
	if _, err := c.Get(ctx, hostname); !errors.Is(err, autocert.ErrCacheMiss) {
		t.Errorf("another directory: the old certificate is still cached (%v)", err)
	}
	if b, _ := c.Get(ctx, directoryFile); string(b) != production {
		t.Errorf("%s holds %q", directoryFile, b)
	}
}

// TestACMEHostPolicy: exactly the names, in any case, with or without a
// port (an http-01 validation on a port other than 80 sends one).
func TestACMEHostPolicy(t *testing.T) {
	p := hostPolicy([]string{hostname, "mta-sts.example.test"})
	for _, h := range []string{hostname, "MAIL.example.test", hostname + ":8080", "mta-sts.example.test."} {
		if err := p(context.Background(), h); err != nil {
			t.Errorf("%s refused: %v", h, err)
		}
	}
	for _, h := range []string{"example.test", "x." + hostname, "127.0.0.1", "", "evil.test:80"} {
		if p(context.Background(), h) == nil {
			t.Errorf("%q allowed", h)
		}
	}
}

func TestEnableACMEBadOptions(t *testing.T) {
	logger, _ := logBuffer()
	m, err := New("", "", filepath.Join(t.TempDir(), "tls"), hostname, logger)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(bad, []byte("not pem"), 0o600)
	for _, o := range []ACMEOptions{
		{CacheDir: t.TempDir(), Names: []string{hostname}},
		{Directory: "https://a.test/dir", Names: []string{hostname}},
		{Directory: "https://a.test/dir", CacheDir: t.TempDir()},
		{Directory: "https://a.test/dir", CacheDir: t.TempDir(), Names: []string{hostname}, CAFile: bad},
	} {
		if err := m.EnableACME(o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
	if m.acme != nil || m.ACMEHTTPHandler() != nil {
		t.Error("ACME on after refused options")
	}
}
