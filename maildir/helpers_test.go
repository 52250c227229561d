package maildir

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func testStore(t testing.TB, root string) *Store {
	t.Helper()
	return NewStore(root, StoreOptions{Hostname: "mx.test", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
}

func testUser(t testing.TB) (*User, string) {
	t.Helper()
	root := t.TempDir()
	u, err := testStore(t, root).User("example.test", "alice")
	if err != nil {
		t.Fatal(err)
	}
	return u, root
}

// reopen opens the same user through a new Store, as after a restart.
func reopen(t testing.TB, root string) *User {
	t.Helper()
	u, err := testStore(t, root).User("example.test", "alice")
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func body(n int) string {
	return fmt.Sprintf("From: a@example.test\r\nSubject: message %d\r\n\r\nbody %d\r\n", n, n)
}

func deliver(t testing.TB, u *User, s string) Delivered {
	t.Helper()
	d, err := u.Deliver(strings.NewReader(s), DeliverOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func mailbox(t testing.TB, u *User, name string) *Mailbox {
	t.Helper()
	m, err := u.Mailbox(name)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func uidsOf(m *Mailbox) []uint32 {
	var out []uint32
	m.View(func(msgs []Message) {
		for _, x := range msgs {
			out = append(out, x.UID)
		}
	})
	return out
}

func messages(m *Mailbox) []Message {
	var out []Message
	m.View(func(msgs []Message) { out = slices.Clone(msgs) })
	return out
}

func dirNames(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func readAll(t testing.TB, m *Mailbox, uid uint32) string {
	t.Helper()
	f, err := m.Open(uid)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// recorder collects Watch changes.
type recorder struct {
	mu      sync.Mutex
	changes []Change
}

func (r *recorder) fn(c Change) {
	r.mu.Lock()
	r.changes = append(r.changes, c)
	r.mu.Unlock()
}

func (r *recorder) take() []Change {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.changes
	r.changes = nil
	return c
}

// summary renders changes as "A1:3" (kind, seq, uid) for comparison.
func summary(cs []Change) string {
	var b strings.Builder
	for _, c := range cs {
		k := map[ChangeKind]string{Added: "A", Expunged: "E", FlagsChanged: "F", KeywordsChanged: "K"}[c.Kind]
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s%d:%d", k, c.Seq, c.Message.UID)
	}
	return b.String()
}

// uidlistLines parses a folder's UID list file: uid → base name.
func uidlistLines(t testing.TB, dir string) (ulHeader, map[uint32]string) {
	t.Helper()
	uf, err := readUIDList(filepath.Join(dir, uidlistFile))
	if err != nil || !uf.ok {
		t.Fatalf("uidlist: ok=%v err=%v", uf.ok, err)
	}
	out := make(map[uint32]string)
	parseLines(uf.data, func(l ulLine) {
		if l.gone { // an expunge record
			delete(out, l.uid)
			return
		}
		if k, ok := out[l.uid]; ok && k != l.key {
			t.Errorf("UID %d given to %s and %s", l.uid, k, l.key)
		}
		out[l.uid] = l.key
	})
	return uf.hdr, out
}

// ageDirs sets the mtimes of a folder's cur/ and new/ an hour back, so that
// Refresh trusts them once it has listed them.
func ageDirs(t testing.TB, dir string) {
	t.Helper()
	old := time.Now().Add(-time.Hour)
	for _, d := range []string{"cur", "new"} {
		if err := os.Chtimes(filepath.Join(dir, d), old, old); err != nil {
			t.Fatal(err)
		}
	}
}
