package imapd

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"postie/netconn"
)

// Issue 9 item 6 for IMAP, as the issue measured it: 2,000 idle connections from 100 addresses
// fill the cap; a user still logs in and is served, and the user logged in before keeps the
// connection.
func TestTwoThousandIdle(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 2,000 connections")
	}
	const capacity, addrs = 2000, 100
	ts := newTestServer(t, func(o *Options) {
		o.MaxConnections, o.MaxConnectionsPerIP = capacity, capacity/addrs
		o.Deadlines = netconn.Deadlines{ShedAfter: 100 * time.Millisecond}
	})
	ts.deliver(testMessage(1, "for alice"))
	alice := ts.dial(nil) // logged in, and idle longest of all

	dial := func(ip string) net.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	var idle []*bufio.Reader
	var conns []net.Conn
	for i := 0; i < capacity-1; i++ {
		c := dial(fmt.Sprintf("127.0.8.%d", 1+i%addrs))
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		if l, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(l, "* OK") {
			t.Fatalf("idle connection %d: greeting %q, %v", i, l, err)
		}
		idle, conns = append(idle, br), append(conns, c)
	}
	time.Sleep(150 * time.Millisecond)

	start := time.Now()
	c := imapclient.New(dial("127.0.9.1"), nil)
	defer c.Close()
	if err := c.Login("bob@example.test", "pw2").Wait(); err != nil {
		t.Fatalf("login with the cap full of idle connections: %v", err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	t.Logf("served %v after connecting, with %d connections held", time.Since(start).Round(time.Millisecond), ts.srv.tracker.Len())
	conns[0].SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, idle[0]); err != nil {
		t.Fatalf("the longest idle connection that never logged in: %v, want it shed", err)
	}
	if _, err := alice.Select("INBOX", nil).Wait(); err != nil {
		t.Fatalf("the logged-in user lost the connection: %v", err)
	}
}
