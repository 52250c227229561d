// Package dnstest runs a small authoritative DNS server on loopback for
// tests, so that code doing real DNS (SPF, DKIM, DMARC, DNSBL, MX, DANE)
// can be tested without the network.
//
// A test makes a Server, fills its tables and points a resolver at it:
//
//	s := dnstest.New(t)
//	s.TXT("example.test", "v=spf1 ip4:192.0.2.1 -all")
//	s.A("mx.example.test", "192.0.2.1")
//	s.PTR("192.0.2.1", "mx.example.test")
//	s.Rcode("broken.test", dns.RcodeServerFailure) // or s.ServFail("broken.test")
//	r := s.Resolver() // a *net.Resolver that asks only this server
//
// The server listens on 127.0.0.1 on one kernel-picked port for both UDP and
// TCP (Addr), answers as an authoritative server with recursion available
// (so Go's resolver accepts its empty answers), truncates UDP answers larger
// than the client's EDNS0 size (so clients retry over TCP), and stops when
// the test ends.
//
// Answers: a name with a forced RCODE gets that RCODE and nothing else.
// Otherwise records of the asked type are returned; failing that, a CNAME
// at the name is returned and followed inside the tables; failing that, a
// name that holds any record, or has a descendant that does, gets an empty
// NOERROR answer (NODATA), and any other name NXDOMAIN. Names are compared
// case-insensitively, with or without the final dot. Every record has the
// TTL set by SetTTL (default 300 s). Answers for names marked with
// Authenticated carry the AD bit.
//
// Queries are counted per name and type (Count), for cache tests. All
// methods are safe for concurrent use, also while the server answers.
package dnstest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// Server is a loopback DNS server answering from tables the test fills.
type Server struct {
	t    testing.TB
	addr string // "127.0.0.1:port", the same port for UDP and TCP

	mu      sync.Mutex
	ttl     uint32
	records map[string][]dns.RR // by canonical owner name
	rcodes  map[string]int
	secure  map[string]bool
	counts  map[countKey]int
	total   int
}

type countKey struct {
	name  string
	qtype uint16
}

// New starts a server on 127.0.0.1 (UDP and TCP, one free port) that stops
// when t's test ends.
func New(t testing.TB) *Server {
	t.Helper()
	s := &Server{
		t:       t,
		ttl:     300,
		records: map[string][]dns.RR{},
		rcodes:  map[string]int{},
		secure:  map[string]bool{},
		counts:  map[countKey]int{},
	}
	pc, ln := listenPair(t)
	s.addr = pc.LocalAddr().String()
	udp := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(s.serve)}
	tcp := &dns.Server{Listener: ln, Handler: dns.HandlerFunc(s.serve)}
	for _, srv := range []*dns.Server{udp, tcp} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() { _ = srv.ActivateAndServe() }()
		<-started
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
	return s
}

// listenPair binds UDP and TCP on the same free loopback port.
func listenPair(t testing.TB) (net.PacketConn, net.Listener) {
	t.Helper()
	var lastErr error
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("dnstest: listen udp: %v", err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln
		}
		lastErr = err
		pc.Close()
	}
	t.Fatalf("dnstest: no port free for both udp and tcp: %v", lastErr)
	return nil, nil
}

// Addr is the server's "127.0.0.1:port", for UDP and TCP alike.
func (s *Server) Addr() string { return s.addr }

// Resolver returns a Go resolver (PreferGo) that sends every query to this
// server, whatever /etc/resolv.conf says. Note that Go's resolver still
// consults /etc/hosts first for address and PTR lookups (localhost,
// 127.0.0.1), and may append the search domains of /etc/resolv.conf to
// names that are not found.
func (s *Server) Resolver() *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, s.addr)
		},
	}
}

// SetTTL sets the TTL of the records added from now on.
func (s *Server) SetTTL(seconds uint32) {
	s.mu.Lock()
	s.ttl = seconds
	s.mu.Unlock()
}

// A adds one A record per address to name.
func (s *Server) A(name string, addrs ...string) {
	for _, a := range addrs {
		ip := s.parseIP(a)
		if !ip.Is4() {
			s.t.Fatalf("dnstest: A %s: %q is not IPv4", name, a)
		}
		s.add(name, func(h dns.RR_Header) dns.RR { return &dns.A{Hdr: h, A: ip.AsSlice()} }, dns.TypeA)
	}
}

// AAAA adds one AAAA record per address to name.
func (s *Server) AAAA(name string, addrs ...string) {
	for _, a := range addrs {
		ip := s.parseIP(a)
		if !ip.Is6() {
			s.t.Fatalf("dnstest: AAAA %s: %q is not IPv6", name, a)
		}
		s.add(name, func(h dns.RR_Header) dns.RR { return &dns.AAAA{Hdr: h, AAAA: ip.AsSlice()} }, dns.TypeAAAA)
	}
}

// MX adds an MX record (preference, exchange host) to name.
func (s *Server) MX(name string, pref uint16, host string) {
	s.add(name, func(h dns.RR_Header) dns.RR {
		return &dns.MX{Hdr: h, Preference: pref, Mx: dns.Fqdn(host)}
	}, dns.TypeMX)
}

// TXT adds one TXT record per text to name. A text longer than 255 bytes
// is split into 255-byte character-strings, as publishers of DKIM keys do;
// resolvers join them back.
func (s *Server) TXT(name string, texts ...string) {
	for _, text := range texts {
		s.add(name, func(h dns.RR_Header) dns.RR { return &dns.TXT{Hdr: h, Txt: Chunks(text)} }, dns.TypeTXT)
	}
}

// Chunks splits text into the 255-byte character-strings of a TXT record
// (RFC 1035 §3.3.14); an empty text is one empty string.
func Chunks(text string) []string {
	var out []string
	for len(text) > 255 {
		out = append(out, text[:255])
		text = text[255:]
	}
	return append(out, text)
}

// PTR adds PTR records. ipOrName is either an IP address, whose reverse
// name (in-addr.arpa or ip6.arpa) is used, or the owner name itself.
func (s *Server) PTR(ipOrName string, targets ...string) {
	name := ipOrName
	if ip, err := netip.ParseAddr(ipOrName); err == nil {
		name, _ = dns.ReverseAddr(ip.Unmap().String())
	}
	for _, target := range targets {
		s.add(name, func(h dns.RR_Header) dns.RR { return &dns.PTR{Hdr: h, Ptr: dns.Fqdn(target)} }, dns.TypePTR)
	}
}

// CNAME makes name an alias of target.
func (s *Server) CNAME(name, target string) {
	s.add(name, func(h dns.RR_Header) dns.RR { return &dns.CNAME{Hdr: h, Target: dns.Fqdn(target)} }, dns.TypeCNAME)
}

// SRV adds an SRV record to name.
func (s *Server) SRV(name string, priority, weight, port uint16, target string) {
	s.add(name, func(h dns.RR_Header) dns.RR {
		return &dns.SRV{Hdr: h, Priority: priority, Weight: weight, Port: port, Target: dns.Fqdn(target)}
	}, dns.TypeSRV)
}

// TLSA adds a TLSA record (RFC 6698) to name, e.g. "_25._tcp.mx.example.test";
// data is the certificate association data in hex.
func (s *Server) TLSA(name string, usage, selector, matchingType uint8, data string) {
	s.add(name, func(h dns.RR_Header) dns.RR {
		return &dns.TLSA{Hdr: h, Usage: usage, Selector: selector, MatchingType: matchingType, Certificate: data}
	}, dns.TypeTLSA)
}

// RR adds a record in zone-file syntax ("x.test. 60 IN CAA 0 issue \"ca.test\""),
// for types without a helper. Its own TTL is kept.
func (s *Server) RR(text string) {
	rr, err := dns.NewRR(text)
	if err != nil || rr == nil {
		s.t.Fatalf("dnstest: RR %q: %v", text, err)
	}
	rr.Header().Name = canon(rr.Header().Name)
	s.mu.Lock()
	s.records[rr.Header().Name] = append(s.records[rr.Header().Name], rr)
	s.mu.Unlock()
}

// Rcode makes every query for name (any type) answer with rcode, e.g.
// dns.RcodeServerFailure or dns.RcodeNameError; dns.RcodeSuccess removes
// the override.
func (s *Server) Rcode(name string, rcode int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rcode == dns.RcodeSuccess {
		delete(s.rcodes, canon(name))
		return
	}
	s.rcodes[canon(name)] = rcode
}

// ServFail makes name answer SERVFAIL (a temporary error for resolvers).
func (s *Server) ServFail(name string) { s.Rcode(name, dns.RcodeServerFailure) }

// NXDomain makes name answer NXDOMAIN even if it has records.
func (s *Server) NXDomain(name string) { s.Rcode(name, dns.RcodeNameError) }

// Authenticated sets or clears the AD bit on answers for name, as a
// validating resolver does for DNSSEC-secure data.
func (s *Server) Authenticated(name string, ad bool) {
	s.mu.Lock()
	s.secure[canon(name)] = ad
	s.mu.Unlock()
}

// Remove deletes every record of name (all types).
func (s *Server) Remove(name string) {
	s.mu.Lock()
	delete(s.records, canon(name))
	s.mu.Unlock()
}

// Count is how many queries for name of type qtype ("TXT", "A", ...)
// the server has received, over UDP and TCP.
func (s *Server) Count(name, qtype string) int {
	t, ok := dns.StringToType[strings.ToUpper(qtype)]
	if !ok {
		s.t.Fatalf("dnstest: unknown type %q", qtype)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[countKey{canon(name), t}]
}

// Total is how many queries the server has received.
func (s *Server) Total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

func (s *Server) parseIP(a string) netip.Addr {
	ip, err := netip.ParseAddr(a)
	if err != nil {
		s.t.Fatalf("dnstest: %v", err)
	}
	return ip
}

func (s *Server) add(name string, mk func(dns.RR_Header) dns.RR, rrtype uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := canon(name)
	rr := mk(dns.RR_Header{Name: n, Rrtype: rrtype, Class: dns.ClassINET, Ttl: s.ttl})
	s.records[n] = append(s.records[n], rr)
}

// canon is the form names are kept and compared in.
func canon(name string) string { return dns.CanonicalName(name) }

func (s *Server) serve(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	m.RecursionAvailable = true
	if len(req.Question) != 1 || req.Opcode != dns.OpcodeQuery {
		m.Rcode = dns.RcodeFormatError
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	s.answer(m, canon(q.Name), q.Qtype)
	size := dns.MinMsgSize
	if opt := req.IsEdns0(); opt != nil {
		size = int(opt.UDPSize())
		m.SetEdns0(opt.UDPSize(), false)
	}
	if _, ok := w.LocalAddr().(*net.UDPAddr); ok {
		m.Truncate(size)
	}
	_ = w.WriteMsg(m)
}

// answer fills m for a query of qtype at name, following CNAMEs.
func (s *Server) answer(m *dns.Msg, name string, qtype uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts[countKey{name, qtype}]++
	s.total++
	if rc, ok := s.rcodes[name]; ok {
		m.Rcode = rc
		return
	}
	m.AuthenticatedData = s.secure[name]
	for range 8 { // CNAME chain bound
		var cname dns.RR
		for _, rr := range s.records[name] {
			switch rr.Header().Rrtype {
			case qtype:
				m.Answer = append(m.Answer, dns.Copy(rr))
			case dns.TypeCNAME:
				cname = rr
			}
		}
		if len(m.Answer) > 0 && m.Answer[len(m.Answer)-1].Header().Name == name || cname == nil || qtype == dns.TypeCNAME {
			break
		}
		m.Answer = append(m.Answer, dns.Copy(cname))
		name = cname.(*dns.CNAME).Target
		if _, ok := s.rcodes[name]; ok {
			m.Rcode = s.rcodes[name]
			return
		}
	}
	if len(m.Answer) == 0 && !s.exists(name) {
		m.Rcode = dns.RcodeNameError
	}
	if len(m.Answer) == 0 {
		m.Ns = append(m.Ns, s.soa(name))
	}
}

// exists reports whether name holds records or is an ancestor of a name
// that does (an empty non-terminal).
func (s *Server) exists(name string) bool {
	if len(s.records[name]) > 0 {
		return true
	}
	for n := range s.records {
		if strings.HasSuffix(n, "."+name) {
			return true
		}
	}
	return false
}

// soa is the negative-caching SOA put in the authority section of empty
// answers, owned by the name's parent (or the root).
func (s *Server) soa(name string) dns.RR {
	zone, prefix := ".", "."
	if _, parent, ok := strings.Cut(name, "."); ok && parent != "" {
		zone, prefix = parent, "."+parent
	}
	return &dns.SOA{
		Hdr: dns.RR_Header{Name: zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: s.ttl},
		Ns:  "ns" + prefix, Mbox: "hostmaster" + prefix,
		Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: s.ttl,
	}
}

// String describes the server for test logs.
func (s *Server) String() string { return fmt.Sprintf("dnstest.Server(%s)", s.addr) }
