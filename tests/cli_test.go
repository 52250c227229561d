package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckConfig(t *testing.T) {
	in := newInstance(t, "")
	if out, errOut, code := in.run("", "check-config"); code != 0 {
		t.Fatalf("check-config on a good file: exit %d: %s%s", code, out, errOut)
	}

	bad := filepath.Join(t.TempDir(), "bad.toml")
	os.WriteFile(bad, []byte("hostname = \"mx.example.test\"\ndomains = [\"example.test\"]\n\n[smtp]\nlisten = [\"127.0.0.1:0\"]\nmax_recipents = 5\n"), 0o600)
	_, errOut, code := runBinary(t, "", "check-config", "-config", bad)
	if code != 1 {
		t.Errorf("unknown key: exit %d, want 1", code)
	}
	if !strings.Contains(errOut, ":6") || !strings.Contains(errOut, "max_recipents") {
		t.Errorf("the error should name line 6 and the key: %s", errOut)
	}

	os.WriteFile(bad, []byte("hostname = \"mx.example.test\"\ndomains = [\"example.test\"]\n[queue]\nmin_retry = \"soon\"\n"), 0o600)
	if _, errOut, code := runBinary(t, "", "check-config", "-config", bad); code != 1 || !strings.Contains(errOut, ":4") || !strings.Contains(errOut, "min_retry") {
		t.Errorf("bad duration: exit %d, %s", code, errOut)
	}

	os.WriteFile(bad, []byte("data_dir = \"x\"\n"), 0o600)
	if _, errOut, code := runBinary(t, "", "check-config", "-config", bad); code != 1 || !strings.Contains(errOut, "hostname") {
		t.Errorf("missing hostname: exit %d, %s", code, errOut)
	}
	if _, errOut, code := runBinary(t, "", "check-config", "-config", filepath.Join(t.TempDir(), "missing.toml")); code != 1 || errOut == "" {
		t.Errorf("missing file: exit %d, %s", code, errOut)
	}
}

func TestExampleConfigChecks(t *testing.T) {
	if out, errOut, code := runBinary(t, "", "check-config", "-config", "../config.toml.example"); code != 0 {
		t.Fatalf("config.toml.example does not check: exit %d: %s%s", code, out, errOut)
	}
}

func TestCLIUsageErrors(t *testing.T) {
	if _, _, code := runBinary(t, "", "frobnicate"); code != 2 {
		t.Errorf("unknown command: exit %d, want 2", code)
	}
	if _, _, code := runBinary(t, ""); code != 2 {
		t.Errorf("no command: exit %d, want 2", code)
	}
	in := newInstance(t, "")
	if _, _, code := in.run("", "deliver"); code != 2 {
		t.Errorf("deliver without recipients: exit %d, want 2", code)
	}
	if _, _, code := in.run("", "user", "add", "-bogus"); code != 2 {
		t.Errorf("bad flag: exit %d, want 2", code)
	}
}

func TestUserAndAliasCommands(t *testing.T) {
	in := newInstance(t, "")
	in.addUser("ann@example.test")
	if _, errOut, code := in.run("pw\n", "user", "add", "ann@example.test"); code == 0 || !strings.Contains(errOut, "exists") {
		t.Errorf("adding ann twice: exit %d, %s", code, errOut)
	}
	if _, _, code := in.run("pw\n", "user", "add", "zed@notours.test"); code == 0 {
		t.Error("a user at a domain that is not ours was added")
	}
	if _, _, code := in.run("\n", "user", "add", "empty@example.test"); code == 0 {
		t.Error("a user with an empty password was added")
	}
	in.addUser("bob@example.test")
	out := in.mustRun("", "user", "list")
	if !strings.Contains(out, "ann@example.test") || !strings.Contains(out, "bob@example.test") {
		t.Errorf("user list: %s", out)
	}
	in.mustRun("", "alias", "add", "sales@example.test", "ann@example.test", "bob@example.test")
	in.mustRun("", "alias", "add", "@other.test", "ann@example.test")
	out = in.mustRun("", "alias", "list")
	if !strings.Contains(out, "sales@example.test") || !strings.Contains(out, "@other.test") {
		t.Errorf("alias list: %s", out)
	}

	// The accounts file holds hashes, never the password.
	b, err := os.ReadFile(filepath.Join(in.dir, "data", "accounts.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), password("ann@example.test")) {
		t.Fatal("the accounts file contains a plain password")
	}
	if fi, _ := os.Stat(filepath.Join(in.dir, "data", "accounts.toml")); fi.Mode().Perm() != 0o600 {
		t.Errorf("accounts file mode %v, want 0600", fi.Mode().Perm())
	}

	in.mustRun("", "user", "del", "bob@example.test")
	if out := in.mustRun("", "user", "list"); strings.Contains(out, "bob@") {
		t.Errorf("bob still listed after del: %s", out)
	}
	in.mustRun("", "alias", "del", "sales@example.test")
	if out := in.mustRun("", "alias", "list"); strings.Contains(out, "sales@") {
		t.Errorf("alias still listed after del: %s", out)
	}
}

// TestDeliverCommand is the LDA: one message on stdin, exit codes from
// sysexits, aliases and +tags resolved like SMTP does.
func TestDeliverCommand(t *testing.T) {
	in := newInstance(t, "")
	in.addUser("ann@example.test")
	in.addUser("bob@example.test")
	in.mustRun("", "alias", "add", "team@example.test", "ann@example.test", "bob@example.test")

	msg := "From: x@remote.test\nSubject: lda\n\nline one\n"
	if out, errOut, code := in.run(msg, "deliver", "-f", "x@remote.test", "team@example.test", "ann+tag@example.test"); code != 0 {
		t.Fatalf("deliver: exit %d: %s%s", code, out, errOut)
	}
	annMsgs := messages(t, in.maildir("example.test", "ann"))
	bobMsgs := messages(t, in.maildir("example.test", "bob"))
	if len(annMsgs) != 1 || len(bobMsgs) != 1 {
		t.Fatalf("ann has %d, bob has %d messages; want one each (ann reached twice gets one copy)", len(annMsgs), len(bobMsgs))
	}
	for _, b := range annMsgs {
		if !strings.HasPrefix(string(b), "Return-Path: <x@remote.test>\r\nDelivered-To: ann@example.test\r\n") || !strings.HasSuffix(string(b), "\r\n\r\nline one\r\n") {
			t.Errorf("stored copy: %q", b)
		}
	}
	if _, _, code := in.run(msg, "deliver", "nobody@example.test"); code != 67 {
		t.Errorf("unknown user: exit %d, want 67", code)
	}
	if _, _, code := in.run(msg, "deliver", "someone@elsewhere.test"); code != 67 {
		t.Errorf("foreign domain: exit %d, want 67", code)
	}
}
