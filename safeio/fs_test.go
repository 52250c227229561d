package safeio

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// recorder is an FS.Trace that keeps the steps in order.
type recorder struct {
	mu    sync.Mutex
	steps []string
}

func (r *recorder) trace(op Op, path string) {
	r.mu.Lock()
	r.steps = append(r.steps, string(op)+" "+filepath.Base(path))
	r.mu.Unlock()
}

func (r *recorder) ops() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, len(r.steps))
	for i, s := range r.steps {
		out[i], _, _ = strings.Cut(s, " ")
	}
	return out
}

// WriteFile does create, write, fsync, rename, directory fsync, in that
// order, and the rename targets the file's own name.
func TestWriteFileStepOrder(t *testing.T) {
	dir := t.TempDir()
	rec := &recorder{}
	fsys := &FS{Trace: rec.trace}
	path := filepath.Join(dir, "state")
	if err := fsys.WriteFile(path, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	want := []string{"create", "write", "fsync", "rename", "fsyncdir"}
	if got := rec.ops(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("steps %v, want %v", got, want)
	}
	if rec.steps[3] != "rename state" || rec.steps[4] != "fsyncdir "+filepath.Base(dir) {
		t.Errorf("rename/fsyncdir act on %q, %q", rec.steps[3], rec.steps[4])
	}
}

// A failure at each step of WriteFile is reported, leaves the old content
// in place and no temporary file behind.
func TestWriteFileFailsAtEachStep(t *testing.T) {
	for _, op := range Steps() {
		t.Run(string(op), func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "f")
			if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
				t.Fatal(err)
			}
			inj := &Injector{}
			inj.Arm(op, "")
			fsys := &FS{Fault: inj.Fault}
			err := fsys.WriteFile(path, []byte("new"), 0o600)
			if !errors.Is(err, ErrInjected) {
				t.Fatalf("error %v, want the injected one", err)
			}
			if inj.Hits() != 1 {
				t.Errorf("%d faults hit, want 1", inj.Hits())
			}
			if op == OpSyncDir {
				return // renamed already: new content, not yet durable; the caller reports failure
			}
			if got, _ := os.ReadFile(path); string(got) != "old" {
				t.Errorf("content %q after a failed write, want the old one", got)
			}
			assertOnly(t, dir, "f")
		})
	}
}

// CreateNew never replaces an existing file, and a failure at any step
// leaves neither the file nor a temporary one.
func TestCreateNew(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "key")
	var fsys *FS
	if err := fsys.CreateNew(path, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := fsys.CreateNew(path, []byte("two"), 0o600); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second CreateNew: %v, want ErrExist", err)
	}
	if got, _ := os.ReadFile(path); string(got) != "one" {
		t.Errorf("content %q, want the first", got)
	}
	assertOnly(t, dir, "key")
	for _, op := range Steps() {
		dir := t.TempDir()
		inj := &Injector{}
		inj.Arm(op, "")
		if err := (&FS{Fault: inj.Fault}).CreateNew(filepath.Join(dir, "key"), []byte("x"), 0o600); !errors.Is(err, ErrInjected) {
			t.Errorf("%s: error %v, want the injected one", op, err)
		}
		assertOnly(t, dir)
	}
}

// Append adds to the end and fsyncs; a failed write or fsync is reported.
func TestAppend(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	os.WriteFile(path, []byte("a\n"), 0o600)
	rec := &recorder{}
	fsys := &FS{Trace: rec.trace}
	size, err := fsys.Append(path, []byte("b\n"))
	if err != nil || size != 4 {
		t.Fatalf("Append: %d, %v", size, err)
	}
	if got := strings.Join(rec.ops(), ","); got != "write,fsync" {
		t.Errorf("steps %s, want write,fsync", got)
	}
	for _, op := range []Op{OpWrite, OpSync} {
		inj := &Injector{}
		inj.Arm(op, "")
		if _, err := (&FS{Fault: inj.Fault}).Append(path, []byte("c\n")); !errors.Is(err, ErrInjected) {
			t.Errorf("%s: %v, want the injected error", op, err)
		}
	}
}

// A File taken back by Abort is gone, before or after Sync.
func TestFileAbort(t *testing.T) {
	dir := t.TempDir()
	var fsys *FS
	for _, sync := range []bool{false, true} {
		f, err := fsys.CreateTemp(dir, "x-*", 0o600)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Copy(strings.NewReader("data"), nil); err != nil {
			t.Fatal(err)
		}
		if sync {
			if err := f.Sync(); err != nil {
				t.Fatal(err)
			}
			if err := f.Sync(); err == nil {
				t.Error("a second Sync succeeded on a closed file")
			}
		}
		f.Abort()
	}
	assertOnly(t, dir)
	if _, err := fsys.Create(filepath.Join(dir, "no", "such"), 0o600); err == nil {
		t.Error("Create in a missing directory succeeded")
	}
}

// assertOnly checks that dir holds exactly the names given.
func assertOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Errorf("%s holds %v, want %v", dir, got, names)
	}
}
