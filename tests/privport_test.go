package tests

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestLowPortRefusedNamesTheFix runs `postie serve` as an unprivileged
// user (nobody, via setpriv) with the MX role on port 25: it must stop,
// non-zero, saying what to do. The kernel refuses the bind before looking
// at the port's owner, so nothing ever listens on the fixed port; the test
// skips where an unprivileged user could bind it.
func TestLowPortRefusedNamesTheFix(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to drop to an unprivileged user with setpriv")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv not installed")
	}
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start"); err != nil {
		t.Skipf("cannot tell whether port 25 is privileged here: %v", err)
	} else if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err != nil || n <= 25 {
		t.Skipf("net.ipv4.ip_unprivileged_port_start is %q: any user may bind port 25 here", b)
	}
	const nobody = 65534
	dir, err := os.MkdirTemp("", "postie-lowport-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin, err := os.ReadFile(postieBin)
	if err != nil {
		t.Fatal(err)
	}
	binPath, cfgPath := filepath.Join(dir, "postie"), filepath.Join(dir, "config.toml")
	cfg := "hostname = \"mx.example.test\"\ndata_dir = \"data\"\ndomains = [\"example.test\"]\n\n[smtp]\nlisten = [\"127.0.0.1:25\"]\n"
	for _, err := range []error{
		os.WriteFile(binPath, bin, 0o755),
		os.WriteFile(cfgPath, []byte(cfg), 0o644),
		os.Chmod(dir, 0o755),
		os.Chown(dir, nobody, nobody),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, setpriv, "--reuid", strconv.Itoa(nobody), "--regid", strconv.Itoa(nobody),
		"--clear-groups", "--inh-caps=-all", binPath, "serve", "-config", cfgPath)
	out, err := cmd.CombinedOutput()
	if err == nil || ctx.Err() != nil {
		t.Fatalf("serve as nobody on port 25: %v (want a non-zero exit)\n%s", err, out)
	}
	for _, want := range []string{"listen 127.0.0.1:25: permission denied", "ports below 1024 need root or CAP_NET_BIND_SERVICE", "contrib/postie.service", "setcap cap_net_bind_service=+ep"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the error lacks %q:\n%s", want, out)
		}
	}
}
