package suppress

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"postie/safeio"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func open(t *testing.T, path string, c *clock, fs *safeio.FS) *List {
	t.Helper()
	l, err := Open(Options{Path: path, For: 30 * 24 * time.Hour, Now: c.Now, FS: fs, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestAddCheckRemoveExpire(t *testing.T) {
	path := filepath.Join(t.TempDir(), "suppress.json")
	c := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	l := open(t, path, c, nil)
	if _, ok := l.Check("bob@remote.test"); ok {
		t.Fatal("empty list suppresses")
	}
	if err := l.Add("Bob@Remote.TEST", "550 5.1.1 user unknown"); err != nil {
		t.Fatal(err)
	}
	e, ok := l.Check("bob@remote.test")
	if !ok || !e.Since.Equal(c.Now()) || e.Reason != "550 5.1.1 user unknown" {
		t.Fatalf("Check = %+v, %v", e, ok)
	}
	// Another List on the same file (as `postie suppress` in another
	// process) sees it, and its removal is seen by the first.
	other := open(t, path, c, nil)
	if _, ok := other.Check("bob@remote.test"); !ok {
		t.Fatal("a second reader does not see the entry")
	}
	if err := other.Add("carol@remote.test", ReasonManual); err != nil {
		t.Fatal(err)
	}
	if _, ok := l.Check("carol@remote.test"); !ok {
		t.Fatal("an entry added by another List is not seen")
	}
	if found, err := other.Remove("bob@remote.test"); err != nil || !found {
		t.Fatalf("Remove = %v, %v", found, err)
	}
	if found, err := other.Remove("bob@remote.test"); err != nil || found {
		t.Fatalf("second Remove = %v, %v", found, err)
	}
	if _, ok := l.Check("bob@remote.test"); ok {
		t.Fatal("a removed entry is still enforced")
	}
	c.Advance(30*24*time.Hour - time.Second)
	if _, ok := l.Check("carol@remote.test"); !ok {
		t.Fatal("expired too early")
	}
	c.Advance(time.Second)
	if _, ok := l.Check("carol@remote.test"); ok {
		t.Fatal("enforced after For")
	}
	if es, _ := l.Entries(); len(es) != 0 {
		t.Fatalf("Entries after expiry = %v", es)
	}
}

func TestOff(t *testing.T) {
	path := filepath.Join(t.TempDir(), "suppress.json")
	l, err := Open(Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Add("bob@remote.test", "x"); err != nil {
		t.Fatal(err)
	}
	if _, ok := l.Check("bob@remote.test"); ok {
		t.Fatal("For 0 must turn the list off")
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatal("a list that is off wrote its file")
	}
}

func TestAddBadAddress(t *testing.T) {
	l := open(t, filepath.Join(t.TempDir(), "s.json"), &clock{t: time.Now()}, nil)
	for _, a := range []string{"", "nobody", "bob@", "x\r\n@y.test"} {
		if err := l.Add(a, "x"); err == nil {
			t.Errorf("Add(%q) took it", a)
		}
	}
}

func TestDamagedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.json")
	os.WriteFile(path, []byte("{not json"), 0o600)
	if _, err := Open(Options{Path: path, For: time.Hour}); err == nil {
		t.Fatal("a damaged list opened")
	}
}

// TestAddFaults fails each step of the durable writes: Add reports a
// failure to journal the entry, and then the list is as it was (but that
// a failed fsync may leave the line); a failed compaction loses nothing.
func TestAddFaults(t *testing.T) {
	c := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	setup := func(t *testing.T) (string, *safeio.Injector, *List) {
		path := filepath.Join(t.TempDir(), "s.json")
		in := &safeio.Injector{}
		return path, in, open(t, path, c, &safeio.FS{Fault: in.Fault})
	}
	for _, step := range safeio.Steps() {
		t.Run("create/"+string(step), func(t *testing.T) {
			path, in, l := setup(t)
			in.Arm(step, "")
			if err := l.Add("new@remote.test", "x"); !errors.Is(err, safeio.ErrInjected) {
				t.Fatalf("first Add with %s failing = %v", step, err)
			}
			in.Disarm()
			if _, ok := open(t, path, c, nil).Check("new@remote.test"); ok {
				t.Fatalf("a failed %s left the new entry", step)
			}
			if err := l.Add("new@remote.test", "x"); err != nil {
				t.Fatal(err)
			}
			if _, ok := open(t, path, c, nil).Check("new@remote.test"); !ok {
				t.Fatal("the entry added after the fault is not there")
			}
		})
	}
	for _, step := range []safeio.Op{safeio.OpWrite, safeio.OpSync} {
		t.Run("append/"+string(step), func(t *testing.T) {
			path, in, l := setup(t)
			if err := l.Add("old@remote.test", "x"); err != nil {
				t.Fatal(err)
			}
			in.Arm(step, "")
			if err := l.Add("new@remote.test", "x"); !errors.Is(err, safeio.ErrInjected) {
				t.Fatalf("Add with %s failing = %v", step, err)
			}
			in.Disarm()
			fresh := open(t, path, c, nil)
			if _, ok := fresh.Check("old@remote.test"); !ok {
				t.Fatal("the old entry is lost")
			}
			if _, ok := fresh.Check("new@remote.test"); ok && step != safeio.OpSync {
				t.Fatalf("a failed %s left the new entry", step)
			}
		})
	}
	for _, step := range []safeio.Op{safeio.OpCreate, safeio.OpWrite, safeio.OpSync, safeio.OpRename} {
		t.Run("compact/"+string(step), func(t *testing.T) {
			path, in, l := setup(t)
			if err := l.Add("first@remote.test", "x"); err != nil { // the journal's creation
				t.Fatal(err)
			}
			sub := "s.json-" // the snapshot's temporary file
			if step == safeio.OpRename {
				sub = "s.json" // the snapshot's rename
			}
			in.Arm(step, sub)
			for i := range 3 * minCompact {
				if err := l.Add(fmt.Sprintf("u%d@remote.test", i%10), "x"); err != nil {
					t.Fatalf("Add %d with the compaction's %s failing: %v", i, step, err)
				}
			}
			if in.Hits() == 0 {
				t.Fatal("no compaction tried")
			}
			in.Disarm()
			if err := l.Add("last@remote.test", "x"); err != nil {
				t.Fatal(err)
			}
			fresh := open(t, path, c, nil)
			if es, _ := fresh.Entries(); len(es) != 12 {
				t.Fatalf("%d entries after failed compactions, want 12", len(es))
			}
			if _, err := os.Stat(path + ".log"); !os.IsNotExist(err) {
				t.Errorf("the journal is still there after a compaction: %v", err)
			}
		})
	}
}

// Additions are journal lines, not rewrites: the journal stays within
// twice the live entries (and a snapshot holds the rest); removals are
// journaled too, and a torn last line spoils only itself.
func TestJournal(t *testing.T) {
	c := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	path := filepath.Join(t.TempDir(), "s.json")
	var renames int
	l := open(t, path, c, &safeio.FS{Trace: func(op safeio.Op, p string) {
		if op == safeio.OpRename && p == path {
			renames++
		}
	}})
	const n = 1000
	for i := range 5 * n { // each address bounces five times
		if err := l.Add(fmt.Sprintf("u%d@remote.test", i%n), "550 5.1.1 unknown"); err != nil {
			t.Fatal(err)
		}
	}
	// A compaction once the journal has 2n lines more than the snapshot.
	if renames < 1 || renames > 3 {
		t.Errorf("the snapshot was rewritten %d times for %d additions", renames, 5*n)
	}
	if found, err := l.Remove("u7@remote.test"); !found || err != nil {
		t.Fatalf("Remove = %v, %v", found, err)
	}
	data, err := os.ReadFile(path + ".log")
	if err != nil {
		t.Fatal(err)
	}
	if lines := bytes.Count(data, []byte("\n")); lines > 2*n {
		t.Errorf("journal has %d lines for %d entries", lines, n)
	}
	// A crash in the middle of an append.
	if err := os.WriteFile(path+".log", append(data, `{"addr":"torn@remote.te`...), 0o600); err != nil {
		t.Fatal(err)
	}
	other := open(t, path, c, nil)
	if err := other.Add("after@remote.test", "x"); err != nil {
		t.Fatal(err)
	}
	fresh := open(t, path, c, nil)
	if es, _ := fresh.Entries(); len(es) != n {
		t.Errorf("%d entries, want %d", len(es), n)
	}
	for addr, want := range map[string]bool{"u7@remote.test": false, "u8@remote.test": true, "after@remote.test": true, "torn@remote.test": false} {
		if _, ok := fresh.Check(addr); ok != want {
			t.Errorf("Check(%s) = %v", addr, ok)
		}
	}
	if _, ok := l.Check("after@remote.test"); !ok {
		t.Error("the first List does not see the other's addition")
	}
}

func TestIsHardBounce(t *testing.T) {
	cases := []struct {
		status, reply string
		want          bool
	}{
		{"5.1.1", "550 5.1.1 <bob@remote.test>: Recipient address rejected", true},
		{"5.1.10", "556 5.1.10 domain does not accept mail", true},
		{"5.2.1", "550 5.2.1 The email account that you tried to reach is disabled.", true},
		{"5.2.1", "550 5.2.1 mailbox temporarily busy", false},
		{"5.0.0", "550 Requested action not taken: user unknown", true},
		{"5.0.0", "550 rejected for policy reasons", false},
		{"5.7.1", "550 5.7.1 user unknown", false},
		{"5.7.26", "550 5.7.26 unauthenticated", false},
		{"5.2.2", "552 5.2.2 mailbox full", false},
		{"4.1.1", "450 4.1.1 user unknown", false},
	}
	for _, c := range cases {
		if got := IsHardBounce(c.status, c.reply); got != c.want {
			t.Errorf("IsHardBounce(%q, %q) = %v", c.status, c.reply, got)
		}
	}
}

// TestOneLineCutsOnACharacter: a long reason is cut to 300 bytes and
// "...", never inside a character.
func TestOneLineCutsOnACharacter(t *testing.T) {
	long := strings.Repeat("a", 299) + "é" + strings.Repeat("b", 50) // é straddles byte 300
	got := oneLine(long)
	if !utf8.ValidString(got) || got != strings.Repeat("a", 299)+"..." {
		t.Errorf("oneLine = %q", got)
	}
	if got := oneLine(" 550 user\r\nunknown\x00 "); got != "550 user  unknown" {
		t.Errorf("oneLine of a short reply = %q", got)
	}
}
