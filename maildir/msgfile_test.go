package maildir

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOpenMessage(t *testing.T) {
	u, root := testUser(t)
	for i := range 3 {
		deliver(t, u, body(i))
	}
	inbox := mailbox(t, u, "INBOX")
	f, err := inbox.OpenMessage(2)
	if err != nil {
		t.Fatal(err)
	}
	want := body(1)
	if n, err := f.Size(); err != nil || n != int64(len(want)) {
		t.Errorf("Size = %d, %v; want %d", n, err, len(want))
	}
	if b, err := io.ReadAll(f); err != nil || string(b) != want {
		t.Errorf("Read: %q, %v", b, err)
	}
	p := make([]byte, 8)
	if n, err := f.ReadAt(p, 6); err != nil || string(p[:n]) != want[6:14] {
		t.Errorf("ReadAt: %q, %v", p[:n], err)
	}
	long := make([]byte, len(want)+1)
	if n, err := f.ReadAt(long, 0); err != io.EOF || n != len(want) {
		t.Errorf("ReadAt past the end: %d, %v; want %d, EOF", n, err, len(want))
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := f.ReadAt(p, 0); err == nil {
		t.Error("ReadAt after Close succeeded")
	}

	// Renamed by another writer (flags): found after a rescan. Removed: ErrNoSuchMessage.
	cur := filepath.Join(root, "example.test", "alice", "cur")
	var one, three string
	inbox.View(func([]Message) { one, three = inbox.fileNameLocked(0), inbox.fileNameLocked(2) })
	if err := os.Rename(filepath.Join(cur, one), filepath.Join(cur, strings.TrimSuffix(one, ":2,")+":2,S")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(cur, three)); err != nil {
		t.Fatal(err)
	}
	f, err = inbox.OpenMessage(1)
	if err != nil {
		t.Fatalf("open after a foreign rename: %v", err)
	}
	b, _ := io.ReadAll(f)
	f.Close()
	if string(b) != body(0) {
		t.Errorf("read after foreign rename: %q", b)
	}
	if _, err := inbox.OpenMessage(3); !errors.Is(err, ErrNoSuchMessage) {
		t.Errorf("open of a removed message: %v", err)
	}
	if _, err := inbox.OpenMessage(99); !errors.Is(err, ErrNoSuchMessage) {
		t.Errorf("open of an unknown UID: %v", err)
	}
}
