package safeio

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestWriteFileReplacesWholeAndLeavesNoTemp(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	for _, content := range []string{"first version\n", "second\n"} {
		if err := WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != content {
			t.Fatalf("read %q, %v; want %q", got, err, content)
		}
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("the directory holds %d entries, want only the file", len(entries))
	}
}

func TestWriteFileKeepsOwnerForRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	path := filepath.Join(t.TempDir(), "owned")
	os.WriteFile(path, []byte("x"), 0o600)
	if err := os.Chown(path, 65534, 65534); err != nil {
		t.Skip("cannot chown here:", err)
	}
	if err := WriteFile(path, []byte("y"), 0o600); err != nil {
		t.Fatal(err)
	}
	if uid := fileUID(t, path); uid != 65534 {
		t.Errorf("owner %d after rewrite, want 65534", uid)
	}
}

func TestWriteFileInMissingDirFails(t *testing.T) {
	if err := WriteFile(filepath.Join(t.TempDir(), "no", "such", "f"), []byte("x"), 0o600); err == nil {
		t.Fatal("no error for a missing directory")
	}
	if err := SyncDir(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("no error syncing a missing directory")
	}
}

func fileUID(t *testing.T, path string) int {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return int(fi.Sys().(*syscall.Stat_t).Uid)
}

func TestLockExcludesWithinOneProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	a, err := Lock(path, false, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Lock(path, true, true); err != ErrLocked {
		t.Fatalf("shared lock over an exclusive one: %v, want ErrLocked", err)
	}
	a.Close()
	b, err := Lock(path, true, true)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	defer b.Close()
	c, err := Lock(path, true, true)
	if err != nil {
		t.Fatalf("two shared holders: %v", err)
	}
	c.Close()
	if _, err := Lock(path, false, true); err != ErrLocked {
		t.Fatalf("exclusive over a shared lock: %v, want ErrLocked", err)
	}
}

// Concurrent callers all return with no error and share fsyncs (there is
// no way to count fsyncs from outside, so this checks the protocol: no
// deadlock, every caller answered, under -race).
func TestDirSyncerConcurrentCallers(t *testing.T) {
	g := &DirSyncer{Dir: t.TempDir()}
	errs := make(chan error, 32)
	for i := 0; i < cap(errs); i++ {
		go func() { errs <- g.Sync() }()
	}
	for i := 0; i < cap(errs); i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	bad := &DirSyncer{Dir: filepath.Join(t.TempDir(), "missing")}
	if err := bad.Sync(); err == nil {
		t.Fatal("no error syncing a missing directory")
	}
}
