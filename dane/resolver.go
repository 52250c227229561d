package dane

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/miekg/dns"
)

// TLSA is the answer to a TLSA lookup.
type TLSA struct {
	// Secure reports the AD bit: the resolver validated the answer (or
	// its denial) with DNSSEC. Records of an insecure answer must not be
	// used.
	Secure  bool
	Records []Record // all records found, usable or not
}

// Resolver asks one DNS server, which must be a validating resolver the
// host can trust (on loopback, such as unbound), and reads its AD bit.
type Resolver struct {
	addr    string
	timeout time.Duration
}

// ErrNoResolver says that DANE is off: no trusted resolver is known.
var ErrNoResolver = errors.New("dane: no trusted validating resolver (set [outbound] resolver, or run one on loopback and name it first in /etc/resolv.conf)")

// NewResolver returns a Resolver asking addr ("host:port"). With addr "",
// it asks the first nameserver of resolvConf (normally /etc/resolv.conf),
// but only if that is a loopback address: the AD bit of a resolver across
// the network could be forged by anyone on the path, and DANE overrides
// MTA-STS, so it would let them downgrade it. Otherwise it returns
// ErrNoResolver.
func NewResolver(addr, resolvConf string) (*Resolver, error) {
	if addr != "" {
		return &Resolver{addr: addr, timeout: 10 * time.Second}, nil
	}
	cc, err := dns.ClientConfigFromFile(resolvConf)
	if err != nil || len(cc.Servers) == 0 {
		return nil, ErrNoResolver
	}
	ip, err := netip.ParseAddr(cc.Servers[0])
	if err != nil || !ip.IsLoopback() {
		return nil, ErrNoResolver
	}
	return &Resolver{addr: net.JoinHostPort(cc.Servers[0], cc.Port), timeout: 10 * time.Second}, nil
}

// Addr is the DNS server asked.
func (r *Resolver) Addr() string { return r.addr }

// LookupTLSA looks up the TLSA records of _port._tcp.host. A name without
// TLSA records (NXDOMAIN, NODATA) is no error: Records is empty and Secure
// tells whether that denial was validated.
func (r *Resolver) LookupTLSA(ctx context.Context, host string, port int) (TLSA, error) {
	name := fmt.Sprintf("_%d._tcp.%s", port, dns.Fqdn(host))
	in, err := r.query(ctx, name, dns.TypeTLSA)
	if err != nil {
		return TLSA{}, err
	}
	return tlsaAnswer(in), nil
}

// maxTLSA bounds the records taken from one answer: each is tried
// against the server's chain, so a hostile zone could otherwise make a
// handshake cost as many hash runs as a 64 KiB answer holds records.
const maxTLSA = 64

// tlsaAnswer reads the TLSA records and the AD bit of a resolver's answer.
// Records whose data is not hex are left out.
func tlsaAnswer(in *dns.Msg) TLSA {
	res := TLSA{Secure: in.AuthenticatedData}
	for _, rr := range in.Answer {
		if len(res.Records) == maxTLSA {
			break
		}
		t, ok := rr.(*dns.TLSA)
		if !ok {
			continue
		}
		data, err := hex.DecodeString(t.Certificate)
		if err != nil {
			continue
		}
		res.Records = append(res.Records, Record{Usage: t.Usage, Selector: t.Selector, MatchingType: t.MatchingType, Data: data})
	}
	return res
}

// Secure reports whether the answer for name and qtype (dns.TypeMX,
// dns.TypeA...) is DNSSEC-validated, a validated denial included: RFC 7672
// section 2.2 uses DANE only for MX hosts found securely.
func (r *Resolver) Secure(ctx context.Context, name string, qtype uint16) (bool, error) {
	in, err := r.query(ctx, dns.Fqdn(name), qtype)
	if err != nil {
		return false, err
	}
	return in.AuthenticatedData, nil
}

// query asks with the DO and AD bits (RFC 6840 section 5.7) over UDP,
// then over TCP if the answer was truncated. Answers other than NOERROR
// and NXDOMAIN are errors: the name's security cannot be known.
func (r *Resolver) query(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = true
	m.AuthenticatedData = true
	m.SetEdns0(4096, true)
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	c := &dns.Client{Net: "udp", Timeout: r.timeout}
	in, _, err := c.ExchangeContext(ctx, m, r.addr)
	if err == nil && in.Truncated {
		c.Net = "tcp"
		in, _, err = c.ExchangeContext(ctx, m, r.addr)
	}
	if err != nil {
		return nil, fmt.Errorf("dane: %s %s: %w", dns.TypeToString[qtype], name, err)
	}
	if in.Rcode != dns.RcodeSuccess && in.Rcode != dns.RcodeNameError {
		return nil, fmt.Errorf("dane: %s %s: %s", dns.TypeToString[qtype], name, dns.RcodeToString[in.Rcode])
	}
	return in, nil
}
