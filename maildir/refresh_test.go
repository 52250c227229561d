package maildir

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestRefreshSeesOtherWriters: a file dropped into new/ by another writer,
// one removed from cur/ behind our back, and one renamed with new flags.
func TestRefreshSeesOtherWriters(t *testing.T) {
	u, root := testUser(t)
	for i := range 3 {
		deliver(t, u, body(i))
	}
	inbox := mailbox(t, u, "INBOX")
	var rec recorder
	defer inbox.Watch(rec.fn)()
	dir := filepath.Join(root, "example.test", "alice")

	// Another writer delivers.
	name := "1700000000.M5P5Q5.elsewhere,S=4"
	os.WriteFile(filepath.Join(dir, "tmp", name), []byte("abcd"), 0o600)
	if err := os.Rename(filepath.Join(dir, "tmp", name), filepath.Join(dir, "new", name)); err != nil {
		t.Fatal(err)
	}
	if err := inbox.Refresh(); err != nil {
		t.Fatal(err)
	}
	if got := summary(rec.take()); got != "A4:4" {
		t.Errorf("after foreign delivery: %s", got)
	}
	if readAll(t, inbox, 4) != "abcd" {
		t.Error("content")
	}

	// Another writer removes message 2 and marks message 3 seen.
	cur := filepath.Join(dir, "cur")
	names := dirNames(t, cur)
	slices.Sort(names)
	var two, three string
	inbox.View(func([]Message) {
		two, three = inbox.fileNameLocked(1), inbox.fileNameLocked(2)
	})
	if err := os.Remove(filepath.Join(cur, two)); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(cur, three), filepath.Join(cur, strings.TrimSuffix(three, ":2,")+":2,S")); err != nil {
		t.Fatal(err)
	}
	if err := inbox.Refresh(); err != nil {
		t.Fatal(err)
	}
	cs := rec.take()
	if got := summary(cs); got != "F3:3 E2:2" {
		t.Errorf("after foreign changes: %s", got)
	}
	if cs[0].Message.Flags != FlagSeen || cs[0].Origin != nil {
		t.Errorf("flag change %+v", cs[0])
	}
	if got := uidsOf(inbox); !slices.Equal(got, []uint32{1, 3, 4}) {
		t.Errorf("UIDs %v", got)
	}
	// Open follows a rename it has not heard of yet.
	var one string
	inbox.View(func([]Message) { one = inbox.fileNameLocked(0) })
	os.Rename(filepath.Join(cur, one), filepath.Join(cur, strings.TrimSuffix(one, ":2,")+":2,F"))
	if got := readAll(t, inbox, 1); got != body(0) {
		t.Errorf("read after foreign rename: %q", got)
	}
	if _, err := inbox.Open(2); err == nil {
		t.Error("Open of a removed message succeeded")
	}
}

// TestWarmRefreshLists nothing when nothing changed, and reads only the
// directory whose mtime moved.
func TestWarmRefreshListsNothing(t *testing.T) {
	u, root := testUser(t)
	for i := range 3 {
		deliver(t, u, body(i))
	}
	dir := filepath.Join(root, "example.test", "alice")
	inbox := mailbox(t, u, "INBOX")
	listings := func() int {
		inbox.mu.RLock()
		defer inbox.mu.RUnlock()
		return inbox.listings
	}
	ageDirs(t, dir) // as if everything happened an hour ago
	if err := inbox.Refresh(); err != nil {
		t.Fatal(err)
	}
	n := listings()
	for range 3 {
		if err := inbox.Refresh(); err != nil {
			t.Fatal(err)
		}
	}
	if got := listings(); got != n {
		t.Errorf("warm Refresh listed %d directories", got-n)
	}
	if _, err := u.Mailbox("INBOX"); err != nil {
		t.Fatal(err)
	}
	// Our own change (SetFlags renames in cur/) records its own stamp, so
	// it does not make Refresh list again.
	if _, err := inbox.SetFlags([]uint32{1}, FlagsAdd, FlagSeen, nil); err != nil {
		t.Fatal(err)
	}
	n = listings()
	inbox.Refresh()
	if got := listings(); got != n {
		t.Errorf("Refresh after our own change listed %d directories", got-n)
	}
	// A file another writer drops into new/ is found.
	name := "1700000000.M5P5Q5.elsewhere,S=4"
	os.WriteFile(filepath.Join(dir, "new", name), []byte("abcd"), 0o600)
	if err := inbox.Refresh(); err != nil {
		t.Fatal(err)
	}
	if got := len(uidsOf(inbox)); got != 4 {
		t.Errorf("%d messages after a foreign delivery", got)
	}
}

// TestYoungMtimeDistrusted: an unchanged but recent mtime is not trusted,
// so a change hidden in the same timestamp is still found.
func TestYoungMtimeDistrusted(t *testing.T) {
	u, root := testUser(t)
	inbox := mailbox(t, u, "INBOX")
	dir := filepath.Join(root, "example.test", "alice")
	st, _ := statDir(filepath.Join(dir, "new"))
	name := "1700000000.M5P5Q5.elsewhere,S=1"
	os.WriteFile(filepath.Join(dir, "new", name), []byte("x"), 0o600)
	// Put the mtime back to what we recorded: only the distrust of recent
	// stamps can find the file now.
	ts := time.Unix(0, st.mtime)
	os.Chtimes(filepath.Join(dir, "new"), ts, ts)
	if err := inbox.Refresh(); err != nil {
		t.Fatal(err)
	}
	if got := len(uidsOf(inbox)); got != 1 {
		t.Errorf("hidden delivery not found (%d messages)", got)
	}
	// The same in cur/, after a listing made while its mtime was young.
	inbox.mu.Lock()
	inbox.cur.valid = false
	inbox.refreshLocked()
	inbox.mu.Unlock()
	st, _ = statDir(filepath.Join(dir, "cur"))
	os.WriteFile(filepath.Join(dir, "cur", "1700000001.M5P5Q5.elsewhere,S=1:2,S"), []byte("y"), 0o600)
	ts = time.Unix(0, st.mtime)
	os.Chtimes(filepath.Join(dir, "cur"), ts, ts)
	if err := inbox.Refresh(); err != nil {
		t.Fatal(err)
	}
	if got := messages(inbox); len(got) != 2 || got[1].Flags != FlagSeen {
		t.Errorf("hidden file in cur/ not found: %v", got)
	}
}

// TestOwnChangesDoNotRelist: after our own renames, removals and additions,
// Refresh does not list cur/ again, even while its mtime is young.
func TestOwnChangesDoNotRelist(t *testing.T) {
	u, root := testUser(t)
	for i := range 3 {
		deliver(t, u, body(i))
	}
	dir := filepath.Join(root, "example.test", "alice")
	inbox := mailbox(t, u, "INBOX")
	trash := mailbox(t, u, "Trash")
	ageDirs(t, dir)
	inbox.Refresh()
	curListings := func() int {
		inbox.mu.RLock()
		defer inbox.mu.RUnlock()
		return inbox.curListings
	}
	n := curListings()
	steps := []func() error{
		func() error { _, err := inbox.SetFlags([]uint32{1}, FlagsAdd, FlagSeen, nil); return err },
		func() error { _, err := inbox.Expunge([]uint32{2}, nil); return err },
		func() error { _, err := inbox.Append(strings.NewReader("x"), 0, time.Time{}, nil); return err },
		func() error { _, err := u.Deliver(strings.NewReader("y"), DeliverOptions{}); return err },
		func() error { _, _, err := inbox.MoveTo(trash, []uint32{3}, nil); return err },
		func() error { _, _, err := trash.CopyTo(inbox, []uint32{1}, nil); return err },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatal(i, err)
		}
		if err := inbox.Refresh(); err != nil {
			t.Fatal(err)
		}
		if got := curListings(); got != n {
			t.Errorf("step %d: cur/ listed %d times", i, got-n)
			n = got
		}
	}
	if got := uidsOf(inbox); !slices.Equal(got, []uint32{1, 4, 5, 6}) {
		t.Errorf("UIDs %v", got)
	}
}

// TestRefreshAddsManyInOrder: several files found at once come as one Added
// each, in name (delivery time) order, with consecutive sequence numbers; a
// finished temporary file of a crashed writer is not a message.
func TestRefreshAddsManyInOrder(t *testing.T) {
	u, root := testUser(t)
	deliver(t, u, body(0))
	inbox := mailbox(t, u, "INBOX")
	var rec recorder
	defer inbox.Watch(rec.fn)()
	dir := filepath.Join(root, "example.test", "alice")
	names := []string{"1700000003.x,S=1", "1700000001.x,S=1", "1700000002.x,S=1"}
	for _, n := range names {
		os.WriteFile(filepath.Join(dir, "new", n), []byte("x"), 0o600)
	}
	os.WriteFile(filepath.Join(dir, "tmp", "1700000004.crashed,S=1"), []byte("x"), 0o600)
	if err := inbox.Refresh(); err != nil {
		t.Fatal(err)
	}
	cs := rec.take()
	if got := summary(cs); got != "A2:2 A3:3 A4:4" {
		t.Errorf("changes %s", got)
	}
	for i, c := range cs {
		if want := int64(1700000001 + i); c.Message.Date.Unix() != want {
			t.Errorf("message %d dated %v, want %d", c.Message.UID, c.Message.Date, want)
		}
	}
}
