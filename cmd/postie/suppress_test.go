package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(&env{stdin: strings.NewReader(""), stdout: &out, stderr: &errOut}, args)
	return out.String(), errOut.String(), code
}

func TestSuppressCommand(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.toml")
	os.WriteFile(cfg, []byte("hostname = \"mx.example.test\"\ndomains = [\"example.test\"]\ndata_dir = \""+dir+"\"\n"), 0o600)
	c := func(args ...string) []string { return append(args, "-config", cfg) }

	if out, errOut, code := runCLI(t, c("suppress", "list")...); code != 0 || !strings.Contains(out, "empty") {
		t.Fatalf("list of an empty list: %d %q %q", code, out, errOut)
	}
	if out, errOut, code := runCLI(t, c("suppress", "add", "Bob@Remote.TEST")...); code != 0 || !strings.Contains(out, "suppressed Bob@remote.test until") {
		t.Fatalf("add: %d %q %q", code, out, errOut)
	}
	out, _, code := runCLI(t, c("suppress", "list")...)
	if code != 0 || !strings.Contains(out, "Bob@remote.test") || !strings.Contains(out, "added by the administrator") {
		t.Fatalf("list after add: %d %q", code, out)
	}
	if out, errOut, code := runCLI(t, c("suppress", "del", "bob@remote.test")...); code != 0 || !strings.Contains(out, "removed") {
		t.Fatalf("del: %d %q %q", code, out, errOut)
	}
	if _, errOut, code := runCLI(t, c("suppress", "del", "bob@remote.test")...); code != 1 || !strings.Contains(errOut, "not on the suppression list") {
		t.Fatalf("del of an absent address: %d %q", code, errOut)
	}
	for _, bad := range [][]string{
		{"suppress"}, {"suppress", "frob"}, {"suppress", "add"}, {"suppress", "add", "a@b.test", "c@d.test"},
		{"suppress", "add", "not-an-address"}, {"suppress", "list", "extra"},
	} {
		if _, errOut, code := runCLI(t, c(bad...)...); code != 2 || errOut == "" {
			t.Errorf("%v: exit %d, %q; want 2 and a message", bad, code, errOut)
		}
	}
	// Off: add says so and fails.
	os.WriteFile(cfg, []byte("hostname = \"mx.example.test\"\ndomains = [\"example.test\"]\ndata_dir = \""+dir+"\"\n[outbound]\nsuppress_for = \"0s\"\n"), 0o600)
	if _, errOut, code := runCLI(t, c("suppress", "add", "bob@remote.test")...); code != 1 || !strings.Contains(errOut, "off") {
		t.Errorf("add with the list off: %d %q", code, errOut)
	}
}
