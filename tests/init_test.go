package tests

// `postie init` on a "fresh machine" (a temporary -root): it writes a
// configuration that loads and passes check-config, with production ports
// and ACME on, the systemd unit, the first account (whose password, printed
// once, logs in over IMAP once the test moves the listeners to free
// loopback ports) with postmaster@ going to it, and the DKIM key; and it
// never overwrites a configuration.

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2/imapclient"

	"postie/config"
)

var initPasswordRE = regexp.MustCompile(`(?m)^  password: (\S+)$`)

func TestInitFreshMachine(t *testing.T) {
	root := t.TempDir()
	out, errOut, code := runBinary(t, "", "init", "-domain", "Example.COM", "-user", "ann@example.com",
		"-acme-email", "admin@example.net", "-root", root, "-systemd", "-ip", "192.0.2.25")
	if code != 0 {
		t.Fatalf("init: exit %d\n%s%s", code, out, errOut)
	}
	m := initPasswordRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no password printed:\n%s", out)
	}
	pw := m[1]
	if n := strings.Count(out, pw); n != 1 {
		t.Errorf("the password is printed %d times, want once", n)
	}
	for _, want := range []string{
		"mail.example.com.\tIN A\t192.0.2.25", // the DNS records, from package dnsrecords
		"example.com.\tIN MX\t10 mail.example.com.",
		"postie._domainkey.example.com.\tIN TXT\t\"v=DKIM1;",
		"IMAP (incoming)  mail.example.com  993   SSL/TLS", // the client settings
		"SMTP (outgoing)  mail.example.com  587   STARTTLS",
		"postmaster@example.com now goes to ann@example.com",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}

	cfgPath := filepath.Join(root, "etc/postie/config.toml")
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatalf("the written config does not load: %v", err)
	}
	if cfg.Hostname != "mail.example.com" || !slices.Equal(cfg.Domains, []string{"example.com"}) || cfg.DataDir != "/var/lib/postie" {
		t.Errorf("hostname %q, domains %v, data_dir %q", cfg.Hostname, cfg.Domains, cfg.DataDir)
	}
	if !cfg.TLS.ACME || cfg.TLS.ACMEEmail != "admin@example.net" {
		t.Errorf("acme %v, acme_email %q", cfg.TLS.ACME, cfg.TLS.ACMEEmail)
	}
	for role, got := range map[string][]string{
		"smtp": cfg.SMTP.Listen, "submission": cfg.Submission.Listen, "submissions": cfg.Submission.TLSListen,
		"imap": cfg.IMAP.Listen, "imaps": cfg.IMAP.TLSListen, "pop3": cfg.POP3.Listen, "pop3s": cfg.POP3.TLSListen,
		"http": cfg.HTTP.Listen, "https": cfg.HTTP.TLSListen,
	} {
		want := map[string]string{"smtp": ":25", "submission": ":587", "submissions": ":465", "imap": ":143",
			"imaps": ":993", "pop3": ":110", "pop3s": ":995", "http": ":80", "https": ":443"}[role]
		if !slices.Equal(got, []string{want}) {
			t.Errorf("%s listens on %v, want [%s]", role, got, want)
		}
	}
	if out, errOut, code := runBinary(t, "", "check-config", "-config", cfgPath); code != 0 {
		t.Errorf("check-config: exit %d\n%s%s", code, out, errOut)
	}
	unit, err := os.ReadFile(filepath.Join(root, "etc/systemd/system/postie.service"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unit), "ExecStart=/usr/local/bin/postie serve -config /etc/postie/config.toml\n") {
		t.Errorf("installed unit:\n%s", unit)
	}
	dataDir := filepath.Join(root, "var/lib/postie")
	if _, err := os.Stat(filepath.Join(dataDir, "dkim", "example.com.postie.key")); err != nil {
		t.Errorf("no DKIM key: %v", err)
	}

	// Serve it on loopback (and without ACME: no traffic leaves the
	// machine), then log in with the printed password and read mail sent
	// to postmaster@.
	text, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	s := regexp.MustCompile(`"(:\d+)"`).ReplaceAllString(string(text), `"127.0.0.1:0"`)
	s = strings.Replace(s, `data_dir = "/var/lib/postie"`, `data_dir = "`+dataDir+`"`, 1)
	s = strings.Replace(s, "acme = true", "acme = false", 1)
	if err := os.WriteFile(cfgPath, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	aliases, errOut, code := runBinary(t, "", "alias", "list", "-config", cfgPath)
	if code != 0 || !regexp.MustCompile(`postmaster@example.com\s.*ann@example.com`).MatchString(aliases) {
		t.Errorf("alias list: exit %d\n%s%s", code, aliases, errOut)
	}
	in := &instance{t: t, dir: root, config: cfgPath, extraRoles: []string{"http", "https"}}
	in.start()
	if err := send(in.ports["smtp"], "someone@remote.test", []string{"postmaster@example.com"}, "Subject: to the postmaster\r\n\r\nhi\r\n"); err != nil {
		t.Fatalf("mail to postmaster@: %v", err)
	}
	c, err := imapclient.DialInsecure(in.ports["imap"], nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("ann@example.com", pw).Wait(); err != nil {
		t.Fatalf("IMAP login with the printed password: %v\n%s", err, in.log())
	}
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sel.NumMessages != 1 {
		t.Errorf("INBOX holds %d messages, want the one sent to postmaster@", sel.NumMessages)
	}
}

func TestInitNeverOverwrites(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.toml")
	const mine = "# my own configuration\n"
	if err := os.WriteFile(cfgPath, []byte(mine), 0o600); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(dir, "data")
	out, errOut, code := runBinary(t, "", "init", "-domain", "example.com", "-config", cfgPath, "-data-dir", dataDir)
	if code == 0 || !strings.Contains(errOut, cfgPath+" already exists") {
		t.Errorf("init over an existing config: exit %d\n%s%s", code, out, errOut)
	}
	if b, _ := os.ReadFile(cfgPath); string(b) != mine {
		t.Errorf("the config was changed: %q", b)
	}
	if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		t.Errorf("data_dir made anyway: %v", err)
	}
}

func TestInitNeedsADomain(t *testing.T) {
	dir := t.TempDir()
	_, errOut, code := runBinary(t, "", "init", "-config", filepath.Join(dir, "c.toml"), "-data-dir", filepath.Join(dir, "data"))
	if code != 2 || !strings.Contains(errOut, "-domain") {
		t.Errorf("init without -domain and no terminal: exit %d, %s", code, errOut)
	}
}
