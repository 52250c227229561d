package imapd

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"postie/internal/testutil"
)

// fillInbox writes n messages straight into alice's INBOX (new/), faster than delivering each.
func fillInbox(t testing.TB, ts *testServer, n int) {
	t.Helper()
	ts.user() // makes the folders
	dir := filepath.Join(ts.dir, "example.test", "alice", "new")
	for i := range n {
		msg := testMessage(i, fmt.Sprintf("message %d", i)) + strings.Repeat("filler line of the body\r\n", 40)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("1700000000.M%dP1.test", i)), []byte(msg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// Issue 9 item 4: a client that resets the connection in the middle of big pipelined FETCHes made
// the server log a line per message it could no longer send.
func TestResetMidFetchLogsLittle(t *testing.T) {
	var logs testutil.SyncBuffer
	ts := newTestServer(t, func(o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	fillInbox(t, ts, 3000)
	r := ts.raw(true)
	if got := last(r.cmd("s SELECT INBOX")); !strings.HasPrefix(got, "s OK") {
		t.Fatalf("select: %q", got)
	}
	before := strings.Count(logs.String(), "\n")
	for i := range 5 {
		r.send(fmt.Sprintf("f%d FETCH 1:* (BODY.PEEK[])\r\n", i))
	}
	r.line() // the answer has started
	tc := r.c.(*net.TCPConn)
	tc.SetLinger(0) // close with RST, with most of the answer unread
	tc.Close()
	// The session ends once the server notices.
	deadline := time.Now().Add(10 * time.Second)
	for {
		ts.srv.mu.Lock()
		n := len(ts.srv.sessions)
		ts.srv.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the session did not end")
		}
		time.Sleep(10 * time.Millisecond)
	}
	out := logs.String()
	lines := strings.Split(strings.TrimSpace(out), "\n")[before:]
	if len(lines) > 3 {
		t.Errorf("%d log lines after the reset (at most 3 wanted); first ones:\n%s", len(lines), strings.Join(lines[:min(len(lines), 10)], "\n"))
	}
	for _, l := range lines {
		if strings.Contains(l, "level=ERROR") {
			t.Errorf("a client going away is no error: %s", l)
		}
	}
}

// However often a connection's commands fail, it logs at most maxLogLines lines and one more that
// says so.
func TestSessionLogIsBounded(t *testing.T) {
	var logs testutil.SyncBuffer
	srv := New(Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	s := &session{srv: srv, ip: "192.0.2.1"}
	for range 1000 {
		s.logf(slog.LevelError, "imap fetch: short read", "uid", 1)
	}
	if n := strings.Count(logs.String(), "\n"); n != maxLogLines+1 {
		t.Errorf("%d lines logged, want %d", n, maxLogLines+1)
	}
}
