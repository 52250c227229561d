package imapd

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// A burst of logins is followed by one trim once logins stop, and no second one within trimGap.
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
		t.Errorf("%d trims within trimGap, want 1", n)
	}
}

// Logins that come again after a trim are trimmed again once the gap is over; logins that never
// pause are trimmed at the latest after the late bound.
func TestMemTrimAgainAndLate(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var trims atomic.Int32
	m := newMemTrimTimes(ctx, func() { trims.Add(1) }, 100*time.Millisecond, 600*time.Millisecond, 300*time.Millisecond)
	waitTrims := func(n int32, within time.Duration) {
		t.Helper()
		for deadline := time.Now().Add(within); trims.Load() < n; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d trims, want %d", trims.Load(), n)
			}
		}
	}
	m.loggedIn()
	waitTrims(1, 2*time.Second)
	m.loggedIn() // within the gap: trimmed after it
	waitTrims(2, 2*time.Second)
	// A login every 20 ms never leaves a quiet 100 ms: the late bound trims anyway.
	stop := time.After(1500 * time.Millisecond)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for more := true; more; {
		select {
		case <-stop:
			more = false
		case <-tick.C:
			m.loggedIn()
		}
	}
	if n := trims.Load(); n < 3 {
		t.Errorf("%d trims while logins never paused for 1.5 s, want 3 or more", n)
	}
}
