package tests

import (
	"net"
	"strings"
	"sync"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// dnsServer is a tiny authoritative DNS server on loopback UDP that answers
// MX and A queries from tables the test fills, so `postie serve` resolves
// remote domains without touching real DNS.
type dnsServer struct {
	addr string
	conn net.PacketConn

	mu sync.Mutex
	mx map[string][]*net.MX // name (lower case, with trailing dot) → records
	a  map[string][]net.IP
}

func newDNSServer(t testing.TB) *dnsServer {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &dnsServer{addr: pc.LocalAddr().String(), conn: pc, mx: map[string][]*net.MX{}, a: map[string][]net.IP{}}
	go d.serve()
	t.Cleanup(func() { pc.Close() })
	return d
}

func fqdn(name string) string { return strings.ToLower(strings.TrimSuffix(name, ".")) + "." }

func (d *dnsServer) setMX(domain string, records ...*net.MX) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.mx[fqdn(domain)] = records
}

func (d *dnsServer) setA(host string, ips ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var list []net.IP
	for _, s := range ips {
		list = append(list, net.ParseIP(s))
	}
	d.a[fqdn(host)] = list
}

func (d *dnsServer) serve() {
	buf := make([]byte, 1500)
	for {
		n, from, err := d.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		if resp := d.answer(buf[:n]); resp != nil {
			d.conn.WriteTo(resp, from)
		}
	}
}

func (d *dnsServer) answer(req []byte) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(req)
	if err != nil {
		return nil
	}
	q, err := p.Question()
	if err != nil {
		return nil
	}
	name := strings.ToLower(q.Name.String())
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired, RecursionAvailable: true})
	b.EnableCompression()
	d.mu.Lock()
	mx, hasMX := d.mx[name]
	ips, hasA := d.a[name]
	d.mu.Unlock()
	if !hasMX && !hasA {
		b.StartQuestions()
		b.Question(q)
		msg, _ := b.Finish()
		// NXDOMAIN
		msg[3] = (msg[3] &^ 0x0f) | 3
		return msg
	}
	b.StartQuestions()
	b.Question(q)
	b.StartAnswers()
	rh := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60}
	switch q.Type {
	case dnsmessage.TypeMX:
		for _, m := range mx {
			b.MXResource(rh, dnsmessage.MXResource{Pref: m.Pref, MX: dnsmessage.MustNewName(fqdn(m.Host))})
		}
	case dnsmessage.TypeA:
		for _, ip := range ips {
			if v4 := ip.To4(); v4 != nil {
				var a [4]byte
				copy(a[:], v4)
				b.AResource(rh, dnsmessage.AResource{A: a})
			}
		}
	}
	msg, err := b.Finish()
	if err != nil {
		return nil
	}
	return msg
}
