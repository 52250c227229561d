// Package netconn holds what every Postie listener needs of its connections, the same for SMTP,
// IMAP and POP3, in one Tracker per server: the accept loop (Listeners, riding out temporary
// errors), admission under a total and a per-address cap (an IPv4 address or an IPv6 /64, see
// Bucket), shedding the longest-idle connection when the total cap is reached so that a newcomer
// gets in, the TLS handshake of implicit-TLS ports within a deadline, the deadlines of every read
// and write (idle, per command at a minimum data rate, per transaction: see Conn), and draining
// on shutdown with a context. What a server says to a client it refuses is protocol business and
// stays in each server (Options.Refusal); Queue hands admitted connections to protocol engines
// that want a listener.
package netconn

import (
	"net"
	"net/netip"
)

// PeerIP returns the IP address of a connection end, an IPv4-mapped IPv6 address turned back into
// IPv4; the zero Addr when a has none (a net.Pipe).
func PeerIP(a net.Addr) netip.Addr {
	if a == nil {
		return netip.Addr{}
	}
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// Bucket is the unit that per-address limits count: an IPv4 address (a /32), or the /64 around an
// IPv6 address, since one host or one household usually holds a whole /64 and could otherwise
// take a fresh address for every connection. Peers without an IP address all share the zero
// Prefix.
func Bucket(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap()
	bits := 64
	if ip.Is4() {
		bits = 32
	}
	p, _ := ip.Prefix(bits) // cannot fail for these lengths; the zero Addr gives the zero Prefix
	return p
}
