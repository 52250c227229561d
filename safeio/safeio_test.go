package safeio

import (
	"os"
	"path/filepath"
	"sync"
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

// Concurrent callers all return with no error, and share fsyncs: there
// are fewer fsyncs than callers, at least one, and each caller returns only
// after an fsync that began after it asked (checked by the trace: every
// caller's request is followed by an fsync before its answer).
func TestDirSyncerConcurrentCallers(t *testing.T) {
	var mu sync.Mutex
	var events []string
	record := func(ev string) {
		mu.Lock()
		events = append(events, ev)
		mu.Unlock()
	}
	const callers = 32
	var asked sync.WaitGroup
	asked.Add(callers)
	var first sync.Once
	fsys := &FS{
		Fault: func(op Op, _ string) error {
			if op == OpSyncDir {
				// Hold the first fsync until every caller has asked, so
				// that the others must share the next one.
				first.Do(asked.Wait)
				record("begin")
			}
			return nil
		},
	}
	g := &DirSyncer{Dir: t.TempDir(), FS: fsys}
	var wg sync.WaitGroup
	for i := 0; i < callers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			record("ask")
			asked.Done()
			if err := g.Sync(); err != nil {
				t.Error(err)
			}
			record("answer")
		}()
	}
	wg.Wait()
	// Walk the events: each answer is owed an fsync that began after its
	// ask, so answers can never outnumber the asks that a begin followed.
	fsyncs, waiting, covered := 0, 0, 0
	for _, ev := range events {
		switch ev {
		case "ask":
			waiting++
		case "begin":
			fsyncs++
			covered += waiting
			waiting = 0
		case "answer":
			if covered == 0 {
				t.Fatalf("a caller was answered before any fsync began after its request: %v", events)
			}
			covered--
		}
	}
	if fsyncs < 1 || fsyncs > 2 {
		t.Errorf("%d fsyncs for %d concurrent callers, want 2 (the held one, then one for all the others)", fsyncs, callers)
	}
	bad := &DirSyncer{Dir: filepath.Join(t.TempDir(), "missing")}
	if err := bad.Sync(); err == nil {
		t.Fatal("no error syncing a missing directory")
	}
}
