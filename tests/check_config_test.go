package tests

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"postie/internal/testutil"
)

// writeConfig writes a minimal configuration with hostname and extra
// lines appended, and returns its path.
func writeConfig(t *testing.T, hostname, extra string) string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "config.toml")
	cfg := fmt.Sprintf("hostname = %q\ndata_dir = \"data\"\ndomains = [\"example.org\"]\n\n[smtp]\nlisten = [\"127.0.0.1:0\"]\n%s", hostname, extra)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// writePair writes a certificate for hosts and its key as PEM files in dir.
func writePair(t *testing.T, dir string, hosts ...string) (certFile, keyFile string) {
	t.Helper()
	cert, _ := testutil.Certificate(t, hosts...)
	der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	return certFile, keyFile
}

// check-config warns (exit 0) about host names no one can reach this
// server by, and says nothing about a plausible one.
func TestCheckConfigHostnameWarnings(t *testing.T) {
	for _, tc := range []struct {
		hostname string
		warn     bool
	}{
		{"mail.example.org", false},
		{"mx1.mail.example.co.uk", false},
		{"localhost", true},
		{"mail", true},
		{"mail.local", true},
		{"mx.example.test", true},
		{"mail.example", true},
		{"mail.invalid", true},
		{"192.0.2.25", true},
	} {
		cfg := writeConfig(t, tc.hostname, "")
		out, errOut, code := runBinary(t, "", "check-config", "-config", cfg)
		if code != 0 {
			t.Errorf("hostname %q: exit %d, want 0 (a warning is no error): %s%s", tc.hostname, code, out, errOut)
			continue
		}
		warned := strings.HasPrefix(errOut, "warning: ") && strings.Contains(errOut, "hostname")
		if warned != tc.warn || !tc.warn && errOut != "" {
			t.Errorf("hostname %q: stderr %q, want a warning: %v", tc.hostname, errOut, tc.warn)
		}
		if !strings.Contains(out, "ok") {
			t.Errorf("hostname %q: stdout %q", tc.hostname, out)
		}
	}
}

// The certificate pair must exist and parse, as serve needs it; one that
// does not name the hostname is a warning.
func TestCheckConfigCertificate(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writePair(t, dir, "mail.example.org")
	tlsConf := func(c, k string) string { return fmt.Sprintf("\n[tls]\ncert_file = %q\nkey_file = %q\n", c, k) }

	if out, errOut, code := runBinary(t, "", "check-config", "-config", writeConfig(t, "mail.example.org", tlsConf(certFile, keyFile))); code != 0 || errOut != "" {
		t.Errorf("good pair: exit %d: %s%s", code, out, errOut)
	}
	_, errOut, code := runBinary(t, "", "check-config", "-config", writeConfig(t, "other.example.org", tlsConf(certFile, keyFile)))
	if code != 0 || !strings.HasPrefix(errOut, "warning: ") || !strings.Contains(errOut, "other.example.org") {
		t.Errorf("certificate for another name: exit %d, stderr %q, want a warning", code, errOut)
	}

	otherCert, otherKey := writePair(t, t.TempDir(), "mail.example.org")
	garbage := filepath.Join(dir, "garbage.pem")
	os.WriteFile(garbage, []byte("not a certificate\n"), 0o600)
	for name, pair := range map[string][2]string{
		"missing cert":    {filepath.Join(dir, "nope.pem"), keyFile},
		"missing key":     {certFile, filepath.Join(dir, "nope.pem")},
		"unparsable":      {garbage, keyFile},
		"key of another":  {certFile, otherKey},
		"cert of another": {otherCert, keyFile},
	} {
		_, errOut, code := runBinary(t, "", "check-config", "-config", writeConfig(t, "mail.example.org", tlsConf(pair[0], pair[1])))
		if code != 1 || !strings.Contains(errOut, "tls.cert_file") {
			t.Errorf("%s: exit %d, stderr %q; want exit 1 naming tls.cert_file", name, code, errOut)
		}
	}
}

// What serve would refuse at start is an error: an unreadable smarthost
// password, a DKIM key file that does not parse.
func TestCheckConfigServeRefusals(t *testing.T) {
	cfg := writeConfig(t, "mail.example.org", "\n[outbound]\nsmarthost = \"smtp.example.org:587\"\nsmarthost_username = \"u\"\nsmarthost_password_file = \"missing-password\"\n")
	if _, errOut, code := runBinary(t, "", "check-config", "-config", cfg); code != 1 || !strings.Contains(errOut, "smarthost_password_file") {
		t.Errorf("missing password file: exit %d, %s", code, errOut)
	}

	cfg = writeConfig(t, "mail.example.org", "")
	keyDir := filepath.Join(filepath.Dir(cfg), "data", "dkim")
	os.MkdirAll(keyDir, 0o700)
	os.WriteFile(filepath.Join(keyDir, "example.org.postie.key"), []byte("half a key"), 0o600)
	if _, errOut, code := runBinary(t, "", "check-config", "-config", cfg); code != 1 || !strings.Contains(errOut, "example.org.postie.key") {
		t.Errorf("bad DKIM key: exit %d, %s", code, errOut)
	}
}
