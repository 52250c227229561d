package inbound

import (
	"context"
	"net/netip"
	"strings"

	"postie/internal/dnsutil"
)

// maxPTRNames bounds the PTR names tried, as RFC 7208 §5.5 does for "ptr".
const maxPTRNames = 10

// IPRev is the forward-confirmed reverse DNS of a client address
// (RFC 8601 §3 "iprev").
type IPRev struct {
	// Result: pass (Name resolves back to the address), fail (PTR names
	// exist but none resolves back), permerror (no PTR record),
	// temperror (a lookup failed temporarily and nothing confirmed).
	Result Result
	// Name is the confirmed name, lower case without the final dot; ""
	// unless Result is pass.
	Name string
}

// ReverseDNS looks up ip's PTR names and returns the first (of at most
// ten) whose A or AAAA records include ip.
func ReverseDNS(ctx context.Context, r Resolver, ip netip.Addr) IPRev {
	ip = ip.Unmap()
	names, err := r.LookupAddr(ctx, ip.String())
	if err != nil && len(names) == 0 {
		if dnsutil.NotFound(err) {
			return IPRev{Result: PermError}
		}
		return IPRev{Result: TempError}
	}
	network := "ip6"
	if ip.Is4() {
		network = "ip4"
	}
	res := IPRev{Result: Fail}
	for i, name := range names {
		if i == maxPTRNames {
			break
		}
		addrs, err := r.LookupNetIP(ctx, network, name)
		if err != nil && !dnsutil.NotFound(err) {
			res.Result = TempError
		}
		for _, a := range addrs {
			if a.Unmap() == ip {
				return IPRev{Result: Pass, Name: strings.ToLower(strings.TrimSuffix(name, "."))}
			}
		}
	}
	return res
}
