package maildir

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// tmpName makes a tmp/ file name as Store.appendUnique does.
func tmpName(created time.Time, pid int, host string) string {
	return fmt.Sprintf("%d.M%dP%dQ1R1a2b.%s", created.Unix(), created.Nanosecond()/1000, pid, host)
}

// deadPID returns the PID of a process that has exited.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

// TestCleanTmp: a tmp/ file of this host whose writer is provably gone (its
// PID is free, or now belongs to a process that started after the file was
// made) goes once it is a few minutes old, not after 36 hours; files of
// other writers keep the 36-hour rule; a file being written never goes,
// even when APPEND has already set its mtime to an old internal date.
func TestCleanTmp(t *testing.T) {
	u, root := testUser(t)
	tmp := filepath.Join(u.dir, "tmp")
	now := time.Now()
	self := os.Getpid()
	selfStart, alive, known := processStart(self)
	if !alive || !known {
		t.Skip("no process start times here")
	}
	dead := deadPID(t)
	old := now.Add(-20 * time.Minute)
	files := map[string]struct {
		mtime time.Time
		gone  bool
	}{
		tmpName(old, dead, "mx.test"):                       {old, true},                     // killed mid-APPEND
		tmpName(selfStart.Add(-time.Hour), self, "mx.test"): {old, true},                     // our PID, an earlier process (a container's PID 1)
		tmpName(now.Add(-time.Minute), dead, "mx.test"):     {now, false},                    // too young to be sure
		tmpName(old, dead, "other.test"):                    {old, false},                    // another host's
		tmpName(now, self, "mx.test"):                       {now.AddDate(-10, 0, 0), false}, // being appended, mtime = internal date
		tmpName(now.Add(-35*time.Hour), dead, "other.test"): {now.Add(-35 * time.Hour), false},
		tmpName(now.Add(-37*time.Hour), dead, "other.test"): {now.Add(-37 * time.Hour), true},
		"1700000000.12345_67.foreign-mda":                   {now.Add(-37 * time.Hour), true},
		"1700000000.12346_67.foreign-mda":                   {now.Add(-time.Hour), false},
	}
	// A live PID, older than the file: its writer may be at work. The same
	// PID with a file older than the process: reused, the writer is gone.
	if initStart, ok1, ok2 := processStart(1); ok1 && ok2 && now.Sub(initStart) > 2*tmpOwnGrace {
		files[tmpName(initStart.Add(time.Minute), 1, "mx.test")] = struct {
			mtime time.Time
			gone  bool
		}{old, false}
		files[tmpName(initStart.Add(-time.Hour), 1, "mx.test")] = struct {
			mtime time.Time
			gone  bool
		}{old, true}
	}
	for name, f := range files {
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, f.mtime, f.mtime); err != nil {
			t.Fatal(err)
		}
	}
	check := func(when string) {
		t.Helper()
		left := dirNames(t, tmp)
		for name, f := range files {
			if got := !slices.Contains(left, name); got != f.gone {
				t.Errorf("%s: %s removed = %v, want %v", when, name, got, f.gone)
			}
		}
	}
	reopen(t, root) // a restart
	check("on open")

	// A running process cleans again every few minutes.
	for name, f := range files {
		if f.gone {
			os.WriteFile(filepath.Join(tmp, name), nil, 0o600)
			os.Chtimes(filepath.Join(tmp, name), f.mtime, f.mtime)
		}
	}
	if _, err := u.s.User("example.test", "alice"); err != nil {
		t.Fatal(err)
	}
	if got := len(dirNames(t, tmp)); got != len(files) {
		t.Errorf("cleaned again at once: %d files left of %d", got, len(files))
	}
	u.cleaned.Add(-int64(tmpOwnGrace))
	if _, err := u.s.User("example.test", "alice"); err != nil {
		t.Fatal(err)
	}
	check("later")
}
