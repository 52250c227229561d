package pop3d

import (
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"postie/internal/testutil"
)

// Issue 9 item 4, for POP3: a client that resets the connection in the middle of pipelined RETRs
// costs the log a line or two, not one per message.
func TestResetMidRetrLogsLittle(t *testing.T) {
	var logs testutil.SyncBuffer
	ts := startServer(t, func(c *serverConfig) {
		c.log = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	box := ts.inbox(testUser)
	const n = 2000
	for i := range n {
		box.deliver([]byte(fmt.Sprintf("Subject: %d\r\n\r\n%s", i, strings.Repeat("body line\r\n", 100))))
	}
	c := dial(t, ts.addr)
	c.login(testUser, testPass)
	before := strings.Count(logs.String(), "\n")
	var cmds strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&cmds, "RETR %d\r\n", i)
	}
	if _, err := c.conn.Write([]byte(cmds.String())); err != nil {
		t.Fatal(err)
	}
	c.expectOK("") // the answer has started
	tc := c.conn.(*net.TCPConn)
	tc.SetLinger(0) // close with RST, with most of the answer unread
	tc.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if ts.srv.tracker.Len() == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the session did not end")
		}
		time.Sleep(10 * time.Millisecond)
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")[before:]
	if len(lines) > 3 {
		t.Errorf("%d log lines after the reset (at most 3 wanted):\n%s", len(lines), strings.Join(lines[:min(len(lines), 10)], "\n"))
	}
	for _, l := range lines {
		if strings.Contains(l, "level=ERROR") {
			t.Errorf("a client going away is no error: %s", l)
		}
	}
}
