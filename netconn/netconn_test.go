package netconn

import (
	"net"
	"net/netip"
	"testing"
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
