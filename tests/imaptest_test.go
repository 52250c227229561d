package tests

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestIMAPTest runs Dovecot's imaptest compliance suite (the kit in
// third_party/imaptest) against `postie serve` and fails if any test group
// fails. Skipped groups are the extensions Postie does not advertise; they
// are reported, not failed. The test skips only when the kit cannot be
// built on this machine (see imaptestKit).
func TestIMAPTest(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	bin, scripts := imaptestKit(t)

	in := newInstance(t, "")
	const pass = "imaptest-pass"
	users := []string{"imaptest1@example.test", "imaptest2@example.test"}
	for _, u := range users {
		in.mustRun(pass+"\n", "user", "add", u)
	}
	in.start()
	host, port, _ := strings.Cut(in.ports["imap"], ":")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	out := filepath.Join(t.TempDir(), "imaptest.out")
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(imaptestDir(t), "run.sh"), host, port, users[0], users[1], pass, out)
	cmd.Env = append(os.Environ(), "IMAPTEST="+bin, "TESTS="+scripts, "TIMEOUT=540")
	summary, err := cmd.CombinedOutput()
	t.Logf("imaptest:\n%s", summary)
	passed, failed, skipped, ok := imaptestCounts(string(summary))
	if !ok {
		full, _ := os.ReadFile(out)
		t.Fatalf("imaptest gave no summary (%v); its output:\n%s\nserver log:\n%s", err, lastBytes(full, 8000), in.log())
	}
	t.Logf("imaptest groups: %d passed, %d failed, %d skipped", passed, failed, skipped)
	if total := passed + failed + skipped; total < imaptestGroups {
		t.Errorf("imaptest ran %d groups, want the kit's %d (scripts missing?)", total, imaptestGroups)
	}
	if failed > 0 {
		full, _ := os.ReadFile(out)
		t.Errorf("%d imaptest groups failed; failures:\n%s", failed, imaptestFailures(string(full)))
	}
	// Postie skips 3 of the 71 groups (URLAUTH three times; Dovecot 2.3.19
	// also skips CONTEXT=SORT, which Postie has); a fourth means an extension
	// stopped being advertised.
	if skipped > maxIMAPTestSkipped {
		t.Errorf("%d imaptest groups skipped, want at most %d (URLAUTH x3)", skipped, maxIMAPTestSkipped)
	}
}

// imaptestGroups is how many test groups the kit's scripts hold: a run
// that counts fewer did not run them all, whatever it passed.
const imaptestGroups = 71

// maxIMAPTestSkipped is the URLAUTH groups, one fewer than Dovecot's own
// count of skipped groups (4: it lacks CONTEXT=SORT).
const maxIMAPTestSkipped = 3

var imaptestGroupsRE = regexp.MustCompile(`groups:\s+(\d+) total, (\d+) passed, (\d+) failed, (\d+) skipped`)

// imaptestCounts reads run.sh's "groups:" line.
func imaptestCounts(summary string) (passed, failed, skipped int, ok bool) {
	m := imaptestGroupsRE.FindStringSubmatch(summary)
	if m == nil {
		return 0, 0, 0, false
	}
	passed, _ = strconv.Atoi(m[2])
	failed, _ = strconv.Atoi(m[3])
	skipped, _ = strconv.Atoi(m[4])
	return passed, failed, skipped, true
}

// imaptestFailures keeps the "*** Test" blocks and "Error:" lines of imaptest's output, bounded.
func imaptestFailures(full string) string {
	var b strings.Builder
	keep := 0
	for _, l := range strings.Split(full, "\n") {
		switch {
		case strings.HasPrefix(l, "*** Test"):
			keep = 8
		case strings.HasPrefix(l, "Error: "):
			keep = 1
		}
		if keep > 0 {
			keep--
			if len(l) > 400 {
				l = l[:400] + "..."
			}
			b.WriteString(l + "\n")
		}
		if b.Len() > 20000 {
			b.WriteString("(more left out)\n")
			break
		}
	}
	return b.String()
}

func lastBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// imaptestDir is the kit in the repository.
func imaptestDir(t *testing.T) string {
	dir, err := filepath.Abs(filepath.Join("..", "third_party", "imaptest"))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// imaptestKit returns the imaptest binary and its compliance scripts, built
// from the kit once and cached under the user cache directory, keyed by the
// hash of the source archive, the build script and Dovecot's dovecot-config
// (so a changed kit, or another Dovecot, is built anew). It skips the test when the build cannot work here: the Dovecot
// development files, libdovecot or the autotools are missing.
func imaptestKit(t *testing.T) (bin, scripts string) {
	t.Helper()
	kit := imaptestDir(t)
	for _, need := range []struct{ path, pkg string }{
		{"/usr/lib/dovecot/dovecot-config", "dovecot-dev"},
		{"/usr/include/dovecot/imap-parser.h", "dovecot-dev"},
		{"/usr/lib/dovecot/libdovecot.so", "dovecot-core"},
	} {
		if _, err := os.Stat(need.path); err != nil {
			t.Skipf("cannot build imaptest: %s missing (apt-get install %s; .ci/run does)", need.path, need.pkg)
		}
	}
	for _, tool := range []string{"autoreconf", "libtoolize", "make", "cc", "pkg-config"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("cannot build imaptest: no %s (apt-get install build-essential autoconf automake libtool pkg-config)", tool)
		}
	}

	// The key: the kit, and the Dovecot it links against (an upgraded libdovecot needs a new build).
	h := sha256.New()
	for _, f := range []string{filepath.Join(kit, "imaptest-src.tar.gz"), filepath.Join(kit, "build.sh"), "/usr/lib/dovecot/dovecot-config"} {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.Copy(h, fh)
		fh.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	key := "imaptest-" + hex.EncodeToString(h.Sum(nil))[:16]

	cacheRoot := ""
	if d, err := os.UserCacheDir(); err == nil {
		cacheRoot = filepath.Join(d, "postie-tests")
	}
	if cacheRoot != "" {
		dest := filepath.Join(cacheRoot, key)
		if _, err := os.Stat(filepath.Join(dest, "bin", "imaptest")); err == nil {
			t.Logf("imaptest: cached build %s", dest)
			return filepath.Join(dest, "bin", "imaptest"), filepath.Join(dest, "tests")
		}
		if err := os.MkdirAll(cacheRoot, 0o755); err != nil {
			cacheRoot = ""
		}
	}
	buildDir := t.TempDir()
	if cacheRoot != "" {
		d, err := os.MkdirTemp(cacheRoot, key+".building-")
		if err == nil {
			buildDir = d
			t.Cleanup(func() { os.RemoveAll(d) }) // gone once renamed into place
		}
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", filepath.Join(kit, "build.sh"), buildDir)
	cmd.Env = append(os.Environ(), "TMPDIR="+os.TempDir())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building imaptest (prerequisites present) failed: %v\n%s", err, out)
	}
	t.Logf("imaptest: built in %v", time.Since(start).Round(time.Second))
	if cacheRoot != "" {
		dest := filepath.Join(cacheRoot, key)
		err := os.Rename(buildDir, dest)
		if err == nil || fileExists(filepath.Join(dest, "bin", "imaptest")) {
			// (another test binary may have cached it meanwhile: that one is as good)
			return filepath.Join(dest, "bin", "imaptest"), filepath.Join(dest, "tests")
		}
		t.Logf("imaptest: not cached: %v", err)
	}
	return filepath.Join(buildDir, "bin", "imaptest"), filepath.Join(buildDir, "tests")
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
