package outbound

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/miekg/dns"
	"golang.org/x/net/idna"

	"postie/dane"
	"postie/envelope"
	"postie/mtasts"
	"postie/tlsrpt"
)

// STSPolicies finds a recipient domain's MTA-STS policy (RFC 8461):
// *mtasts.Client. Lookup returns nil when the domain has none; its error
// reports a failure to fetch one, possibly along with the cached policy
// that still applies.
type STSPolicies interface {
	Lookup(ctx context.Context, domain string) (*mtasts.Policy, error)
}

// DANEResolver asks a trusted validating resolver (RFC 7672):
// *dane.Resolver.
type DANEResolver interface {
	LookupTLSA(ctx context.Context, host string, port int) (dane.TLSA, error)
	Secure(ctx context.Context, name string, qtype uint16) (bool, error)
}

// TLSReporter receives the outcome of each attempt to set up TLS with an
// MX host, and of each failed MTA-STS policy fetch, for TLS reporting
// (RFC 8460). It is called on the delivery path: it must be quick and safe
// for concurrent use.
type TLSReporter interface {
	ReportTLS(r tlsrpt.Result)
}

// LoadRoots returns the system's root certificates plus those of the PEM
// file caFile ([outbound] ca_file); nil (the system's roots) when caFile
// is "".
func LoadRoots(caFile string) (*x509.CertPool, error) {
	if caFile == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("outbound: ca_file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("outbound: ca_file %s holds no PEM certificate", caFile)
	}
	return pool, nil
}

// policyKind is what the TLS with one MX host must satisfy.
type policyKind int

const (
	opportunistic policyKind = iota // RFC 7435: STARTTLS if offered, any certificate, else plaintext
	stsTesting                      // opportunistic, but failures of the policy are reported
	stsEnforce                      // STARTTLS with a WebPKI certificate for the MX name, else defer
	daneVerified                    // STARTTLS with a certificate matching the TLSA records, else defer
	// daneEncrypt: secure TLSA records, none usable (RFC 7672 section
	// 2.2; Postfix's "encrypt" level): STARTTLS required, certificate
	// not checked, else defer. Not verified: no REQUIRETLS.
	daneEncrypt
)

// domainPolicy is what applies to every MX host of one recipient domain.
type domainPolicy struct {
	domain     string
	sts        *mtasts.Policy // nil: no MTA-STS policy (mode none counts as none)
	secureMX   bool           // the MX answer was DNSSEC-validated: DANE may apply to its hosts
	requireTLS bool           // the message carries REQUIRETLS (RFC 8689)
	// unsure: a policy could not be looked up (MTA-STS fetch or DNSSEC
	// status failed), so its absence is not known for certain.
	unsure bool
	// relaxed: the message says "TLS-Required: No" (and not REQUIRETLS):
	// no policy was looked up, TLS is opportunistic (RFC 8689 section 5).
	relaxed bool
	// mxUnknown: the validating resolver could not say whether the MX
	// answer is secure (SERVFAIL, timeout), so whether DANE applies is
	// unknown: no host is tried (RFC 7672 section 2.1.1).
	mxUnknown error
}

// hostPolicy is what applies to one MX host.
type hostPolicy struct {
	kind    policyKind
	tlsa    []dane.Record // daneVerified: the usable records
	strings []string      // the policy as published, for reports
	match   bool          // the host matches the MTA-STS policy's patterns
}

// policyType is the TLS-RPT policy type of hp.
func (hp hostPolicy) policyType() tlsrpt.PolicyType {
	switch hp.kind {
	case stsTesting, stsEnforce:
		return tlsrpt.PolicySTS
	case daneVerified, daneEncrypt:
		return tlsrpt.PolicyTLSA
	}
	return tlsrpt.PolicyNoneFound
}

// strict reports whether hp allows only TLS (verified, but for
// daneEncrypt).
func (hp hostPolicy) strict() bool {
	return hp.kind == stsEnforce || hp.kind == daneVerified || hp.kind == daneEncrypt
}

// domainPolicy looks up the MTA-STS policy of domain and whether its MX
// answer is secure. Failures to fetch a policy are reported and logged,
// never fatal: RFC 8461 section 5.1 then delivers as without a policy
// (unless a cached one still applies).
func (c *Client) domainPolicy(ctx context.Context, d *delivery, domain string) domainPolicy {
	// Policies are published under the A-label form of the name (RFC 5890).
	if ascii, err := idna.Lookup.ToASCII(domain); err == nil {
		domain = ascii
	}
	dp := domainPolicy{domain: domain, requireTLS: d.t.Params.RequireTLS}
	if d.msg != nil && d.msg.tlsOptional && !dp.requireTLS {
		// RFC 8689 section 5: the sender asks that the recipient
		// domain's TLS policy (MTA-STS, DANE) not stop delivery; TLS is
		// still used when offered. REQUIRETLS overrides the field.
		c.log.Info("outbound: TLS-Required: No: the domain's TLS policy is not applied", "domain", domain)
		dp.relaxed = true
		return dp
	}
	if c.opts.STS != nil && !isLiteral(domain) {
		p, err := c.opts.STS.Lookup(ctx, domain)
		var se *mtasts.Error
		if errors.As(err, &se) {
			c.report(tlsrpt.Result{PolicyDomain: domain, PolicyType: tlsrpt.PolicySTS, Type: se.Type, Detail: err.Error()})
		}
		dp.unsure = err != nil && p == nil
		if p != nil && p.Mode != mtasts.ModeNone {
			dp.sts = p
		}
	}
	if c.opts.DANE != nil && !isLiteral(domain) {
		// RFC 7672 section 2.2.1: DANE applies to MX hosts found through a
		// secure MX answer (a secure denial for the implicit MX too).
		ok, err := c.opts.DANE.Secure(ctx, domain, dns.TypeMX)
		if err != nil {
			c.log.Info("outbound: DNSSEC status of MX unknown; deferring", "domain", domain, "err", err)
			dp.unsure = true
			dp.mxUnknown = err
		}
		dp.secureMX = ok
	}
	return dp
}

func isLiteral(domain string) bool { return len(domain) > 0 && domain[0] == '[' }

// hostPolicy decides what applies to MX host t: DANE when its TLSA
// records are secure and usable (DANE wins over MTA-STS, RFC 8461 section
// 2), else the MTA-STS policy (testing treated as enforce for a REQUIRETLS
// message, RFC 8689 section 4.2.1), else opportunistic TLS. An error
// means the host must not be tried: its DNSSEC status is unknown, it is
// not in an enforced MTA-STS policy, or a REQUIRETLS message has no policy
// to verify it by.
func (c *Client) hostPolicy(ctx context.Context, dp domainPolicy, t target) (hostPolicy, error) {
	if dp.mxUnknown != nil {
		// An attacker who can make the lookup fail must not turn DANE
		// off: the lookup failure is a temporary one, as for the MX
		// lookup itself.
		return hostPolicy{}, envelope.Errorf(451, 4, 4, 3, "cannot tell whether the MX records of %s are DNSSEC-signed (%s); retrying later",
			dp.domain, oneLine(dp.mxUnknown.Error()))
	}
	if dp.secureMX {
		hp, ok, err := c.daneHost(ctx, dp, t)
		if err == nil && ok && hp.kind == daneEncrypt && dp.requireTLS {
			return hp, requireTLSError("the TLSA records of %s are all unusable and %s has no MTA-STS policy, so TLS to it cannot be verified", t.name, dp.domain)
		}
		if err != nil || ok {
			return hp, err
		}
	}
	if p := dp.sts; p != nil {
		hp := hostPolicy{kind: stsTesting, strings: p.Lines(), match: p.Match(t.name)}
		if p.Mode == mtasts.ModeEnforce || dp.requireTLS {
			hp.kind = stsEnforce
		}
		if !hp.match {
			r := tlsrpt.Result{PolicyDomain: dp.domain, PolicyType: tlsrpt.PolicySTS, PolicyStrings: hp.strings,
				MXHost: t.name, Type: tlsrpt.ValidationFailure, Detail: "MX host not in the MTA-STS policy"}
			c.report(r)
			if hp.kind == stsEnforce {
				return hp, envelope.Errorf(451, 4, 7, 5, "MX host %s of %s is not in its MTA-STS policy (mode %s, id %s); not delivering there",
					t.name, dp.domain, p.Mode, p.ID)
			}
			c.log.Info("outbound: MX host not in the MTA-STS policy (testing mode: delivering anyway)", "domain", dp.domain, "host", t.name)
		}
		return hp, nil
	}
	if dp.requireTLS && dp.unsure {
		return hostPolicy{}, envelope.Errorf(451, 4, 7, 30, "REQUIRETLS: the TLS policy of %s cannot be looked up now; retrying later", dp.domain)
	}
	if dp.requireTLS {
		return hostPolicy{}, requireTLSError("%s has neither an MTA-STS policy nor DNSSEC-validated TLSA records for %s, so TLS to it cannot be verified", dp.domain, t.name)
	}
	return hostPolicy{kind: opportunistic}, nil
}

// daneHost looks up the TLSA records of t when its addresses are secure
// too (RFC 7672 section 2.2.2). ok is false when DANE does not apply.
func (c *Client) daneHost(ctx context.Context, dp domainPolicy, t target) (hostPolicy, bool, error) {
	if net.ParseIP(t.name) != nil {
		return hostPolicy{}, false, nil
	}
	qtype := dns.TypeA
	if len(t.addrs) > 0 && t.addrs[0].To4() == nil {
		qtype = dns.TypeAAAA
	}
	ok, err := c.opts.DANE.Secure(ctx, t.name, qtype)
	if err != nil {
		// Under a secure MX, a host whose address security cannot be
		// told may have TLSA records: not tried (RFC 7672 section 2.2.2).
		return hostPolicy{}, false, envelope.Errorf(451, 4, 4, 3, "cannot tell whether the address of MX host %s is DNSSEC-signed (%s); retrying later",
			t.name, oneLine(err.Error()))
	}
	if !ok {
		return hostPolicy{}, false, nil
	}
	res, err := c.opts.DANE.LookupTLSA(ctx, t.name, t.port)
	if err != nil {
		// A secure host whose TLSA records cannot be read might have
		// them: delivering without would let an attacker who blocks the
		// lookup downgrade DANE (RFC 7672 section 2.2.3).
		return hostPolicy{}, false, envelope.Errorf(451, 4, 4, 3, "TLSA lookup for MX host %s failed (%s); retrying later", t.name, oneLine(err.Error()))
	}
	if !res.Secure {
		return hostPolicy{}, false, nil
	}
	usable := dane.Usable(res.Records)
	hp := hostPolicy{kind: daneVerified, tlsa: usable}
	for _, r := range res.Records {
		hp.strings = append(hp.strings, r.String())
	}
	switch {
	case len(res.Records) == 0:
		return hostPolicy{}, false, nil
	case len(usable) == 0 && dp.sts != nil && (dp.sts.Mode == mtasts.ModeEnforce || dp.requireTLS):
		return hostPolicy{}, false, nil // MTA-STS does better than encryption alone
	case len(usable) == 0:
		// Published but unusable (PKIX usages, unknown parameters): the
		// domain still asked for TLS, so plaintext is out.
		c.log.Info("outbound: TLSA records but none usable; TLS required, certificate not checked", "host", t.name)
		hp.kind = daneEncrypt
	}
	return hp, true, nil
}

// requireTLSError is the permanent failure of a REQUIRETLS message that
// cannot be sent as it asks (RFC 8689 section 5: 5.7.30).
func requireTLSError(format string, args ...any) *envelope.Error {
	e := envelope.Errorf(550, 5, 7, 30, format, args...)
	e.Message = "REQUIRETLS: " + e.Message
	return e
}

// report hands r to the TLSReporter, if any.
func (c *Client) report(r tlsrpt.Result) {
	if c.opts.TLSReports != nil {
		c.opts.TLSReports.ReportTLS(r)
	}
}
