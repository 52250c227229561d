package imapserver_test

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapserver"
)

// IdleFunc writes once at the start and again when updates are queued; a failed write ends it
// and stop reports the error; after stop nothing is written.
func TestIdleFunc(t *testing.T) {
	mt := imapserver.NewMailboxTracker(1)
	st := mt.NewSession()
	defer st.Close()
	var writes atomic.Int32
	fail := errors.New("gone")
	stop, err := st.IdleFunc(func() error {
		if writes.Add(1) == 3 {
			return fail
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.IdleFunc(func() error { return nil }); err == nil {
		t.Error("a second IdleFunc at once was accepted")
	}
	waitWrites := func(n int32) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); writes.Load() < n; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d writes, want %d", writes.Load(), n)
			}
		}
	}
	waitWrites(1) // the first, at the start
	mt.QueueNumMessages(2)
	waitWrites(2)
	mt.QueueNumMessages(3)
	waitWrites(3) // fails
	mt.QueueNumMessages(4)
	time.Sleep(50 * time.Millisecond)
	if err := stop(); !errors.Is(err, fail) {
		t.Errorf("stop = %v, want the write's error", err)
	}
	if n := writes.Load(); n != 3 {
		t.Errorf("%d writes, want 3: none after a failed one", n)
	}
	// Once stopped, the tracker can idle again, and queued updates wake nobody.
	stop2, err := st.IdleFunc(func() error { writes.Add(1); return nil })
	if err != nil {
		t.Fatal(err)
	}
	waitWrites(4)
	if err := stop2(); err != nil {
		t.Fatal(err)
	}
	mt.QueueNumMessages(5)
	time.Sleep(50 * time.Millisecond)
	if n := writes.Load(); n != 4 {
		t.Errorf("%d writes after stop, want 4", n)
	}
}
