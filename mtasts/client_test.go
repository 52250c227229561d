package mtasts

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"postie/internal/dnstest"
	"postie/internal/testutil"
	"postie/safeio"
	"postie/tlsrpt"
)

const enforcePolicy = "version: STSv1\r\nmode: enforce\r\nmx: mx1.remote.test\r\nmx: *.mx.remote.test\r\nmax_age: 86400\r\n"

// world is remote.test with an _mta-sts record and a policy server on
// loopback that the Client reaches as mta-sts.remote.test.
type world struct {
	t     *testing.T
	dns   *dnstest.Server
	ca    *testutil.CA
	srv   *httptest.Server
	port  int
	mu    sync.Mutex
	body  string
	hits  int
	reply func(w http.ResponseWriter) bool // true: handled
	now   time.Time
}

func newWorld(t *testing.T) *world {
	w := &world{t: t, dns: dnstest.New(t), ca: testutil.NewCA(t), body: enforcePolicy, now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	w.dns.TXT("_mta-sts.remote.test", "v=STSv1; id=one;")
	w.dns.A("mta-sts.remote.test", "127.0.0.1")
	w.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w.mu.Lock()
		w.hits++
		body, reply := w.body, w.reply
		w.mu.Unlock()
		if r.URL.Path != "/.well-known/mta-sts.txt" || r.Host != "mta-sts.remote.test" {
			http.NotFound(rw, r)
			return
		}
		if reply != nil && r.URL.RawQuery != "followed" && reply(rw) {
			return
		}
		rw.Header().Set("Content-Type", "text/plain")
		rw.Write([]byte(body))
	}))
	w.srv.TLS = w.ca.ServerTLS("mta-sts.remote.test")
	w.srv.StartTLS()
	t.Cleanup(w.srv.Close)
	_, port, _ := net.SplitHostPort(w.srv.Listener.Addr().String())
	w.port, _ = strconv.Atoi(port)
	return w
}

func (w *world) client(dir string) *Client {
	return New(Options{Resolver: w.dns.Resolver(), RootCAs: w.ca.Pool(), Port: w.port, Dir: dir,
		Timeout: 5 * time.Second, Now: func() time.Time { w.mu.Lock(); defer w.mu.Unlock(); return w.now }})
}

func (w *world) advance(d time.Duration) { w.mu.Lock(); w.now = w.now.Add(d); w.mu.Unlock() }
func (w *world) fetches() int            { w.mu.Lock(); defer w.mu.Unlock(); return w.hits }
func (w *world) setID(id string) {
	w.dns.Remove("_mta-sts.remote.test")
	w.dns.TXT("_mta-sts.remote.test", "v=STSv1; id="+id)
}

func TestLookupFetchesVerifiedAndCaches(t *testing.T) {
	w := newWorld(t)
	c := w.client("")
	p, err := c.Lookup(context.Background(), "Remote.Test.")
	if err != nil || p == nil {
		t.Fatalf("Lookup: %v %v", p, err)
	}
	if p.Mode != ModeEnforce || p.ID != "one" || !p.Match("a.mx.remote.test") || p.Match("mx2.remote.test") {
		t.Errorf("policy = %+v", p)
	}
	w.advance(time.Hour)
	if _, err := c.Lookup(context.Background(), "remote.test"); err != nil || w.fetches() != 1 {
		t.Errorf("second lookup with the same id: err %v, %d fetches, want 1", err, w.fetches())
	}
}

func TestChangedIDRefetches(t *testing.T) {
	w := newWorld(t)
	c := w.client("")
	c.Lookup(context.Background(), "remote.test")
	w.mu.Lock()
	w.body = "version: STSv1\nmode: testing\nmx: other.remote.test\nmax_age: 600\n"
	w.mu.Unlock()
	w.setID("two")
	w.advance(time.Minute) // within Recheck: the cached policy is used as is
	if p, _ := c.Lookup(context.Background(), "remote.test"); p.ID != "one" || w.fetches() != 1 {
		t.Errorf("within Recheck: id %q after %d fetches", p.ID, w.fetches())
	}
	w.advance(10 * time.Minute)
	p, err := c.Lookup(context.Background(), "remote.test")
	if err != nil || p.ID != "two" || p.Mode != ModeTesting || w.fetches() != 2 {
		t.Errorf("after the id changed: %+v %v, %d fetches", p, err, w.fetches())
	}
}

// TestUnchangedIDRefreshes: a policy in use is fetched again after half
// its max_age (at most a day) although its id is the same, so that it
// does not run out at max_age; a failed refresh keeps the cached one.
func TestUnchangedIDRefreshes(t *testing.T) {
	w := newWorld(t) // max_age one day: refreshed after 12 hours
	c := w.client("")
	c.Lookup(context.Background(), "remote.test")
	w.advance(11 * time.Hour)
	if p, _ := c.Lookup(context.Background(), "remote.test"); p == nil || w.fetches() != 1 {
		t.Fatalf("before the refresh: %+v, %d fetches", p, w.fetches())
	}
	w.mu.Lock()
	w.body = "version: STSv1\r\nmode: enforce\r\nmx: other.remote.test\r\nmax_age: 86400\r\n"
	w.mu.Unlock()
	w.advance(2 * time.Hour)
	p, err := c.Lookup(context.Background(), "remote.test")
	if err != nil || p == nil || !p.Match("other.remote.test") || w.fetches() != 2 {
		t.Fatalf("after 13 hours: %+v %v, %d fetches; want the policy fetched again", p, err, w.fetches())
	}
	// The policy host fails from now on. 26 hours after the first fetch,
	// the refreshed policy (fetched at 13 hours) still applies.
	w.mu.Lock()
	w.reply = func(rw http.ResponseWriter) bool { http.Error(rw, "down", http.StatusInternalServerError); return true }
	w.mu.Unlock()
	w.advance(13 * time.Hour)
	p, err = c.Lookup(context.Background(), "remote.test")
	var se *Error
	if p == nil || !p.Match("other.remote.test") || !errors.As(err, &se) {
		t.Fatalf("refresh failing after 26 hours: %+v %v; want the cached policy and the fetch error", p, err)
	}
	n := w.fetches()
	w.advance(time.Minute)
	if p, _ := c.Lookup(context.Background(), "remote.test"); p == nil || w.fetches() != n {
		t.Errorf("a failed refresh is retried within Recheck: %d fetches, want %d", w.fetches(), n)
	}
}

// TestParallelLookupsShareOneFetch: the parallel deliveries of a
// newsletter to one domain fetch its policy once, and a caller that gives
// up (its context ends) does not fail the fetch for the others.
func TestParallelLookupsShareOneFetch(t *testing.T) {
	w := newWorld(t)
	release := make(chan struct{})
	w.reply = func(http.ResponseWriter) bool { <-release; return false }
	c := w.client("")
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	results := make([]*Policy, 10)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lctx := context.Background()
			if i == 0 {
				lctx = ctx
			}
			results[i], _ = c.Lookup(lctx, "remote.test")
		}()
	}
	// Hold the first fetch until the others had time to start theirs.
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) && w.fetches() < 2 {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	close(release)
	wg.Wait()
	if n := w.fetches(); n != 1 {
		t.Errorf("%d policy fetches for 10 parallel lookups, want 1", n)
	}
	for i, p := range results[1:] {
		if p == nil || p.Mode != ModeEnforce {
			t.Errorf("lookup %d: %+v", i+1, p)
		}
	}
}

// TestMemoryCacheBounded: mail to many domains without a policy does not
// grow the memory cache past its bound, and a live policy survives the
// pruning without a new fetch.
func TestMemoryCacheBounded(t *testing.T) {
	w := newWorld(t)
	c := w.client(t.TempDir())
	c.maxCached = 3
	if p, _ := c.Lookup(context.Background(), "remote.test"); p == nil {
		t.Fatal("no policy")
	}
	for i := range 10 {
		c.Lookup(context.Background(), fmt.Sprintf("d%d.test", i))
	}
	c.mu.Lock()
	n := len(c.cache)
	c.mu.Unlock()
	if n > 3 {
		t.Errorf("%d domains in the memory cache, bound 3", n)
	}
	w.advance(time.Hour)
	if p, _ := c.Lookup(context.Background(), "remote.test"); p == nil || w.fetches() != 1 {
		t.Errorf("after pruning: %+v, %d fetches; want the cached policy", p, w.fetches())
	}
}

// TestTXTLookupFailure: a failed _mta-sts lookup (SERVFAIL) without a
// cached policy is no policy, but said as an error, not as a definite
// absence; with a cached policy, that policy applies.
func TestTXTLookupFailure(t *testing.T) {
	w := newWorld(t)
	w.dns.ServFail("_mta-sts.remote.test")
	c := w.client("")
	p, err := c.Lookup(context.Background(), "remote.test")
	var se *Error
	if p != nil || err == nil || errors.As(err, &se) {
		t.Errorf("SERVFAIL: %+v, %v; want no policy and a DNS error", p, err)
	}
	w.dns.Rcode("_mta-sts.remote.test", 0)
	if p, err := c.Lookup(context.Background(), "remote.test"); p == nil || err != nil {
		t.Fatalf("Lookup: %+v %v", p, err)
	}
	w.dns.ServFail("_mta-sts.remote.test")
	w.advance(time.Hour)
	if p, err := c.Lookup(context.Background(), "remote.test"); p == nil || err != nil {
		t.Errorf("SERVFAIL with a cached policy: %+v, %v; want the policy", p, err)
	}
}

// TestFailedFetchRemembered: a policy host that fails is asked again only
// after Recheck, not for every message; meanwhile each Lookup says the
// fetch failed (for TLS reports, and so that REQUIRETLS mail waits).
func TestFailedFetchRemembered(t *testing.T) {
	w := newWorld(t)
	w.reply = func(rw http.ResponseWriter) bool { http.Error(rw, "down", http.StatusServiceUnavailable); return true }
	c := w.client("")
	var se *Error
	for i := range 3 {
		if p, err := c.Lookup(context.Background(), "remote.test"); p != nil || !errors.As(err, &se) {
			t.Fatalf("lookup %d: %+v %v; want the fetch error", i, p, err)
		}
		w.advance(time.Minute)
	}
	if n := w.fetches(); n != 1 {
		t.Errorf("%d fetches within Recheck, want 1", n)
	}
	w.mu.Lock()
	w.reply = nil
	w.mu.Unlock()
	w.advance(5 * time.Minute)
	if p, err := c.Lookup(context.Background(), "remote.test"); p == nil || err != nil || w.fetches() != 2 {
		t.Errorf("after Recheck: %+v %v, %d fetches", p, err, w.fetches())
	}
}

func TestCachedPolicySurvivesRestart(t *testing.T) {
	w := newWorld(t)
	dir := t.TempDir()
	if p, err := w.client(dir).Lookup(context.Background(), "remote.test"); err != nil || p == nil {
		t.Fatalf("Lookup: %v %v", p, err)
	}
	// The policy host and the record are gone (an attacker stripping
	// them, say): the new Client still knows the policy from disk.
	w.srv.Close()
	w.dns.Remove("_mta-sts.remote.test")
	w.advance(2 * time.Hour)
	p, err := w.client(dir).Lookup(context.Background(), "remote.test")
	if err != nil || p == nil || p.Mode != ModeEnforce || p.ID != "one" {
		t.Fatalf("after restart: %+v %v", p, err)
	}
	// Past max_age it expires.
	w.advance(24 * time.Hour)
	if p, _ := w.client(dir).Lookup(context.Background(), "remote.test"); p != nil {
		t.Errorf("expired policy still used: %+v", p)
	}
}

func TestSaveFailureKeepsPolicyInMemory(t *testing.T) {
	w := newWorld(t)
	inj := &safeio.Injector{}
	inj.Arm(safeio.OpSync, "")
	c := New(Options{Resolver: w.dns.Resolver(), RootCAs: w.ca.Pool(), Port: w.port, Dir: t.TempDir(),
		FS: &safeio.FS{Fault: inj.Fault}, Now: func() time.Time { return w.now }})
	p, err := c.Lookup(context.Background(), "remote.test")
	if err != nil || p == nil || inj.Hits() == 0 {
		t.Fatalf("Lookup with a failing disk: %v %v (fault hits %d)", p, err, inj.Hits())
	}
	if e := c.load("remote.test"); e != nil {
		t.Errorf("a half-written policy was left on disk: %+v", e)
	}
}

func TestNoRecordNoPolicy(t *testing.T) {
	w := newWorld(t)
	w.dns.Remove("_mta-sts.remote.test")
	w.dns.TXT("_mta-sts.remote.test", "v=spf1 -all")
	p, err := w.client("").Lookup(context.Background(), "remote.test")
	if p != nil || err != nil || w.fetches() != 0 {
		t.Errorf("no STSv1 record: %+v %v, %d fetches", p, err, w.fetches())
	}
	// Two STSv1 records: none is usable (RFC 8461 section 3.1).
	w.dns.TXT("_mta-sts.remote.test", "v=STSv1; id=a", "v=STSv1; id=b")
	if p, _ := w.client("").Lookup(context.Background(), "remote.test"); p != nil || w.fetches() != 0 {
		t.Errorf("two records: %+v, %d fetches", p, w.fetches())
	}
}

func TestFetchFailures(t *testing.T) {
	big := make([]byte, MaxPolicySize+1)
	for name, tc := range map[string]struct {
		reply func(http.ResponseWriter) bool
		roots bool // trust the policy server's CA
		want  tlsrpt.ResultType
	}{
		"untrusted certificate": {nil, false, tlsrpt.STSWebPKIInvalid},
		"redirect": {func(w http.ResponseWriter) bool {
			w.Header().Set("Location", "/.well-known/mta-sts.txt?followed")
			w.WriteHeader(http.StatusFound)
			return true
		}, true, tlsrpt.STSPolicyFetchError},
		"not found": {func(w http.ResponseWriter) bool { w.WriteHeader(404); return true }, true, tlsrpt.STSPolicyFetchError},
		"html": {func(w http.ResponseWriter) bool {
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte(enforcePolicy))
			return true
		}, true, tlsrpt.STSPolicyInvalid},
		"too big": {func(w http.ResponseWriter) bool {
			w.Header().Set("Content-Type", "text/plain")
			w.Write(big)
			return true
		}, true, tlsrpt.STSPolicyInvalid},
		"garbage": {func(w http.ResponseWriter) bool { w.Write([]byte("hello")); return true }, true, tlsrpt.STSPolicyInvalid},
	} {
		t.Run(name, func(t *testing.T) {
			w := newWorld(t)
			w.reply = tc.reply
			opts := Options{Resolver: w.dns.Resolver(), Port: w.port, Timeout: 5 * time.Second}
			if tc.roots {
				opts.RootCAs = w.ca.Pool()
			}
			p, err := New(opts).Lookup(context.Background(), "remote.test")
			var e *Error
			if p != nil || !errors.As(err, &e) || e.Type != tc.want {
				t.Fatalf("Lookup = %+v, %v; want no policy and a %s error", p, err, tc.want)
			}
		})
	}
}

func TestFetchFailureKeepsCachedPolicy(t *testing.T) {
	w := newWorld(t)
	c := w.client("")
	c.Lookup(context.Background(), "remote.test")
	w.setID("two")
	w.reply = func(rw http.ResponseWriter) bool { rw.WriteHeader(500); return true }
	w.advance(time.Hour)
	p, err := c.Lookup(context.Background(), "remote.test")
	var e *Error
	if p == nil || p.ID != "one" || !errors.As(err, &e) || e.Type != tlsrpt.STSPolicyFetchError {
		t.Errorf("Lookup = %+v, %v; want the cached policy and a fetch error", p, err)
	}
}

func TestFetchIsTimeBounded(t *testing.T) {
	w := newWorld(t)
	release := make(chan struct{})
	defer close(release)
	w.reply = func(http.ResponseWriter) bool { <-release; return true }
	c := New(Options{Resolver: w.dns.Resolver(), RootCAs: w.ca.Pool(), Port: w.port, Timeout: 200 * time.Millisecond})
	done := make(chan error, 1)
	go func() { _, err := c.Lookup(context.Background(), "remote.test"); done <- err }()
	select {
	case err := <-done:
		if err == nil {
			t.Error("a hanging policy server gave no error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Lookup did not give up on a hanging policy server")
	}
}

// TestNoRecordIsRemembered: mail to a domain without MTA-STS costs one
// TXT query per Recheck, not one per message; a record published later is
// seen after Recheck.
func TestNoRecordIsRemembered(t *testing.T) {
	w := newWorld(t)
	w.dns.Remove("_mta-sts.remote.test")
	c := w.client("")
	for range 3 {
		if p, err := c.Lookup(context.Background(), "remote.test"); p != nil || err != nil {
			t.Fatalf("Lookup = %v %v", p, err)
		}
	}
	if n := w.dns.Count("_mta-sts.remote.test", "TXT"); n != 1 {
		t.Errorf("%d TXT queries for three lookups within Recheck, want 1", n)
	}
	w.setID("one")
	w.advance(6 * time.Minute)
	if p, err := c.Lookup(context.Background(), "remote.test"); p == nil || err != nil {
		t.Errorf("after Recheck, the new record is not seen: %v %v", p, err)
	}
}
