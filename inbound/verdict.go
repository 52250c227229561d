package inbound

import (
	"strings"

	"github.com/emersion/go-msgauth/authres"

	"postie/envelope"
	"postie/internal/textsafe"
)

// decide sets v's Action, Reply and Reason from its results; see the
// package comment for the rules.
func (c *Checker) decide(v *Verdict) {
	d := v.DMARC
	authenticated := d.SPFAligned || d.DKIMAligned
	if own := c.ownDomain(d.domains); own != "" && !authenticated && !c.o.AllowUnalignedOwnDomain {
		if d.tempAligned {
			c.deferTemp(v, "own domain temperror")
			return
		}
		v.Action, v.Reason = Reject, "own domain unauthenticated"
		v.Reply = envelope.Errorf(550, 5, 7, 1,
			"message refused: From: %s is our domain and the message does not pass DMARC alignment", sanitize(own))
		return
	}
	switch {
	case d.Result == TempError && d.Policy == PolicyReject:
		// A refusal would follow but a check could not finish: RFC 7489
		// §6.6.2 leaves temporary failures to the receiver; a retry loses
		// nothing.
		c.deferTemp(v, "dmarc temperror")
	case d.Result == Fail && d.Applied == PolicyReject:
		v.Action, v.Reason = Reject, "dmarc reject"
		dom := d.From
		if dom == "" {
			dom = "the From: domain"
		}
		v.Reply = envelope.Errorf(550, 5, 7, 1,
			"message refused: DMARC policy of %s is reject and the message is not authenticated", sanitize(dom))
	case d.Result == Fail && d.Applied == PolicyQuarantine:
		v.Action, v.Reason = Junk, "dmarc quarantine"
	case d.Result == Fail && d.From == "":
		// Zero or several From: domains and no stricter policy.
		v.Action, v.Reason = Junk, "dmarc fail"
	case v.SPF.Result == Fail && d.Result != Pass && strictness(d.Policy) <= strictness(PolicyNone):
		v.Action, v.Reason = Junk, "spf fail"
	}
}

func (c *Checker) deferTemp(v *Verdict, reason string) {
	v.Action, v.Reason = Defer, reason
	v.Reply = envelope.Errorf(451, 4, 4, 3, "sender authentication temporarily failed, try again later")
}

// ownDomain returns the first of domains that is ours, or "".
func (c *Checker) ownDomain(domains []string) string {
	for _, d := range domains {
		if c.isOwn(d) {
			return d
		}
	}
	return ""
}

// formatAuthResults builds the Authentication-Results value (RFC 8601)
// with go-msgauth/authres, one method per folded line.
func (c *Checker) formatAuthResults(v *Verdict) string {
	var results []authres.Result
	spfRes := &authres.SPFResult{Value: authres.ResultValue(v.SPF.Result), Reason: sanitize(v.SPF.Reason)}
	if v.SPF.MailFrom != "" {
		spfRes.From = sanitize(v.SPF.MailFrom)
	} else {
		spfRes.Helo = sanitize(v.SPF.Helo)
	}
	results = append(results, spfRes)
	if len(v.DKIM) == 0 {
		results = append(results, &authres.DKIMResult{Value: authres.ResultNone})
	}
	prefixes := bPrefixes(v.DKIM)
	for i, k := range v.DKIM {
		params := map[string]string{
			"reason":   sanitize(k.Reason),
			"header.d": sanitize(k.Domain),
			"header.s": sanitize(k.Selector),
		}
		if len(v.DKIM) > 1 {
			params["header.b"] = sanitize(prefixes[i])
		}
		results = append(results, &authres.GenericResult{Method: "dkim", Value: authres.ResultValue(k.Result), Params: params})
	}
	results = append(results, &authres.DMARCResult{
		Value: authres.ResultValue(v.DMARC.Result), Reason: sanitize(v.DMARC.Reason), From: sanitize(v.DMARC.From),
	})
	id := sanitize(c.host)
	parts := []string{id}
	for _, r := range results {
		s := authres.Format(id, []authres.Result{r})
		parts = append(parts, strings.TrimSpace(strings.TrimPrefix(s, id+"; ")))
	}
	return strings.Join(parts, ";\r\n\t")
}

// bPrefixes returns, for each signature, the shortest prefix of its b=
// of at least 8 characters that tells it from the others (RFC 6008 §4).
func bPrefixes(sigs []DKIMResult) []string {
	out := make([]string, len(sigs))
	for i, s := range sigs {
		n := min(8, len(s.B))
		for ; n < len(s.B); n++ {
			unique := true
			for j, o := range sigs {
				if j != i && o.B != s.B && strings.HasPrefix(o.B, s.B[:n]) {
					unique = false
					break
				}
			}
			if unique {
				break
			}
		}
		out[i] = s.B[:n]
	}
	return out
}

// sanitize keeps text that came from the network from breaking the
// header it goes into: control characters, quotes and backslashes become
// '?', and it is cut at 200 bytes.
func sanitize(s string) string { return textsafe.Clean(s, 200, `"\`) }
