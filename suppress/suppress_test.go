package suppress

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

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
	l, err := Open(Options{Path: path, For: 30 * 24 * time.Hour, Now: c.Now, FS: fs})
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

// TestAddFaults fails each step of the durable write: Add reports it, and
// a failure before the rename leaves the old list as it was.
func TestAddFaults(t *testing.T) {
	for _, step := range safeio.Steps() {
		t.Run(string(step), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "s.json")
			in := &safeio.Injector{}
			c := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
			l := open(t, path, c, &safeio.FS{Fault: in.Fault})
			if err := l.Add("old@remote.test", "x"); err != nil {
				t.Fatal(err)
			}
			in.Arm(step, "")
			err := l.Add("new@remote.test", "x")
			if !errors.Is(err, safeio.ErrInjected) {
				t.Fatalf("Add with %s failing = %v", step, err)
			}
			in.Disarm()
			fresh := open(t, path, c, nil)
			if _, ok := fresh.Check("old@remote.test"); !ok {
				t.Fatal("the old entry is lost")
			}
			if _, ok := fresh.Check("new@remote.test"); ok && step != safeio.OpSyncDir {
				t.Fatalf("a failed %s left the new entry", step)
			}
		})
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
