package dnsrecords

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"postie/internal/dnsutil"
)

// Resolver is the part of *net.Resolver that Check uses.
type Resolver interface {
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
	LookupAddr(ctx context.Context, addr string) ([]string, error)
	LookupSRV(ctx context.Context, service, proto, name string) (string, []*net.SRV, error)
	LookupCNAME(ctx context.Context, host string) (string, error)
}

// Status is the outcome of checking one record.
type Status string

// The statuses Check gives.
const (
	OK      Status = "OK"
	Missing Status = "MISSING"
	Wrong   Status = "WRONG"
)

// Result is one checked record.
type Result struct {
	Record
	Status Status
	Found  string // what DNS gave, for WRONG (and OK)
	Want   string // what is wanted, in words or as the value
}

// Check asks r for every record of Want(o) and reports each. When o.IPs is
// empty, the host's A/AAAA is checked for existence and the PTR of each
// address found is checked.
func Check(ctx context.Context, r Resolver, o Options) []Result {
	var out []Result
	// Without known addresses, SPF's ip4:/ip6: mechanisms are held
	// against the host's addresses as DNS gives them (looked up once, for
	// them and for checkHostUnknownIPs).
	var hostIPs []netip.Addr
	var hostErr error
	if len(o.IPs) == 0 {
		hostIPs, hostErr = lookupIPs(ctx, r, o.Hostname)
	}
	for _, rec := range Want(o) {
		if rec.Domain == "" && len(o.IPs) == 0 {
			continue
		}
		if rec.Type == "TXT" && strings.HasPrefix(rec.Value, "v=spf1") && len(rec.ips) == 0 {
			rec.ips = hostIPs
		}
		out = append(out, checkOne(ctx, r, o, rec))
	}
	if len(o.IPs) == 0 {
		out = append(checkHostUnknownIPs(ctx, r, o.Hostname, hostIPs, hostErr), out...)
	}
	return out
}

// AllRequiredOK reports whether every required result is OK.
func AllRequiredOK(res []Result) bool {
	for _, r := range res {
		if r.Required && r.Status != OK {
			return false
		}
	}
	return true
}

func checkOne(ctx context.Context, r Resolver, o Options, rec Record) Result {
	res := Result{Record: rec, Want: rec.Value}
	var found string
	var err error
	var ok bool
	switch {
	case rec.Type == "MX":
		found, ok, err = checkMX(ctx, r, rec)
	case rec.Type == "A" || rec.Type == "AAAA":
		found, ok, err = checkAddr(ctx, r, rec)
	case rec.Type == "PTR":
		found, ok, err = checkPTR(ctx, r, rec.ip, rec.host)
		res.Want = rec.Value + " (and " + rec.host + " resolving back to " + rec.ip.String() + ")"
	case rec.Type == "SRV":
		found, ok, err = checkSRV(ctx, r, rec)
	case rec.Type == "CNAME":
		found, ok, err = checkAlias(ctx, r, rec)
		res.Want = "CNAME " + rec.Value + " (or the same addresses as " + rec.host + ")"
	case rec.Type == "TXT":
		var match func(string) bool
		match, res.Want = txtMatcher(o, rec)
		found, ok, err = checkTXT(ctx, r, rec.Name, match, txtKind(rec.Value))
	default:
		err = fmt.Errorf("cannot check type %s", rec.Type)
	}
	res.Found = found
	switch {
	case err != nil && dnsutil.NotFound(err):
		res.Status = Missing
	case err != nil:
		res.Status, res.Found = Wrong, "lookup failed: "+err.Error()
	case ok:
		res.Status = OK
	default:
		res.Status = Wrong
	}
	return res
}

// errNone is returned by the checks when the name has no record of the
// type, for a resolver that answers with an empty list instead of an error.
var errNone = &net.DNSError{Err: "no such record", IsNotFound: true}

func sameHost(a, b string) bool {
	return strings.EqualFold(strings.TrimSuffix(a, "."), strings.TrimSuffix(b, "."))
}

func checkMX(ctx context.Context, r Resolver, rec Record) (string, bool, error) {
	mxs, err := r.LookupMX(ctx, rec.Name)
	if err == nil && len(mxs) == 0 {
		err = errNone
	}
	if err != nil {
		return "", false, err
	}
	var found []string
	ok := false
	for _, mx := range mxs {
		found = append(found, fmt.Sprintf("%d %s", mx.Pref, fqdn(mx.Host)))
		ok = ok || sameHost(mx.Host, rec.host)
	}
	return strings.Join(found, ", "), ok, nil
}

func lookupIPs(ctx context.Context, r Resolver, host string) ([]netip.Addr, error) {
	ips, err := r.LookupNetIP(ctx, "ip", host)
	if err == nil && len(ips) == 0 {
		err = errNone
	}
	for i := range ips {
		ips[i] = ips[i].Unmap()
	}
	return ips, err
}

func joinIPs(ips []netip.Addr) string {
	s := make([]string, len(ips))
	for i, ip := range ips {
		s[i] = ip.String()
	}
	return strings.Join(s, ", ")
}

func checkAddr(ctx context.Context, r Resolver, rec Record) (string, bool, error) {
	ips, err := lookupIPs(ctx, r, rec.Name)
	if err != nil {
		return "", false, err
	}
	return joinIPs(ips), slices.Contains(ips, rec.ip.Unmap()), nil
}

// checkPTR wants host among the names of ip, and ip among the addresses of
// host (forward-confirmed reverse DNS).
func checkPTR(ctx context.Context, r Resolver, ip netip.Addr, host string) (string, bool, error) {
	names, err := r.LookupAddr(ctx, ip.String())
	if err == nil && len(names) == 0 {
		err = errNone
	}
	if err != nil {
		return "", false, err
	}
	found := strings.Join(names, ", ")
	if !slices.ContainsFunc(names, func(n string) bool { return sameHost(n, host) }) {
		return found, false, nil
	}
	ips, err := lookupIPs(ctx, r, host)
	if err != nil || !slices.Contains(ips, ip.Unmap()) {
		return found + " (but " + host + " does not resolve to " + ip.String() + ")", false, nil
	}
	return found, true, nil
}

// checkHostUnknownIPs checks the host's addresses as DNS gave them
// (lookupIPs's ips and err), and the PTR of each.
func checkHostUnknownIPs(ctx context.Context, r Resolver, host string, ips []netip.Addr, err error) []Result {
	rec := Record{Name: host, Type: "A", Value: "an address of " + host, Required: true}
	if err != nil {
		res := Result{Record: rec, Want: rec.Value, Status: Missing}
		if !dnsutil.NotFound(err) {
			res.Status, res.Found = Wrong, "lookup failed: "+err.Error()
		}
		return []Result{res}
	}
	out := []Result{{Record: rec, Want: rec.Value, Status: OK, Found: joinIPs(ips)}}
	for _, ip := range ips {
		p := Record{Name: reverseName(ip), Type: "PTR", Value: fqdn(host), Required: true, ip: ip, host: host}
		out = append(out, checkOne(ctx, r, Options{}, p))
	}
	return out
}

func checkSRV(ctx context.Context, r Resolver, rec Record) (string, bool, error) {
	_, srvs, err := r.LookupSRV(ctx, "", "", rec.Name)
	if err == nil && len(srvs) == 0 {
		err = errNone
	}
	if err != nil {
		return "", false, err
	}
	var found []string
	ok := false
	for _, s := range srvs {
		found = append(found, fmt.Sprintf("%d %d %d %s", s.Priority, s.Weight, s.Port, fqdn(s.Target)))
		if rec.host == "." {
			ok = ok || s.Target == "." || s.Target == ""
		} else {
			ok = ok || (sameHost(s.Target, rec.host) && s.Port == rec.port)
		}
	}
	return strings.Join(found, ", "), ok, nil
}

// checkAlias wants name to be a CNAME of the host, or to have the same
// addresses (an A record is as good).
func checkAlias(ctx context.Context, r Resolver, rec Record) (string, bool, error) {
	cname, err := r.LookupCNAME(ctx, rec.Name)
	if err != nil {
		return "", false, err
	}
	if sameHost(cname, rec.host) {
		return "CNAME " + fqdn(cname), true, nil
	}
	ips, err := lookupIPs(ctx, r, rec.Name)
	if err != nil {
		return "", false, err
	}
	hostIPs, _ := lookupIPs(ctx, r, rec.host)
	ok := len(ips) > 0 && !slices.ContainsFunc(ips, func(ip netip.Addr) bool { return !slices.Contains(hostIPs, ip) })
	found := joinIPs(ips)
	if !sameHost(cname, rec.Name) {
		found = "CNAME " + fqdn(cname) + " → " + found
	}
	return found, ok, nil
}

// checkTXT wants one of name's TXT records to match. When kind is set
// (see txtKind), more than one record of that kind is wrong whatever they
// say: receivers then ignore them all (SPF permerror, RFC 7208 section
// 4.5; DMARC, RFC 7489 section 6.6.3; MTA-STS, RFC 8461 section 3.1;
// TLS-RPT, RFC 8460 section 3).
func checkTXT(ctx context.Context, r Resolver, name string, match func(string) bool, kind string) (string, bool, error) {
	txts, err := r.LookupTXT(ctx, name)
	if err == nil && len(txts) == 0 {
		err = errNone
	}
	if err != nil {
		return "", false, err
	}
	if kind != "" {
		var same []string
		for _, t := range txts {
			if txtKind(t) == kind {
				same = append(same, t)
			}
		}
		if len(same) > 1 {
			return fmt.Sprintf("%d %s records, and receivers ignore them all when there is more than one: %s",
				len(same), kind, strings.Join(same, " | ")), false, nil
		}
	}
	for _, t := range txts {
		if match(t) {
			return t, true, nil
		}
	}
	return strings.Join(txts, " | "), false, nil
}

// txtKind names the kind of a TXT record that must be alone of its kind
// at its name: "v=spf1", "v=DMARC1", "v=STSv1" or "v=TLSRPTv1" (the
// version tag, which must come first); "" for any other text.
func txtKind(t string) string {
	if f := strings.Fields(t); len(f) > 0 && strings.EqualFold(f[0], "v=spf1") {
		return "v=spf1"
	}
	first, _, _ := strings.Cut(t, ";")
	k, v, ok := strings.Cut(first, "=")
	if !ok || strings.TrimSpace(k) != "v" {
		return ""
	}
	switch v = strings.TrimSpace(v); v {
	case "DMARC1", "STSv1", "TLSRPTv1":
		return "v=" + v
	}
	return ""
}

// txtMatcher returns how to recognise a right value of the TXT record rec,
// and what to say is wanted.
func txtMatcher(o Options, rec Record) (func(string) bool, string) {
	v := rec.Value
	switch {
	case strings.HasPrefix(v, "v=spf1"):
		return func(t string) bool { return spfCovers(t, o.Hostname, rec.ips) },
			v + " (a mechanism covering " + o.Hostname + ", ending in -all or ~all)"
	case strings.Contains(rec.Name, "._domainkey."):
		if rec.Placeholder {
			return func(string) bool { return false }, "the record of a key made by postie dkim keygen"
		}
		return func(t string) bool { return tagValue(t, "p") == rec.dkimKey }, v
	case strings.HasPrefix(v, "v=DMARC1"):
		return func(t string) bool { return txtKind(t) == "v=DMARC1" }, v + " (v=DMARC1 first, at least)"
	case strings.HasPrefix(v, "v=STSv1"):
		id := tagValue(v, "id")
		return func(t string) bool { return txtKind(t) == "v=STSv1" && tagValue(t, "id") == id }, v
	case strings.HasPrefix(v, "v=TLSRPTv1"):
		return func(t string) bool { return txtKind(t) == "v=TLSRPTv1" && tagValue(t, "rua") != "" },
			v + " (v=TLSRPTv1 with an rua)"
	}
	return func(t string) bool { return t == v }, v
}

// spfCovers reports whether the SPF record t has a mechanism covering the
// host (mx, a:host, or ip4:/ip6: naming one of ips) and ends in -all or
// ~all.
func spfCovers(t, host string, ips []netip.Addr) bool {
	terms := strings.Fields(strings.ToLower(t))
	if len(terms) < 2 || terms[0] != "v=spf1" {
		return false
	}
	if last := terms[len(terms)-1]; last != "-all" && last != "~all" {
		return false
	}
	for _, term := range terms[1 : len(terms)-1] {
		term = strings.TrimPrefix(term, "+")
		switch {
		case term == "mx", term == "a:"+strings.ToLower(strings.TrimSuffix(host, ".")):
			return true
		case strings.HasPrefix(term, "ip4:"), strings.HasPrefix(term, "ip6:"):
			if coversIP(term[4:], ips) {
				return true
			}
		}
	}
	return false
}

func coversIP(spec string, ips []netip.Addr) bool {
	pfx, err := netip.ParsePrefix(spec)
	if err != nil {
		a, err := netip.ParseAddr(spec)
		if err != nil {
			return false
		}
		pfx = netip.PrefixFrom(a, a.BitLen())
	}
	return slices.ContainsFunc(ips, pfx.Contains)
}
