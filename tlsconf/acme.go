package tlsconf

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// ACMEOptions configure automatic certificates (Manager.EnableACME).
type ACMEOptions struct {
	// Directory is the ACME server's directory URL. Required.
	Directory string
	// Email is the contact address given to the ACME server; "" gives none.
	Email string
	// CAFile is a PEM file of roots trusted for the ACME server's own
	// HTTPS; "" means the system's roots.
	CAFile string
	// CacheDir keeps the account key and the certificates (with their
	// keys). Required. It is made (or narrowed to) mode 0700; every file in
	// it is written 0600, durably. It belongs to one Directory: what
	// another one left there is removed.
	CacheDir string
	// Names are the names to hold a certificate for, one certificate each.
	// The first is the default: it is served when a client sends no SNI,
	// or a name not in Names that the fallback certificate does not cover.
	// At least one.
	Names []string
	// RetryMin is the wait after a failed attempt, doubled at each failure
	// up to RetryMax; 0 means 5 minutes (Let's Encrypt allows 5 failed
	// validations per name and hour). Less than a minute counts as one
	// minute: autocert answers with its last failure that long.
	RetryMin time.Duration
	// RetryMax caps the wait between failed attempts; 0 means one hour.
	RetryMax time.Duration
	// Refresh is how often, when every name has its certificate, the
	// certificates are read again from the ACME client (which renews them
	// by itself, a third of their lifetime before they expire, at most 30
	// days); 0 means one hour. Certificates with a short lifetime are read
	// more often: every tenth of it.
	Refresh time.Duration
}

// acmeState is the ACME side of a Manager: autocert, and the certificates
// it has obtained so far, by name. Handshakes only read certs; RunACME's
// loop fills it.
type acmeState struct {
	opts ACMEOptions
	ac   *autocert.Manager
	kick chan struct{} // a SIGHUP: try again now

	mu    sync.RWMutex
	certs map[string]*tls.Certificate // obtained, by lower-case name
}

// EnableACME turns automatic certificates on. Call it before Config is
// used by any listener, and then RunACME. Until a name has its
// certificate, the configured or self-signed one is served for it.
func (m *Manager) EnableACME(opts ACMEOptions) error {
	if opts.Directory == "" || opts.CacheDir == "" || len(opts.Names) == 0 {
		return errors.New("tlsconf: ACME needs a directory URL, a cache directory and at least one name")
	}
	if opts.RetryMin <= 0 {
		opts.RetryMin = 5 * time.Minute
	}
	opts.RetryMin = max(opts.RetryMin, autocertForget)
	if opts.RetryMax <= 0 {
		opts.RetryMax = time.Hour
	}
	opts.RetryMax = max(opts.RetryMax, opts.RetryMin)
	if opts.Refresh <= 0 {
		opts.Refresh = time.Hour
	}
	names := make([]string, len(opts.Names))
	for i, n := range opts.Names {
		names[i] = canonName(n)
	}
	opts.Names = names
	client := &acme.Client{DirectoryURL: opts.Directory, UserAgent: "postie"}
	if opts.CAFile != "" {
		pem, err := os.ReadFile(opts.CAFile)
		if err != nil {
			return fmt.Errorf("tlsconf: ACME CA file: %w", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return fmt.Errorf("tlsconf: ACME CA file %s: no PEM certificate in it", opts.CAFile)
		}
		client.HTTPClient = &http.Client{
			Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, Proxy: http.ProxyFromEnvironment},
			Timeout:   time.Minute,
		}
	}
	cache, err := newDirCache(opts.CacheDir)
	if err != nil {
		return err
	}
	if cleared, err := cache.bindDirectory(opts.Directory); err != nil {
		return err
	} else if cleared {
		m.logger.Info("tls: ACME server changed; certificates of the previous one dropped", "directory", opts.Directory, "cache", opts.CacheDir)
	}
	m.acme = &acmeState{
		opts: opts,
		ac: &autocert.Manager{
			Prompt:     autocert.AcceptTOS,
			Cache:      cache,
			HostPolicy: hostPolicy(opts.Names),
			Client:     client,
			Email:      opts.Email,
		},
		kick:  make(chan struct{}, 1),
		certs: map[string]*tls.Certificate{},
	}
	m.logger.Info("tls: ACME on", "directory", opts.Directory, "names", strings.Join(opts.Names, ","), "cache", opts.CacheDir)
	return nil
}

// ACMEHTTPHandler answers ACME http-01 challenges (paths under
// /.well-known/acme-challenge/; anything else is 404), or is nil when ACME
// is off. Calling it is what makes the ACME client offer http-01 besides
// tls-alpn-01: call it only when a plain HTTP listener serves it.
func (m *Manager) ACMEHTTPHandler() http.Handler {
	if m.acme == nil {
		return nil
	}
	return m.acme.ac.HTTPHandler(http.NotFoundHandler())
}

// hostPolicy allows exactly names. Unlike autocert.HostWhitelist it takes
// a Host header with a port (an http-01 validation on a port other than
// 80 sends one) and any case.
func hostPolicy(names []string) autocert.HostPolicy {
	allowed := make(map[string]bool, len(names))
	for _, n := range names {
		allowed[n] = true
	}
	return func(_ context.Context, host string) error {
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if !allowed[canonName(host)] {
			return fmt.Errorf("tlsconf: no certificate is wanted for %q", host)
		}
		return nil
	}
}

func canonName(name string) string { return strings.TrimSuffix(strings.ToLower(name), ".") }

// getCertificate is every listener's tls.Config.GetCertificate: a
// tls-alpn-01 validation gets autocert's challenge certificate; otherwise
// the ACME certificate for the SNI name when there is one (a name we hold
// none for gets the first name's, unless the fallback certificate covers
// it); otherwise the configured or self-signed certificate. It never
// waits for an ACME server.
func (m *Manager) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	fallback := m.cert.Load()
	a := m.acme
	if a == nil {
		return fallback, nil
	}
	if len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == acme.ALPNProto {
		return a.ac.GetCertificate(hello)
	}
	name := canonName(hello.ServerName)
	if c := a.lookup(name); c != nil {
		return c, nil
	}
	if a.wanted(name) || (name != "" && fallback.Leaf.VerifyHostname(name) == nil) {
		return fallback, nil
	}
	if c := a.lookup(a.opts.Names[0]); c != nil {
		return c, nil
	}
	return fallback, nil
}

// lookup returns the unexpired ACME certificate for name, or nil.
func (a *acmeState) lookup(name string) *tls.Certificate {
	a.mu.RLock()
	c := a.certs[name]
	a.mu.RUnlock()
	if c == nil || !time.Now().Before(c.Leaf.NotAfter) {
		return nil
	}
	return c
}

func (a *acmeState) wanted(name string) bool { return slices.Contains(a.opts.Names, name) }

// kickACME makes RunACME try every missing name now (SIGHUP).
func (m *Manager) kickACME() {
	if m.acme == nil {
		return
	}
	select {
	case m.acme.kick <- struct{}{}:
	default:
	}
}

// autocertForget is how long autocert answers a name with its last
// failure before it asks the ACME server again (its createCertRetryAfter,
// one minute), with a margin: no retry comes sooner.
const autocertForget = time.Minute + 5*time.Second

// RunACME obtains a certificate for every name, in the background of the
// listeners, and keeps them current until ctx ends: a failed name is
// tried again after RetryMin, doubling up to RetryMax (a Reload tries at
// once, or a minute after the last failure if that is later); when all
// are held, they are read again every Refresh (or tenth of the shortest
// lifetime), which picks up the renewals the ACME client makes by itself. Without EnableACME it returns
// at once. A pass in progress does not end with ctx (autocert gives no
// way to cancel one); RunACME returns after it.
func (m *Manager) RunACME(ctx context.Context) {
	a := m.acme
	if a == nil {
		return
	}
	wait := a.opts.RetryMin
	var lastFail time.Time
	for {
		failed, shortest := m.obtainAll(ctx)
		next := min(a.opts.Refresh, max(shortest/10, time.Second))
		if failed > 0 {
			lastFail = time.Now()
			next, wait = wait, min(2*wait, a.opts.RetryMax)
			m.logger.Warn("tls: ACME certificates missing; the configured or self-signed certificate stands in",
				"missing", failed, "retry_in", next)
		} else {
			wait = a.opts.RetryMin
		}
		kicked, alive := a.sleep(ctx, next, lastFail)
		if !alive {
			return
		}
		if kicked {
			wait = a.opts.RetryMin
		}
	}
}

// sleep waits d, or less after a kick: until autocertForget after
// lastFail, or not at all. It reports whether it was kicked, and false
// for alive when ctx ended.
func (a *acmeState) sleep(ctx context.Context, d time.Duration, lastFail time.Time) (kicked, alive bool) {
	deadline := time.Now().Add(d)
	for {
		t := time.NewTimer(time.Until(deadline))
		select {
		case <-ctx.Done():
			t.Stop()
			return kicked, false
		case <-t.C:
			return kicked, true
		case <-a.kick:
			t.Stop()
			kicked = true
			if soon := lastFail.Add(autocertForget); soon.Before(deadline) {
				deadline = soon
			}
		}
	}
}

// obtainAll asks autocert for each name's certificate (from its memory,
// its cache, or the ACME server) and returns how many it could not get,
// and the shortest lifetime of those it holds.
func (m *Manager) obtainAll(ctx context.Context) (failed int, shortest time.Duration) {
	a := m.acme
	shortest = a.opts.Refresh * 10
	for _, name := range a.opts.Names {
		if ctx.Err() != nil {
			return failed, shortest
		}
		c, err := a.ac.GetCertificate(ecdsaHello(name))
		if err == nil && c.Leaf == nil {
			c.Leaf, err = x509.ParseCertificate(c.Certificate[0])
		}
		if err != nil {
			failed++
			m.logger.Warn("tls: ACME certificate not obtained", "name", name, "err", err)
			continue
		}
		shortest = min(shortest, c.Leaf.NotAfter.Sub(c.Leaf.NotBefore))
		a.mu.Lock()
		old := a.certs[name]
		a.certs[name] = c
		a.mu.Unlock()
		if old == nil || old.Leaf.SerialNumber.Cmp(c.Leaf.SerialNumber) != 0 {
			m.logger.Info("tls: ACME certificate in service", "name", name,
				"issuer", c.Leaf.Issuer.String(), "not_after", c.Leaf.NotAfter)
		}
	}
	return failed, shortest
}

// ecdsaHello is a ClientHello that makes autocert pick (or obtain) the
// ECDSA certificate for name: the one certificate we keep per name.
// Every current client supports ECDSA.
func ecdsaHello(name string) *tls.ClientHelloInfo {
	return &tls.ClientHelloInfo{
		ServerName:       name,
		SignatureSchemes: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256},
		SupportedCurves:  []tls.CurveID{tls.CurveP256},
		CipherSuites:     []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
	}
}
