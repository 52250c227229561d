// Package dnsrecords lists the DNS records a Postie server needs for each of
// its domains, and checks them against what DNS actually answers.
//
// Want builds the records from Options (host name, domains, addresses, DKIM
// key, listener ports): MX, A/AAAA and PTR of the host name, SPF, DKIM,
// DMARC, MTA-STS (TXT and the mta-sts host), TLS-RPT, the client SRV
// records of RFC 6186 and RFC 8314, _autodiscover._tcp, and the autoconfig
// and autodiscover host names. A record whose value is not known (an
// address not given, a DKIM key not made yet) has Placeholder set and a
// Note saying what to do.
//
// Check asks a Resolver for each record and gives it one Status: OK,
// MISSING (no such record) or WRONG (something else is there, or the lookup
// failed). Values are compared by meaning, not text: SPF must hold a
// mechanism covering the host and end in -all or ~all, DKIM's p= must be
// the local key, DMARC needs v=DMARC1, MX needs the host name among the
// exchanges, PTR must name the host name and be forward-confirmed. Records
// with Required false (MTA-STS, TLS-RPT, SRV, autoconfig, autodiscover) are
// advisory: they help but mail flows without them.
package dnsrecords

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"

	"postie/dkim"
	"postie/mtasts"
)

// Record is one DNS record to publish.
type Record struct {
	Domain string // the mail domain it serves; "" for the host's own records
	Name   string // owner name, without the final dot
	Type   string // "MX", "A", "AAAA", "TXT", "CNAME", "SRV", "PTR"
	// Value in zone-file presentation form without quotes (TXT) and with
	// host names ending in a dot.
	Value string
	// Required records must be right for mail to flow and be accepted;
	// the others are advisory.
	Required bool
	// Placeholder: Value is not known; Note says how to learn it.
	Placeholder bool
	Note        string

	// what Check compares against
	dkimKey string       // TXT of a DKIM record: the wanted p=
	ip      netip.Addr   // A/AAAA/PTR: the address
	host    string       // MX, CNAME, SRV, PTR: the wanted target, no final dot
	port    uint16       // SRV
	ips     []netip.Addr // SPF: addresses an ip4:/ip6: mechanism may name
}

// Ports are the ports of the first listener of each client role; zero
// means the role has no listener.
type Ports struct {
	Submissions, Submission, IMAPS, IMAP, POP3S, POP3 uint16
	// Autodiscover is the HTTPS port of Outlook's autodiscover; zero
	// means 443.
	Autodiscover uint16
}

// STSPolicy is the MTA-STS policy (RFC 8461) served at
// https://mta-sts.DOMAIN/.well-known/mta-sts.txt.
type STSPolicy struct {
	Mode   string // "testing", "enforce" or "none"
	MaxAge int    // seconds
}

// DefaultSTSPolicy is a cautious start: testing mode reports failures
// without making senders refuse delivery; one week of caching.
var DefaultSTSPolicy = STSPolicy{Mode: "testing", MaxAge: 604800}

// Text is the policy file for mx, as served.
func (p STSPolicy) Text(mx string) string {
	return mtasts.Format(mtasts.Mode(p.Mode), []string{mx}, time.Duration(p.MaxAge)*time.Second)
}

// ID is the policy's id for the _mta-sts TXT record: a hash of Text, so it
// changes exactly when the policy does (RFC 8461 §3.1: 1 to 32
// alphanumerics).
func (p STSPolicy) ID(mx string) string {
	sum := sha256.Sum256([]byte(p.Text(mx)))
	return hex.EncodeToString(sum[:10])
}

// Options is what Want needs to know about the server.
type Options struct {
	Hostname string   // the MX host; lower case
	Domains  []string // mail domains
	// IPs are the server's public addresses; empty means unknown (the
	// A/AAAA and PTR records become placeholders, and Check takes the
	// addresses DNS gives for Hostname).
	IPs          []netip.Addr
	DKIMDir      string // where serve keeps the keys (config DKIMDir)
	DKIMSelector string
	Ports        Ports
	STS          STSPolicy // zero: DefaultSTSPolicy
}

// Want lists every record: first the host's (A/AAAA, PTR), then each
// domain's.
func Want(o Options) []Record {
	if o.STS == (STSPolicy{}) {
		o.STS = DefaultSTSPolicy
	}
	recs := hostRecords(o)
	for _, d := range o.Domains {
		recs = append(recs, domainRecords(o, d)...)
	}
	return recs
}

func fqdn(name string) string { return strings.TrimSuffix(name, ".") + "." }

func hostRecords(o Options) []Record {
	h := o.Hostname
	if len(o.IPs) == 0 {
		return []Record{
			{Name: h, Type: "A", Value: "<IPv4 address of " + h + ">", Required: true, Placeholder: true,
				Note: "the address must be filled in: run postie dns -ip ADDR (also an AAAA for IPv6)"},
			{Name: "<reverse name of the address>", Type: "PTR", Value: fqdn(h), Required: true, Placeholder: true, host: h,
				Note: "set by whoever owns the address (the hosting provider's panel)"},
		}
	}
	var recs []Record
	for _, ip := range o.IPs {
		typ := "A"
		if ip.Is6() {
			typ = "AAAA"
		}
		recs = append(recs, Record{Name: h, Type: typ, Value: ip.String(), Required: true, ip: ip})
	}
	for _, ip := range o.IPs {
		recs = append(recs, Record{Name: reverseName(ip), Type: "PTR", Value: fqdn(h), Required: true, ip: ip, host: h})
	}
	return recs
}

func domainRecords(o Options, d string) []Record {
	h := o.Hostname
	recs := []Record{
		{Name: d, Type: "MX", Value: "10 " + fqdn(h), Required: true, host: h},
		{Name: d, Type: "TXT", Value: "v=spf1 mx -all", Required: true, ips: o.IPs},
		dkimRecord(o, d),
		// p=quarantine rather than none: our mail is DKIM-signed and
		// SPF-aligned from the start, so forgeries can be sent to junk at
		// once, while a mistake in the setup still delivers (to junk)
		// instead of bouncing as p=reject would; reports go to
		// postmaster, which every domain should have.
		{Name: "_dmarc." + d, Type: "TXT", Value: "v=DMARC1; p=quarantine; rua=mailto:postmaster@" + d, Required: true},
		{Name: "_mta-sts." + d, Type: "TXT", Value: "v=STSv1; id=" + o.STS.ID(h)},
		{Name: "mta-sts." + d, Type: "CNAME", Value: fqdn(h), host: h},
		{Name: "_smtp._tls." + d, Type: "TXT", Value: "v=TLSRPTv1; rua=mailto:postmaster@" + d},
	}
	p := o.Ports
	for _, s := range []struct {
		svc  string
		port uint16
	}{
		{"_submissions._tcp.", p.Submissions}, {"_submission._tcp.", p.Submission},
		{"_imaps._tcp.", p.IMAPS}, {"_imap._tcp.", p.IMAP},
		{"_pop3s._tcp.", p.POP3S}, {"_pop3._tcp.", p.POP3},
		{"_autodiscover._tcp.", cmp.Or(p.Autodiscover, 443)},
	} {
		recs = append(recs, srvRecord(s.svc+d, h, s.port))
	}
	for _, n := range []string{"autoconfig.", "autodiscover."} {
		recs = append(recs, Record{Name: n + d, Type: "CNAME", Value: fqdn(h), host: h})
	}
	for i := range recs {
		recs[i].Domain = d
	}
	return recs
}

// srvRecord points name at host:port, or, with port 0, says the service
// is not offered (target ".", RFC 6186 §4).
func srvRecord(name, host string, port uint16) Record {
	if port == 0 {
		return Record{Name: name, Type: "SRV", Value: "0 0 0 .", host: ".", Note: "not offered"}
	}
	return Record{Name: name, Type: "SRV", Value: fmt.Sprintf("0 1 %d %s", port, fqdn(host)), host: host, port: port}
}

func dkimRecord(o Options, d string) Record {
	name, value, err := dkim.Record(o.DKIMDir, d, o.DKIMSelector)
	if err != nil {
		note := "no DKIM key yet: run postie dkim keygen " + d + " (or start postie serve, which makes one)"
		if !errors.Is(err, fs.ErrNotExist) {
			note = fmt.Sprintf("cannot read the DKIM key (%v): run postie dkim keygen %s (or start postie serve, which makes one)", err, d)
		}
		return Record{Name: o.DKIMSelector + "._domainkey." + d, Type: "TXT", Value: "<DKIM key record>",
			Required: true, Placeholder: true, Note: note}
	}
	return Record{Name: name, Type: "TXT", Value: value, Required: true, dkimKey: tagValue(value, "p")}
}

// reverseName is the in-addr.arpa or ip6.arpa name of ip, without the
// final dot.
func reverseName(ip netip.Addr) string {
	name, _ := dns.ReverseAddr(ip.Unmap().String()) // an Addr's own form always parses
	return strings.TrimSuffix(name, ".")
}

// tagValue returns the value of tag in a "k=v; k=v" record, "" if absent.
func tagValue(rec, tag string) string {
	for _, part := range strings.Split(rec, ";") {
		k, v, ok := strings.Cut(part, "=")
		if ok && strings.TrimSpace(k) == tag {
			return strings.Join(strings.Fields(v), "")
		}
	}
	return ""
}
