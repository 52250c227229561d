package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"postie/accounts"
	"postie/config"
)

// TestInitAsks: on a terminal, init asks for what the flags left out and
// Enter takes the defaults shown (host mail.DOMAIN, the login name's
// address, that address for ACME).
func TestInitAsks(t *testing.T) {
	t.Setenv("SUDO_USER", "")
	t.Setenv("USER", "ann")
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	e := &env{stdin: strings.NewReader("Example.ORG\n\n\n\n"), stdout: &out, stderr: &errOut, stdinIsTerm: true}
	cfgPath := filepath.Join(dir, "etc", "config.toml")
	code := run(e, []string{"init", "-config", cfgPath, "-data-dir", filepath.Join(dir, "data")})
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out.String(), errOut.String())
	}
	for _, prompt := range []string{"Mail domain", "host name (its DNS name) [mail.example.org]", "mail address (the first account) [ann@example.org]", "Let's Encrypt [ann@example.org]"} {
		if !strings.Contains(out.String(), prompt) {
			t.Errorf("no prompt %q in:\n%s", prompt, out.String())
		}
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Hostname != "mail.example.org" || cfg.Domains[0] != "example.org" || cfg.TLS.ACMEEmail != "ann@example.org" {
		t.Errorf("hostname %q, domains %v, acme_email %q", cfg.Hostname, cfg.Domains, cfg.TLS.ACMEEmail)
	}
	users, err := (&accounts.Admin{Path: cfg.AccountsFile(), Domains: cfg.Domains}).ListUsers()
	if err != nil || len(users) != 1 || users[0].Address != "ann@example.org" {
		t.Errorf("users %v, %v", users, err)
	}
}

// TestInitRefusesAForeignUser: the first account must be at the domain.
func TestInitRefusesAForeignUser(t *testing.T) {
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	e := &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errOut}
	code := run(e, []string{"init", "-domain", "example.org", "-user", "ann@elsewhere.test", "-config", filepath.Join(dir, "c.toml"), "-data-dir", filepath.Join(dir, "data")})
	if code != exitUsage || !strings.Contains(errOut.String(), "not at example.org") {
		t.Errorf("exit %d: %s", code, errOut.String())
	}
}
