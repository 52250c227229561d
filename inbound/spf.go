package inbound

import (
	"context"
	"net"
	"net/netip"

	"blitiri.com.ar/go/spf"

	"postie/envelope"
)

// SPFResult is the SPF verdict (RFC 7208) for the MAIL FROM identity, or
// for the HELO identity when MAIL FROM is <>.
type SPFResult struct {
	Result Result
	// Domain is the domain checked; DMARC aligns it with From:.
	Domain string
	// MailFrom is the reverse-path checked, "" when it was <> and the
	// HELO name was checked instead (then Helo says which).
	MailFrom string
	Helo     string
	Reason   string // for temperror and permerror: what went wrong
}

// SPF checks whether ip may send mail for mailFrom's domain (for helo
// when mailFrom is "", RFC 7208 §2.4), with the RFC's limits of 10 DNS
// lookups and 2 void lookups. It can be started at MAIL FROM, while the
// rest of the transaction goes on, and its result handed to Check.
func (c *Checker) SPF(ctx context.Context, ip netip.Addr, helo, mailFrom string) SPFResult {
	res := SPFResult{Result: None, MailFrom: mailFrom, Helo: helo}
	sender := mailFrom
	if mailFrom == "" {
		sender = "postmaster@" + helo
	}
	local, domain := envelope.Split(sender)
	d, ok := dnsDomain(domain)
	if !ok || local == "" {
		// RFC 7208 §4.3: a malformed domain is "none".
		res.Domain = domain
		return res
	}
	res.Domain = d
	r, err := spf.CheckHostWithSender(net.IP(ip.Unmap().AsSlice()), helo, local+"@"+d,
		spf.WithContext(ctx), spf.WithResolver(c.r))
	res.Result = Result(r)
	switch {
	case err != nil && r == spf.TempError:
		res.Reason = dnsTempReason
	case err != nil && r == spf.PermError:
		res.Reason = err.Error() // about the sender's record
	}
	return res
}

// dnsTempReason stands in a stored header for a resolver's error, which
// names our DNS server's address: nobody's business outside.
const dnsTempReason = "DNS lookup failed"
