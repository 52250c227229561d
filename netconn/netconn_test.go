package netconn

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// loopbackPair returns both ends of a real TCP connection on 127.0.0.1.
func loopbackPair(t testing.TB) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}

func TestPeerIP(t *testing.T) {
	server, client := loopbackPair(t)
	if got := PeerIP(server.RemoteAddr()); got != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("PeerIP of a loopback client = %v", got)
	}
	if got := PeerIP(client.RemoteAddr()); !got.IsLoopback() {
		t.Errorf("PeerIP of the server end = %v", got)
	}
	for _, tc := range []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 25}, "192.0.2.7"}, // 16-byte form
		{&net.TCPAddr{IP: net.IPv4(192, 0, 2, 7).To4(), Port: 25}, "192.0.2.7"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 25}, "2001:db8::1"},
		{&net.UDPAddr{IP: net.ParseIP("::ffff:192.0.2.8"), Port: 53}, "192.0.2.8"}, // parsed from String
	} {
		if got := PeerIP(tc.addr); got.String() != tc.want {
			t.Errorf("PeerIP(%v) = %v, want %s", tc.addr, got, tc.want)
		}
	}
	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	if got := PeerIP(p1.RemoteAddr()); got.IsValid() {
		t.Errorf("PeerIP of a pipe = %v, want the zero Addr", got)
	}
	if got := PeerIP(nil); got.IsValid() {
		t.Errorf("PeerIP(nil) = %v", got)
	}
}

func TestBucket(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":              "192.0.2.1/32",
		"::ffff:192.0.2.1":       "192.0.2.1/32",
		"2001:db8:1:2:3::4":      "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::9":   "2001:db8:1:2::/64",
		"2001:db8:1:3::1":        "2001:db8:1:3::/64",
		"fe80::1%eth0":           "fe80::/64",
		"::1":                    "::/64",
		"127.0.0.1":              "127.0.0.1/32",
		"0.0.0.0":                "0.0.0.0/32",
		"255.255.255.255":        "255.255.255.255/32",
		"2001:db8::ffff:1.2.3.4": "2001:db8::/64",
	} {
		if got := Bucket(netip.MustParseAddr(in)); got.String() != want {
			t.Errorf("Bucket(%s) = %s, want %s", in, got, want)
		}
	}
	zero := Bucket(netip.Addr{})
	if zero.IsValid() || zero == Bucket(netip.IPv4Unspecified()) || zero == Bucket(netip.IPv6Unspecified()) {
		t.Errorf("Bucket of the zero Addr = %v, want the zero Prefix, apart from every real one", zero)
	}
}

func TestLimiterTotalAndPerIP(t *testing.T) {
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	l := NewLimiter(3, 2)
	ra1 := mustAcquire(t, l, a)
	mustAcquire(t, l, a)
	if _, err := l.Acquire(a); !errors.Is(err, ErrTooManyFromIP) {
		t.Fatalf("third from one address: %v, want ErrTooManyFromIP", err)
	}
	mustAcquire(t, l, b)
	if _, err := l.Acquire(netip.MustParseAddr("192.0.2.3")); !errors.Is(err, ErrTooMany) {
		t.Fatalf("fourth in all: %v, want ErrTooMany", err)
	}
	// A second release of the same slot must not free another one.
	ra1()
	ra1()
	if n := l.Open(); n != 2 {
		t.Fatalf("Open = %d after one release, want 2", n)
	}
	mustAcquire(t, l, a)
	if _, err := l.Acquire(b); !errors.Is(err, ErrTooMany) {
		t.Fatalf("after a double release the total limit leaks: %v", err)
	}
}

func TestLimiterIPv6Per64(t *testing.T) {
	l := NewLimiter(0, 2)
	mustAcquire(t, l, netip.MustParseAddr("2001:db8:0:1::1"))
	mustAcquire(t, l, netip.MustParseAddr("2001:db8:0:1:aaaa::2"))
	if _, err := l.Acquire(netip.MustParseAddr("2001:db8:0:1:ffff:ffff:ffff:ffff")); !errors.Is(err, ErrTooManyFromIP) {
		t.Fatalf("third address of one /64: %v, want ErrTooManyFromIP", err)
	}
	// The next /64 is someone else.
	mustAcquire(t, l, netip.MustParseAddr("2001:db8:0:2::1"))
	// IPv4 and its mapped IPv6 form are one client.
	mustAcquire(t, l, netip.MustParseAddr("192.0.2.9"))
	mustAcquire(t, l, netip.MustParseAddr("::ffff:192.0.2.9"))
	if _, err := l.Acquire(netip.MustParseAddr("192.0.2.9")); !errors.Is(err, ErrTooManyFromIP) {
		t.Fatalf("mapped IPv4 counted apart: %v", err)
	}
}

func TestLimiterNoLimit(t *testing.T) {
	ip := netip.MustParseAddr("192.0.2.1")
	for _, lim := range [][2]int{{0, 0}, {-1, -1}, {0, -5}} {
		l := NewLimiter(lim[0], lim[1])
		for i := 0; i < 100; i++ {
			mustAcquire(t, l, ip)
		}
		if l.Open() != 100 {
			t.Fatalf("NewLimiter(%d, %d): Open = %d", lim[0], lim[1], l.Open())
		}
	}
}

// TestLimiterConcurrent races many acquirers and releasers (run it with -race): the limits must
// hold at every moment, and every slot must come back.
func TestLimiterConcurrent(t *testing.T) {
	const total, perIP, workers, rounds = 20, 3, 16, 400
	l := NewLimiter(total, perIP)
	ips := []netip.Addr{
		netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"),
		netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2"), // one /64
		netip.MustParseAddr("2001:db8:0:1::1"), {},
	}
	var (
		inAll   atomic.Int64
		perB    [6]atomic.Int64 // by index into buckets
		buckets = map[netip.Prefix]int{}
		refused atomic.Int64
		wg      sync.WaitGroup
	)
	for _, ip := range ips {
		if _, ok := buckets[Bucket(ip)]; !ok {
			buckets[Bucket(ip)] = len(buckets)
		}
	}
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < rounds; i++ {
				ip := ips[(w+i)%len(ips)]
				release, err := l.Acquire(ip)
				if err != nil {
					refused.Add(1)
					continue
				}
				b := &perB[buckets[Bucket(ip)]]
				if n := inAll.Add(1); n > total {
					t.Errorf("%d connections held, limit %d", n, total)
				}
				if n := b.Add(1); n > perIP {
					t.Errorf("%d connections held from %v, limit %d", n, Bucket(ip), perIP)
				}
				if i%7 == 0 {
					time.Sleep(10 * time.Microsecond)
				}
				b.Add(-1)
				inAll.Add(-1)
				release()
				if i%5 == 0 {
					release() // harmless
				}
			}
		}()
	}
	wg.Wait()
	if n := l.Open(); n != 0 {
		t.Fatalf("Open = %d after every release", n)
	}
	l.mu.Lock()
	left := len(l.byBucket)
	l.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d buckets left in the table", left)
	}
	if refused.Load() == 0 {
		t.Log("no refusal happened; the limits were not put to the test this run")
	}
}

func mustAcquire(t *testing.T, l *Limiter, ip netip.Addr) func() {
	t.Helper()
	release, err := l.Acquire(ip)
	if err != nil {
		t.Fatalf("Acquire(%v): %v", ip, err)
	}
	return release
}

func BenchmarkLimiterAcquireRelease(b *testing.B) {
	l := NewLimiter(1000, 20)
	ip := netip.MustParseAddr("2001:db8::1")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			release, err := l.Acquire(ip)
			if err == nil {
				release()
			}
		}
	})
}
