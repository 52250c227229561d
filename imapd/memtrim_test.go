package imapd

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// A burst of logins is followed by one trim once logins stop, and no second one within trimEvery.
func TestMemTrimAfterLogins(t *testing.T) {
	ts := newTestServer(t)
	var trims atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ts.srv.trim = newMemTrim(ctx, func() { trims.Add(1) })
	for range 3 {
		ts.dial(nil)
	}
	deadline := time.Now().Add(5 * time.Second)
	for trims.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := trims.Load(); n != 1 {
		t.Fatalf("%d trims after a burst of logins, want 1", n)
	}
	ts.dial(nil)
	time.Sleep(trimQuiet + 500*time.Millisecond)
	if n := trims.Load(); n != 1 {
		t.Errorf("%d trims within trimEvery, want 1", n)
	}
}
