package pop3d

import (
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"postie/netconn"
)

// Issue 9 items 5 and 6 for POP3.

func dialFrom(t testing.TB, addr, ip string) *client {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := wrapClient(t, conn)
	c.expectOK("")
	return c
}

// closedWithin reports how long the server took to close c (false: not within 5 s).
func closedWithin(c *client, start time.Time) (time.Duration, bool) {
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.Copy(io.Discard, c.br)
	var ne net.Error
	if err != nil && (!asNetError(err, &ne) || ne.Timeout()) {
		return 0, false
	}
	return time.Since(start), true
}

func asNetError(err error, ne *net.Error) bool {
	e, ok := err.(net.Error)
	if ok {
		*ne = e
	}
	return ok
}

// TestSlowloris: a command sent a byte every 50 ms is cut soon after the 300 ms grace, although
// the idle timeout is 10 s; a session of quick commands outlasts the grace.
func TestSlowloris(t *testing.T) {
	const grace = 300 * time.Millisecond
	ts := startServer(t, func(cfg *serverConfig) {
		cfg.idleTimeout = 10 * time.Second
		cfg.deadlines = netconn.Deadlines{CommandTimeout: grace, MinRate: 100}
	})
	slow := dial(t, ts.addr)
	start := time.Now()
	go func() {
		for _, b := range []byte("USER alice@example.test\r\n") { // 1.25 s at this pace
			if _, err := slow.conn.Write([]byte{b}); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	if took, closed := closedWithin(slow, start); !closed || took < grace || took > time.Second {
		t.Fatalf("slow command closed=%v after %v, want soon after %v", closed, took, grace)
	}

	quick := dial(t, ts.addr)
	quick.login(testUser, testPass)
	for start := time.Now(); time.Since(start) < 3*grace; time.Sleep(50 * time.Millisecond) {
		quick.ok("NOOP")
	}
}

// TestCapFullOfIdle: with the cap held by idle connections from many addresses, a user logs in
// and is served; the user already logged in keeps the connection, idle longest though it is.
func TestCapFullOfIdle(t *testing.T) {
	const capacity = 30
	ts := startServer(t, func(cfg *serverConfig) {
		cfg.maxConns, cfg.maxPerIP = capacity, 5
		cfg.deadlines.ShedAfter = 100 * time.Millisecond
	})
	ts.inbox("bob@example.test").deliver([]byte("Subject: hi\r\n\r\nHello.\r\n"))
	alice := dialFrom(t, ts.addr, "127.0.5.1")
	alice.login(testUser, testPass)
	var idle []*client
	for i := 0; i < capacity-1; i++ {
		idle = append(idle, dialFrom(t, ts.addr, fmt.Sprintf("127.0.6.%d", 1+i))) // nobody over their share
	}
	time.Sleep(150 * time.Millisecond)
	start := time.Now()
	bob := dialFrom(t, ts.addr, "127.0.5.2")
	bob.login("bob@example.test", "bobpw")
	bob.ok("RETR 1")
	if _, closed := closedWithin(idle[0], start); !closed {
		t.Fatal("the longest idle connection that never logged in was not shed")
	}
	alice.ok("STAT")
}
