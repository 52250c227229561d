package smtpd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"postie/internal/testutil"
)

func TestWindow(t *testing.T) {
	w := newWindow(time.Minute)
	t0 := testNow
	if !w.take("a", 2, t0) || !w.take("a", 2, t0.Add(10*time.Second)) {
		t.Fatal("first two events refused")
	}
	if w.take("a", 2, t0.Add(20*time.Second)) {
		t.Fatal("third event within the minute accepted")
	}
	if !w.take("b", 2, t0.Add(20*time.Second)) {
		t.Fatal("keys are not independent")
	}
	// Giving one back frees its slot.
	w.give("a", t0.Add(10*time.Second))
	if !w.take("a", 2, t0.Add(30*time.Second)) {
		t.Fatal("slot not freed by give")
	}
	// The first event leaves the window after a minute.
	if w.take("a", 2, t0.Add(59*time.Second)) {
		t.Fatal("accepted before the first event expired")
	}
	if !w.take("a", 2, t0.Add(61*time.Second)) {
		t.Fatal("refused after the first event expired")
	}
	if n := w.count("a", t0.Add(61*time.Second)); n != 2 {
		t.Fatalf("count = %d", n)
	}
	// Expired keys are swept once the map grows.
	for i := 0; i < 3000; i++ {
		w.take(fmt.Sprint("k", i), 1, t0.Add(time.Duration(i)*time.Second))
	}
	w.mu.Lock()
	n := len(w.hits)
	w.mu.Unlock()
	if n > 2100 {
		t.Fatalf("%d keys kept, expired ones are not swept", n)
	}
}

func TestLimitKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":          "192.0.2.1/32",
		"::ffff:192.0.2.1":   "192.0.2.1/32",
		"2001:db8:1:2:3::4":  "2001:db8:1:2::/64",
		"2001:db8:1:2:ff::9": "2001:db8:1:2::/64",
	} {
		if got := limitKey(netip.MustParseAddr(in)); got != want {
			t.Errorf("limitKey(%s) = %s, want %s", in, got, want)
		}
	}
	if k := limitKey(netip.Addr{}); k == limitKey(netip.MustParseAddr("0.0.0.0")) || k == limitKey(netip.IPv6Unspecified()) {
		t.Errorf("the zero address shares its key %q with a real one", k)
	}
}

func TestCheckSender(t *testing.T) {
	for in, want := range map[string]string{
		"Ann@Example.TEST":               "Ann@example.test",
		"bounce+x=y@lists.example.":      "bounce+x=y@lists.example",
		"SRS0=ab=cd=ex.org=u@fw.example": "SRS0=ab=cd=ex.org=u@fw.example",
		"a/b@example.test":               "a/b@example.test",
	} {
		if got, ok := checkSender(in); !ok || got != want {
			t.Errorf("checkSender(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	for _, in := range []string{"a b@example.test", "a\r@example.test", "@example.test", "a@", "a@bad_domain!", "a@b..c", "\xff@example.test", strings.Repeat("x", 65) + "@example.test"} {
		if got, ok := checkSender(in); ok {
			t.Errorf("checkSender(%q) = %q, want refusal", in, got)
		}
	}
}

func TestServeAfterShutdown(t *testing.T) {
	f := start(t, RoleMX, nil)
	if err := f.srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-f.serve; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve = %v", err)
	}
	if err := f.srv.Serve(listen(t)); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve after Shutdown = %v", err)
	}
}

func TestNewServerWiring(t *testing.T) {
	for name, opts := range map[string]Options{
		"no role":            {Recipients: &fakeRecipients{}, Delivery: &fakeDelivery{}},
		"no delivery":        {Role: RoleMX, Recipients: &fakeRecipients{}},
		"submission no auth": {Role: RoleSubmission, Recipients: &fakeRecipients{}, Delivery: &fakeDelivery{}},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: NewServer did not panic", name)
				}
			}()
			NewServer(opts)
		}()
	}
	if err := NewServer(Options{Role: RoleMX, Recipients: &fakeRecipients{}, Delivery: &fakeDelivery{}}).ServeTLS(listen(t)); err == nil {
		t.Error("ServeTLS without a TLS config succeeded")
	}
}

// The go-smtp BDAT race (see isBDATCloseRace) is logged as a warning, any
// other recovered panic as an error.
func TestErrorLogPanics(t *testing.T) {
	logs := &testutil.SyncBuffer{}
	l := errorLog{slog.New(slog.NewTextHandler(logs, nil))}
	l.Printf("panic serving %v: %v\n%s", "1.2.3.4:5", "runtime error: invalid memory address or nil pointer dereference",
		"goroutine 1 [running]:\ngithub.com/emersion/go-smtp.(*Conn).handleBdat.func1()\n\tconn.go:1059")
	l.Printf("panic serving %v: %v\n%s", "1.2.3.4:5", "boom", "postie/smtpd.(*session).Data(...)")
	out := logs.String()
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "level=ERROR msg=\"smtp: recovered panic\"") {
		t.Fatalf("log:\n%s", out)
	}
}
