package inbound

import (
	"context"
	"strings"

	"github.com/emersion/go-msgauth/dmarc"
	"golang.org/x/net/publicsuffix"

	"postie/internal/dnsutil"
)

// Policy is a DMARC policy (RFC 7489 §6.3 p= and sp=).
type Policy string

// Policies; "" means no record was found.
const (
	PolicyNone       Policy = "none"
	PolicyQuarantine Policy = "quarantine"
	PolicyReject     Policy = "reject"
)

// DMARCResult is the DMARC verdict (RFC 7489) for the RFC5322.From domain.
type DMARCResult struct {
	// Result: pass (an aligned SPF or DKIM pass, with a record), fail
	// (a record and no aligned pass, or not exactly one From: domain),
	// none (no record), temperror (the record, or an aligned check, hit
	// a temporary DNS error), permerror (the record is malformed).
	Result Result
	// From is the From: domain; "" when the message has none or several.
	From string
	// Policy is what the domain asks: p=, or sp= when the record was found
	// at the organisational domain of a subdomain; "" without a record.
	// For zero or several From: domains it is the strictest policy among
	// them.
	Policy Policy
	// Applied is Policy after pct sampling (RFC 7489 §6.6.4): a message
	// left out of the sample gets the next milder policy.
	Applied Policy
	// SPFAligned and DKIMAligned say which identifier passed in alignment
	// with From (relaxed unless the record asks strict), computed even
	// without a record.
	SPFAligned, DKIMAligned bool
	Reason                  string // why it did not pass

	tempAligned bool // an aligned check hit a temporary error
	domains     []string
}

// policyRecord is the outcome of DMARC policy discovery.
type policyRecord struct {
	rec    *dmarc.Record // nil without one
	at     string        // the domain whose _dmarc record it is
	result Result        // "" found, none, temperror, permerror
	reason string
}

// dmarc evaluates DMARC for the message's From: domains.
func (c *Checker) dmarc(ctx context.Context, fi fromInfo, spfRes SPFResult, dkims []DKIMResult) DMARCResult {
	if fi.domain == "" {
		return c.dmarcMalformed(ctx, fi)
	}
	d := fi.domain
	res := DMARCResult{From: d, domains: []string{d}}
	pr := c.discover(ctx, d)
	spfMode, dkimMode := dmarc.AlignmentMode(dmarc.AlignmentRelaxed), dmarc.AlignmentMode(dmarc.AlignmentRelaxed)
	if pr.rec != nil {
		spfMode, dkimMode = pr.rec.SPFAlignment, pr.rec.DKIMAlignment
	}
	if aligned(spfRes.Domain, d, spfMode) {
		res.SPFAligned = spfRes.Result == Pass
		res.tempAligned = spfRes.Result == TempError
	}
	for _, k := range dkims {
		if aligned(k.Domain, d, dkimMode) {
			res.DKIMAligned = res.DKIMAligned || k.Result == Pass
			res.tempAligned = res.tempAligned || k.Result == TempError
		}
	}
	if pr.result != "" {
		res.Result, res.Reason = pr.result, pr.reason
		return res
	}
	res.Policy = Policy(pr.rec.Policy)
	if pr.at != d && pr.rec.SubdomainPolicy != "" {
		res.Policy = Policy(pr.rec.SubdomainPolicy)
	}
	res.Applied = res.Policy
	switch {
	case res.SPFAligned || res.DKIMAligned:
		res.Result = Pass
	case res.tempAligned:
		res.Result, res.Reason = TempError, "aligned check temporarily failed"
	default:
		res.Result, res.Reason = Fail, "no aligned SPF or DKIM pass"
		if pct := pr.rec.Percent; pct != nil && *pct < 100 && c.o.Percent() >= *pct {
			res.Applied = milder(res.Policy)
		}
	}
	return res
}

// dmarcMalformed is the verdict for zero or several From: domains: fail,
// under the strictest policy any of them asks.
func (c *Checker) dmarcMalformed(ctx context.Context, fi fromInfo) DMARCResult {
	res := DMARCResult{Result: Fail, Reason: fi.problem, domains: fi.domains}
	for _, d := range fi.domains {
		if pr := c.discover(ctx, d); pr.rec != nil {
			p := Policy(pr.rec.Policy)
			if pr.at != d && pr.rec.SubdomainPolicy != "" {
				p = Policy(pr.rec.SubdomainPolicy)
			}
			if strictness(p) > strictness(res.Policy) {
				res.Policy = p
			}
		}
	}
	res.Applied = res.Policy
	return res
}

// discover finds the DMARC record for d (RFC 7489 §6.6.3): at _dmarc.d,
// else at _dmarc of d's organisational domain.
func (c *Checker) discover(ctx context.Context, d string) policyRecord {
	pr := c.lookupRecord(ctx, d)
	if pr.result == None && pr.reason == "" { // several records end discovery
		if org := orgDomain(d); org != d {
			pr = c.lookupRecord(ctx, org)
		}
	}
	return pr
}

// lookupRecord fetches and parses the record at _dmarc.d. Several
// records, like none, mean no DMARC (§6.6.3 step 3).
func (c *Checker) lookupRecord(ctx context.Context, d string) policyRecord {
	txts, err := c.r.LookupTXT(ctx, "_dmarc."+d)
	if err != nil {
		if dnsutil.NotFound(err) {
			return policyRecord{result: None}
		}
		return policyRecord{result: TempError, reason: dnsTempReason}
	}
	var recs []string
	for _, t := range txts {
		if isDMARCRecord(t) {
			recs = append(recs, t)
		}
	}
	switch len(recs) {
	case 0:
		return policyRecord{result: None}
	case 1:
	default:
		return policyRecord{result: None, reason: "several DMARC records"}
	}
	rec, err := dmarc.Parse(recs[0])
	if err != nil {
		return policyRecord{result: PermError, reason: strings.TrimPrefix(err.Error(), "dmarc: ")}
	}
	return policyRecord{rec: rec, at: d}
}

// isDMARCRecord reports whether a TXT string starts with the tag
// "v=DMARC1" (RFC 7489 §6.4), other TXT strings being ignored.
func isDMARCRecord(t string) bool {
	first, _, _ := strings.Cut(t, ";")
	name, val, ok := strings.Cut(first, "=")
	return ok && strings.TrimSpace(name) == "v" && strings.TrimSpace(val) == "DMARC1"
}

// aligned reports whether identifier domain a is aligned with From domain
// b (RFC 7489 §3.1): equal in strict mode, the same organisational domain
// in relaxed mode.
func aligned(a, b string, mode dmarc.AlignmentMode) bool {
	a, b = strings.ToLower(strings.TrimSuffix(a, ".")), strings.ToLower(strings.TrimSuffix(b, "."))
	if a == "" || b == "" {
		return false
	}
	if mode == dmarc.AlignmentStrict {
		return a == b
	}
	return orgDomain(a) == orgDomain(b)
}

// orgDomain is d's organisational domain (RFC 7489 §3.2): one label
// below its public suffix; d itself if it is a public suffix.
func orgDomain(d string) string {
	org, err := publicsuffix.EffectiveTLDPlusOne(d)
	if err != nil {
		return d
	}
	return org
}

func milder(p Policy) Policy {
	switch p {
	case PolicyReject:
		return PolicyQuarantine
	case PolicyQuarantine:
		return PolicyNone
	}
	return p
}

func strictness(p Policy) int {
	switch p {
	case PolicyNone:
		return 1
	case PolicyQuarantine:
		return 2
	case PolicyReject:
		return 3
	}
	return 0
}
