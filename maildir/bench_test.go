package maildir

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

func msg4K() []byte {
	var b bytes.Buffer
	b.WriteString("From: a@example.test\r\nTo: alice@example.test\r\nSubject: benchmark\r\n\r\n")
	for b.Len() < 4096-80 {
		b.WriteString("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n")
	}
	return b.Bytes()
}

// BenchmarkDeliver4K measures durable deliveries of a 4 KiB message (two
// fsyncs each; concurrent ones share the directory fsync).
func BenchmarkDeliver4K(b *testing.B) {
	m := msg4K()
	for _, workers := range []int{1, 10} {
		b.Run(fmt.Sprintf("goroutines=%d", workers), func(b *testing.B) {
			u, _ := testUser(b)
			b.SetBytes(int64(len(m)))
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := w; i < b.N; i += workers {
						if _, err := u.Deliver(bytes.NewReader(m), DeliverOptions{}); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
		})
	}
}

// BenchmarkAppend4K measures IMAP APPEND of a 4 KiB message into a loaded
// folder (three fsyncs: file, UID list, cur/).
func BenchmarkAppend4K(b *testing.B) {
	m := msg4K()
	u, _ := testUser(b)
	box := mailbox(b, u, "Archive")
	b.SetBytes(int64(len(m)))
	b.ResetTimer()
	for range b.N {
		if _, err := box.Append(bytes.NewReader(m), FlagSeen, time.Time{}, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// fill100k makes an INBOX of n tiny messages straight on disk, then loads
// it once so that the UID list exists (the steady state of a server).
func fill100k(b *testing.B, n int) string {
	b.Helper()
	root := b.TempDir()
	u, err := testStore(b, root).User("example.test", "alice")
	if err != nil {
		b.Fatal(err)
	}
	cur := filepath.Join(root, "example.test", "alice", "cur")
	content := []byte("Subject: x\r\n\r\nx\r\n")
	base := time.Now().Add(-24 * time.Hour).Unix()
	for i := range n {
		flags := ":2,"
		if i%2 == 0 {
			flags = ":2,S"
		}
		name := fmt.Sprintf("%d.M%dP4242Q%dR%012x.mx.test,S=%d%s", base+int64(i/100), i%100, i, i*7919, len(content), flags)
		if err := os.WriteFile(filepath.Join(cur, name), content, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	start := time.Now()
	box := mailbox(b, u, "INBOX")
	b.Logf("first load of %d messages, numbering them all: %v", n, time.Since(start))
	if got := len(uidsOf(box)); got != n {
		b.Fatalf("%d messages loaded", got)
	}
	ageDirs(b, filepath.Join(root, "example.test", "alice"))
	return root
}

// BenchmarkMailbox100k: cold load (UID list + one listing of cur/ and new/,
// no stat per file), warm Mailbox+Refresh with nothing changed, and a View
// over every message.
func BenchmarkMailbox100k(b *testing.B) {
	const n = 100_000
	root := fill100k(b, n)
	b.Run("ColdLoad", func(b *testing.B) {
		var heap float64
		for range b.N {
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			s := testStore(b, root)
			u, err := s.User("example.test", "alice")
			if err != nil {
				b.Fatal(err)
			}
			box, err := u.Mailbox("INBOX")
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			runtime.GC()
			runtime.ReadMemStats(&after)
			heap = float64(after.HeapAlloc) - float64(before.HeapAlloc)
			if len(uidsOf(box)) != n {
				b.Fatal("wrong count")
			}
			runtime.KeepAlive(box)
			b.StartTimer()
		}
		b.ReportMetric(heap/n, "heapB/msg")
	})
	b.Run("WarmRefresh", func(b *testing.B) {
		u := reopen(b, root)
		box := mailbox(b, u, "INBOX")
		box.Refresh()
		before := box.listings
		b.ResetTimer()
		for range b.N {
			m, err := u.Mailbox("INBOX")
			if err != nil {
				b.Fatal(err)
			}
			if err := m.Refresh(); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		if box.listings != before {
			b.Fatalf("warm Refresh listed directories %d times", box.listings-before)
		}
	})
	b.Run("View", func(b *testing.B) {
		box := mailbox(b, reopen(b, root), "INBOX")
		var seen int
		fn := func(msgs []Message) {
			for i := range msgs {
				if msgs[i].Flags&FlagSeen != 0 {
					seen++
				}
			}
		}
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			box.View(fn)
		}
	})
	b.Run("DeliverLoaded", func(b *testing.B) {
		// Delivery while the 100k INBOX is loaded: each one is also given
		// its UID and moved to cur/ at once (for IDLE sessions).
		u := reopen(b, root)
		box := mailbox(b, u, "INBOX")
		ageDirs(b, filepath.Join(root, "example.test", "alice"))
		box.Refresh()
		m := msg4K()
		before := box.curListings
		b.ResetTimer()
		for range b.N {
			if _, err := u.Deliver(bytes.NewReader(m), DeliverOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		if box.curListings != before {
			b.Errorf("cur/ listed %d times", box.curListings-before)
		}
	})
	b.Run("RescanCur", func(b *testing.B) {
		box := mailbox(b, reopen(b, root), "INBOX")
		b.ResetTimer()
		for range b.N {
			box.mu.Lock()
			box.cur.valid = false
			err := box.refreshLocked()
			box.mu.Unlock()
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkFirstLoadNew10k is the first load of a folder nobody has
// numbered, its messages all in new/ (as bench/run.sh's first SELECT): UIDs
// for every file, the UID list written, new/ moved to cur/.
func BenchmarkFirstLoadNew10k(b *testing.B) {
	const n = 10_000
	tmpl := b.TempDir()
	content := []byte("Subject: x\r\n\r\nx\r\n")
	base := time.Now().Add(-24 * time.Hour).Unix()
	var names []string
	for i := range n {
		name := fmt.Sprintf("%d.M%06dP1.bench,S=%d,W=%d", base+int64(i)*7, i, len(content), len(content))
		if err := os.WriteFile(filepath.Join(tmpl, name), content, 0o600); err != nil {
			b.Fatal(err)
		}
		names = append(names, name)
	}
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		root := filepath.Join(b.TempDir(), strconv.Itoa(i))
		u, err := testStore(b, root).User("example.test", "alice")
		if err != nil {
			b.Fatal(err)
		}
		newDir := filepath.Join(root, "example.test", "alice", "new")
		for _, name := range names {
			if err := os.Link(filepath.Join(tmpl, name), filepath.Join(newDir, name)); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		box := mailbox(b, u, "INBOX")
		b.StopTimer()
		if got := len(uidsOf(box)); got != n {
			b.Fatalf("%d messages loaded", got)
		}
		b.StartTimer()
	}
}
