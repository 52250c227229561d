package maildir

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// walkUsage adds up the real files of every folder, independently of
// maildirsize.
func walkUsage(t *testing.T, root string) (bytes, count int64) {
	t.Helper()
	dir := filepath.Join(root, "example.test", "alice")
	folders, _ := filepath.Glob(filepath.Join(dir, ".*"))
	folders = append(folders, dir)
	for _, f := range folders {
		for _, sub := range []string{"cur", "new"} {
			ents, _ := os.ReadDir(filepath.Join(f, sub))
			for _, e := range ents {
				fi, err := e.Info()
				if err != nil {
					t.Fatal(err)
				}
				bytes += fi.Size()
				count++
			}
		}
	}
	return bytes, count
}

func checkUsage(t *testing.T, u *User, root, step string) {
	t.Helper()
	b, c, err := u.Usage()
	if err != nil {
		t.Fatal(err)
	}
	wb, wc := walkUsage(t, root)
	if b != wb || c != wc {
		t.Errorf("%s: usage %d bytes %d messages, files hold %d %d", step, b, c, wb, wc)
	}
}

func TestQuotaAccounting(t *testing.T) {
	u, root := testUser(t)
	checkUsage(t, u, root, "empty")
	for i := range 3 {
		deliver(t, u, body(i))
	}
	checkUsage(t, u, root, "deliver")
	inbox := mailbox(t, u, "INBOX")
	if _, err := inbox.Append(strings.NewReader(strings.Repeat("y", 1000)), 0, time.Time{}, nil); err != nil {
		t.Fatal(err)
	}
	checkUsage(t, u, root, "append")
	trash, archive := mailbox(t, u, "Trash"), mailbox(t, u, "Archive")
	if _, _, err := inbox.CopyTo(trash, []uint32{1, 2, 4}, nil); err != nil {
		t.Fatal(err)
	}
	checkUsage(t, u, root, "copy")
	if _, _, err := inbox.MoveTo(archive, []uint32{3, 4}, nil); err != nil {
		t.Fatal(err)
	}
	checkUsage(t, u, root, "move")
	if _, err := trash.Expunge([]uint32{1, 3}, nil); err != nil {
		t.Fatal(err)
	}
	checkUsage(t, u, root, "expunge")
	if err := u.DeleteMailbox("Archive"); err != nil {
		t.Fatal(err)
	}
	checkUsage(t, u, root, "delete folder")
	// Quota on APPEND and COPY, once set.
	b, _, _ := u.Usage()
	u.SetQuota(b + 10)
	if _, _, err := inbox.CopyTo(trash, []uint32{1}, nil); err == nil {
		t.Error("copy over quota succeeded")
	}
	checkUsage(t, u, root, "refused copy")
	if _, _, err := inbox.MoveTo(trash, []uint32{1}, nil); err != nil {
		t.Errorf("move within the user over quota: %v", err)
	}
	// A restart reads the same figures.
	u2 := reopen(t, root)
	checkUsage(t, u2, root, "restart")
}

func TestQuotaConcurrentWriters(t *testing.T) {
	root := t.TempDir()
	var wg sync.WaitGroup
	for s := range 2 {
		u, err := testStore(t, root).User("example.test", "alice")
		if err != nil {
			t.Fatal(err)
		}
		inbox := mailbox(t, u, "INBOX")
		for g := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 15 {
					if _, err := u.Deliver(strings.NewReader(body(s*100+g*10+i)), DeliverOptions{Quota: 1 << 30}); err != nil {
						t.Error(err)
						return
					}
					if i%4 == 3 {
						var uids []uint32
						inbox.View(func(msgs []Message) {
							for _, m := range msgs[:min(2, len(msgs))] {
								uids = append(uids, m.UID)
							}
						})
						if _, err := inbox.Expunge(uids, nil); err != nil {
							t.Error(err)
							return
						}
					}
				}
			}()
		}
	}
	wg.Wait()
	checkUsage(t, reopen(t, root), root, "concurrent")
}

func TestMaildirsizeRecomputed(t *testing.T) {
	u, root := testUser(t)
	deliver(t, u, body(1))
	checkUsage(t, u, root, "first")
	path := filepath.Join(root, "example.test", "alice", maildirsize)
	// Too long: recomputed, and short again.
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(strings.Repeat("0 0\n", 1500))
	f.Close()
	checkUsage(t, u, root, "long")
	if fi, _ := os.Stat(path); fi.Size() > 100 {
		t.Errorf("maildirsize is %d bytes after a recomputation", fi.Size())
	}
	// Damaged or missing: recomputed.
	os.WriteFile(path, []byte("0S\nnonsense\n"), 0o600)
	checkUsage(t, u, root, "damaged")
	os.Remove(path)
	deliver(t, u, body(2))
	checkUsage(t, u, root, "missing")
}
