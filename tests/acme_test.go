package tests

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"postie/internal/dnstest"
	"postie/internal/testutil"
)

// The ACME tests run the real `postie serve` against Let's Encrypt's
// Pebble, an ACME server built from the pinned tool in go.mod, on
// loopback, with Pebble's DNS pointed at a dnstest server that sends
// every certificate name to the address postie's [http] listeners bind.

// acmeIP is where postie's [http] listeners bind in these tests: an
// address of its own on loopback, so the ports picked for them ahead of
// time (Pebble must know them) do not meet the kernel-picked ports of
// other tests on 127.0.0.1.
const acmeIP = "127.0.20.1"

// acmeHost and acmeDomains are newInstance's hostname and domains.
const acmeHost = "mx.example.test"

var acmeDomains = []string{"example.test", "other.test"}

// pebble is one running Pebble.
type pebble struct {
	dir      string // its directory URL
	mgmt     string // its management address
	trust    *x509.CertPool
	caFile   string // PEM of the CA of its own listeners, for acme_ca_file
	log      string
	issuance *x509.CertPool // its issuing root, once fetched
}

var (
	pebbleOnce sync.Once
	pebblePath string
	pebbleErr  error
)

// pebbleBinary builds Pebble once per test binary run, next to the
// postie binary (TestMain removes that directory), or skips.
func pebbleBinary(t *testing.T) string {
	t.Helper()
	pebbleOnce.Do(func() {
		pebblePath = filepath.Join(filepath.Dir(postieBin), "pebble")
		out, err := exec.Command("go", "build", "-o", pebblePath, "github.com/letsencrypt/pebble/v2/cmd/pebble").CombinedOutput()
		if err != nil {
			pebbleErr = fmt.Errorf("%v: %s", err, out)
		}
	})
	if pebbleErr != nil {
		t.Skipf("cannot build Pebble (github.com/letsencrypt/pebble/v2/cmd/pebble, a tool in go.mod): %v", pebbleErr)
	}
	return pebblePath
}

// freePort is a port free on ip now, for listeners that must be told
// their port before they bind.
func freePort(t *testing.T, ip string) int {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startPebble runs Pebble validating http-01 on httpPort and tls-alpn-01
// on tlsPort (at whatever address DNS gives for the name), resolving
// through dnsAddr, issuing certificates valid for validity (0: Pebble's
// default, 90 days); it stops when the test ends.
func startPebble(t *testing.T, httpPort, tlsPort int, dnsAddr string, validity time.Duration) *pebble {
	t.Helper()
	bin := pebbleBinary(t)
	dir := t.TempDir()
	ca := testutil.NewCA(t)
	leaf := ca.Issue([]string{"127.0.0.1", "localhost"}, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	keyDER, err := x509.MarshalPKCS8PrivateKey(leaf.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	p := &pebble{trust: ca.Pool(), caFile: filepath.Join(dir, "ca.pem"), log: filepath.Join(dir, "pebble.log")}
	files := map[string][]byte{
		"ca.pem":   ca.PEM(),
		"cert.pem": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Certificate[0]}),
		"key.pem":  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t, "127.0.0.1"))
	p.mgmt = fmt.Sprintf("127.0.0.1:%d", freePort(t, "127.0.0.1"))
	conf, _ := json.Marshal(map[string]any{"pebble": map[string]any{
		"listenAddress": listen, "managementListenAddress": p.mgmt,
		"certificate": filepath.Join(dir, "cert.pem"), "privateKey": filepath.Join(dir, "key.pem"),
		"httpPort": httpPort, "tlsPort": tlsPort,
		"ocspResponderURL": "", "externalAccountBindingRequired": false,
		"profiles": map[string]any{"default": map[string]any{"description": "test", "validityPeriod": int(validity / time.Second)}},
	}})
	files["pebble.json"] = conf
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	logf, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, "-config", filepath.Join(dir, "pebble.json"), "-dnsserver", dnsAddr)
	cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			b, _ := os.ReadFile(p.log)
			t.Logf("pebble log:\n%s", tail(string(b), 8000))
		}
	})
	p.dir = "https://" + listen + "/dir"
	client := p.client()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get(p.dir)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(p.log)
			t.Fatalf("pebble exited:\n%s", b)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("pebble not up after 30s: %v", err)
		}
	}
	return p
}

// client trusts Pebble's own listeners.
func (p *pebble) client() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.trust}}}
}

// root fetches the root Pebble issues under, from its management
// interface.
func (p *pebble) root(t *testing.T) *x509.CertPool {
	t.Helper()
	if p.issuance != nil {
		return p.issuance
	}
	resp, err := p.client().Get("https://" + p.mgmt + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	p.issuance = x509.NewCertPool()
	if resp.StatusCode != http.StatusOK || !p.issuance.AppendCertsFromPEM(b) {
		t.Fatalf("pebble root: %s %q", resp.Status, b)
	}
	return p.issuance
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// acmeDNS answers every certificate name with acmeIP.
func acmeDNS(t *testing.T) *dnstest.Server {
	dns := dnstest.New(t)
	dns.A(acmeHost, acmeIP)
	for _, d := range acmeDomains {
		for _, p := range []string{"mta-sts.", "autoconfig.", "autodiscover."} {
			dns.A(p+d, acmeIP)
		}
	}
	return dns
}

// gate is a TCP relay to addr that holds every connection until opened:
// the test decides when postie may reach the ACME server.
type gate struct {
	addr string
	open chan struct{}
	ln   net.Listener
}

func newGate(t *testing.T, to string) *gate {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{addr: ln.Addr().String(), open: make(chan struct{}), ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				<-g.open
				up, err := net.Dial("tcp", to)
				if err != nil {
					return
				}
				defer up.Close()
				go io.Copy(up, c)
				io.Copy(c, up)
			}()
		}
	}()
	return g
}

// acmeConfig is the [tls] and [http] part of an instance using ACME.
func acmeConfig(directory, caFile string, httpPort, tlsPort int) string {
	cfg := fmt.Sprintf("\n[tls]\nacme = true\nacme_email = \"postmaster@example.test\"\nacme_directory = %q\nacme_ca_file = %q\n\n[http]\nlisten = [\"%s:%d\"]\n",
		directory, caFile, acmeIP, httpPort)
	if tlsPort != 0 {
		cfg += fmt.Sprintf("tls_listen = [\"%s:%d\"]\n", acmeIP, tlsPort)
	}
	return cfg
}

// peerLeaf is the leaf certificate a TLS client sending sni ("" for none)
// gets at addr, implicit TLS, unverified.
func peerLeaf(t *testing.T, addr, sni string) *x509.Certificate {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("TLS to %s (SNI %q): %v", addr, sni, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0]
}

// verifiedTLS dials addr with implicit TLS, verifying name against roots.
func verifiedTLS(addr, name string, roots *x509.CertPool) error {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, &tls.Config{ServerName: name, RootCAs: roots})
	if err != nil {
		return err
	}
	return c.Close()
}

// verifiedSTARTTLS runs SMTP STARTTLS at addr, verifying name against roots.
func verifiedSTARTTLS(addr, name string, roots *x509.CertPool) error {
	c, err := smtp.DialStartTLS(addr, &tls.Config{ServerName: name, RootCAs: roots})
	if err != nil {
		return err
	}
	return c.Close()
}

// eventually retries f until it succeeds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %v: %v", what, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestACME: postie comes up at once with its self-signed certificate while
// the ACME server is out of reach; once reachable, every name gets a
// certificate from Pebble (tls-alpn-01 on the HTTPS listener), which IMAPS
// and submission's STARTTLS serve without a restart, by SNI (none: the
// hostname's); the cache holds them 0600; SIGHUP keeps them; and after a
// restart with Pebble gone they are served from the cache.
func TestACME(t *testing.T) {
	t.Parallel()
	dns := acmeDNS(t)
	httpPort, tlsPort := freePort(t, acmeIP), freePort(t, acmeIP)
	pb := startPebble(t, httpPort, tlsPort, dns.Addr(), 0)
	g := newGate(t, strings.TrimSuffix(strings.TrimPrefix(pb.dir, "https://"), "/dir"))
	in := newInstance(t, acmeConfig("https://"+g.addr+"/dir", pb.caFile, httpPort, tlsPort))
	in.extraRoles = []string{"http", "https"}
	in.start()

	// Before the ACME server is reachable: the self-signed certificate.
	selfPEM, err := os.ReadFile(filepath.Join(in.dir, "data", "tls", "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(selfPEM)
	for _, c := range []struct{ role, sni string }{{"imaps", acmeHost}, {"imaps", ""}, {"https", "mta-sts.example.test"}, {"submissions", acmeHost}} {
		if leaf := peerLeaf(t, in.ports[c.role], c.sni); string(leaf.Raw) != string(block.Bytes) {
			t.Errorf("%s, SNI %q, before issuance: %v, not the self-signed certificate", c.role, c.sni, leaf.DNSNames)
		}
	}

	close(g.open)
	root := pb.root(t)
	eventually(t, 2*time.Minute, "IMAPS with Pebble's certificate", func() error {
		return verifiedTLS(in.ports["imaps"], acmeHost, root)
	})
	if err := verifiedSTARTTLS(in.ports["submission"], acmeHost, root); err != nil {
		t.Errorf("submission STARTTLS: %v", err)
	}
	if leaf := peerLeaf(t, in.ports["imaps"], ""); leaf.VerifyHostname(acmeHost) != nil || string(leaf.Raw) == string(block.Bytes) {
		t.Errorf("IMAPS without SNI: %v, want the hostname's ACME certificate", leaf.DNSNames)
	}
	var names []string
	for _, d := range acmeDomains {
		names = append(names, "mta-sts."+d, "autoconfig."+d, "autodiscover."+d)
	}
	for _, name := range names {
		eventually(t, 2*time.Minute, "HTTPS for "+name, func() error {
			return verifiedTLS(in.ports["https"], name, root)
		})
	}
	if leaf := peerLeaf(t, in.ports["https"], "mta-sts.example.test"); leaf.VerifyHostname(acmeHost) == nil {
		t.Errorf("mta-sts.example.test got a certificate that also names %s: %v", acmeHost, leaf.DNSNames)
	}
	// The MTA-STS policy as a sending server fetches it: by name, verified.
	https := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: root},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, in.ports["https"])
		},
	}}
	resp, err := https.Get("https://mta-sts.other.test/.well-known/mta-sts.txt")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "mx: "+acmeHost) {
		t.Errorf("MTA-STS policy: %s %q", resp.Status, body)
	}

	checkACMECache(t, filepath.Join(in.dir, "data", "acme"), append([]string{acmeHost}, names...))
	// All through tls-alpn-01: Pebble logs each http-01 attempt, and each
	// failed validation.
	if b, _ := os.ReadFile(pb.log); strings.Contains(string(b), "validate w/ HTTP") || strings.Contains(string(b), "set INVALID") {
		t.Errorf("not every name was validated by tls-alpn-01 at the first attempt:\n%s", tail(string(b), 4000))
	}

	// SIGHUP reloads the stand-in; the ACME certificates stay in service.
	logBefore := len(in.log())
	if err := syscall.Kill(in.serverPID(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "SIGHUP logged", func() error {
		if !strings.Contains(in.log()[min(logBefore, len(in.log())):], "certificate reloaded") {
			return fmt.Errorf("no reload in the log")
		}
		return nil
	})
	if err := verifiedTLS(in.ports["imaps"], acmeHost, root); err != nil {
		t.Errorf("IMAPS after SIGHUP: %v", err)
	}

	// A restart with the ACME server gone serves the cached certificates.
	if err := in.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	g.ln.Close() // the ACME server's address now refuses connections
	in.start()
	eventually(t, 30*time.Second, "IMAPS from the cache after a restart", func() error {
		return verifiedTLS(in.ports["imaps"], acmeHost, root)
	})
}

// checkACMECache: data_dir/acme is 0700 and holds the account key and one
// file per name (key and chain), each 0600 with a private key in it.
func checkACMECache(t *testing.T, dir string, names []string) {
	t.Helper()
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("%s: mode %v, want 0700", dir, fi.Mode().Perm())
	}
	for _, name := range append([]string{"acme_account+key"}, names...) {
		path := filepath.Join(dir, name)
		fi, err := os.Stat(path)
		if err != nil {
			t.Errorf("cache: %v", err)
			continue
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", path, fi.Mode().Perm())
		}
		if b, _ := os.ReadFile(path); !strings.Contains(string(b), "PRIVATE KEY") {
			t.Errorf("%s holds no private key", path)
		}
	}
}

// TestACMEHTTP01: with only a plain HTTP listener (no tls_listen, so the
// tls-alpn-01 attempt fails: nothing listens on Pebble's TLS port),
// certificates come through http-01, validated on a port other than 80
// (so with a port in the Host header).
func TestACMEHTTP01(t *testing.T) {
	t.Parallel()
	dns := acmeDNS(t)
	httpPort, tlsPort := freePort(t, acmeIP), freePort(t, acmeIP)
	pb := startPebble(t, httpPort, tlsPort, dns.Addr(), 0)
	in := newInstance(t, acmeConfig(pb.dir, pb.caFile, httpPort, 0))
	in.extraRoles = []string{"http"}
	in.start()
	root := pb.root(t)
	eventually(t, 2*time.Minute, "IMAPS with Pebble's certificate", func() error {
		return verifiedTLS(in.ports["imaps"], acmeHost, root)
	})
	if err := verifiedSTARTTLS(in.ports["submission"], acmeHost, root); err != nil {
		t.Errorf("submission STARTTLS: %v", err)
	}
	// Pebble logs each http-01 attempt (with the port, which postie's
	// host policy must take).
	b, _ := os.ReadFile(pb.log)
	if want := fmt.Sprintf("validate w/ HTTP: http://%s:%d/", acmeHost, httpPort); !strings.Contains(string(b), want) {
		t.Errorf("pebble log has no %q", want)
	}
}

// TestACMERenewal: certificates are renewed before they expire, and the
// renewed one is served, with no client having asked: Pebble issues them
// for 45 seconds here, so the ACME client renews each after about 30.
func TestACMERenewal(t *testing.T) {
	t.Parallel()
	dns := acmeDNS(t)
	httpPort, tlsPort := freePort(t, acmeIP), freePort(t, acmeIP)
	pb := startPebble(t, httpPort, tlsPort, dns.Addr(), 45*time.Second)
	in := newInstance(t, acmeConfig(pb.dir, pb.caFile, httpPort, tlsPort))
	in.extraRoles = []string{"http", "https"}
	in.start()
	root := pb.root(t)
	eventually(t, 2*time.Minute, "IMAPS with Pebble's certificate", func() error {
		return verifiedTLS(in.ports["imaps"], acmeHost, root)
	})
	first := peerLeaf(t, in.ports["imaps"], acmeHost)
	eventually(t, 2*time.Minute, "a renewed certificate on IMAPS", func() error {
		if err := verifiedTLS(in.ports["imaps"], acmeHost, root); err != nil {
			return err
		}
		if leaf := peerLeaf(t, in.ports["imaps"], acmeHost); leaf.SerialNumber.Cmp(first.SerialNumber) == 0 {
			return fmt.Errorf("still the first certificate, valid until %v", leaf.NotAfter)
		}
		return nil
	})
}

// TestCheckConfigACME: check-config warns when ACME cannot work (no [http]
// listener; a production-looking config off ports 80/443) and refuses a
// CA file that is not PEM.
func TestCheckConfigACME(t *testing.T) {
	for _, c := range []struct {
		hostname, extra string
		warn            []string
		fail            bool
	}{
		{"mail.example.org", "[tls]\nacme = true\n", []string{"neither listen nor tls_listen"}, false},
		{"mail.example.org", "[tls]\nacme = true\n[http]\nlisten = [\":80\"]\ntls_listen = [\":443\"]\n", nil, false},
		{"mail.example.org", "[tls]\nacme = true\n[http]\nlisten = [\"127.0.0.1:8080\"]\ntls_listen = [\"127.0.0.1:8443\"]\n",
			[]string{"http.listen 127.0.0.1:8080: ACME servers validate on port 80", "http.tls_listen 127.0.0.1:8443: ACME servers validate on port 443"}, false},
		{"mail.example.org", "[tls]\nacme = true\n[http]\nlisten = [\":80\"]\n", []string{"no tls_listen"}, false},
		{"mx.example.test", "[tls]\nacme = true\n[http]\nlisten = [\"127.0.0.1:8080\"]\ntls_listen = [\"127.0.0.1:8443\"]\n", nil, false},
		{"mail.example.org", "[tls]\nacme = false\n", nil, false},
		{"mail.example.org", "[tls]\nacme = true\nacme_ca_file = \"config.toml\"\n[http]\nlisten = [\":80\"]\ntls_listen = [\":443\"]\n", nil, true},
	} {
		cfg := writeConfig(t, c.hostname, c.extra)
		_, errOut, code := runBinary(t, "", "check-config", "-config", cfg)
		if (code != 0) != c.fail {
			t.Errorf("%s %q: exit %d: %s", c.hostname, c.extra, code, errOut)
		}
		for _, w := range c.warn {
			if !strings.Contains(errOut, w) {
				t.Errorf("%s %q: no warning %q in:\n%s", c.hostname, c.extra, w, errOut)
			}
		}
		if c.warn == nil && !c.fail && strings.Contains(errOut, "acme") {
			t.Errorf("%s %q: unexpected ACME warning:\n%s", c.hostname, c.extra, errOut)
		}
	}
}
