package outbound

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"postie/dane"
	"postie/envelope"
	"postie/tlsrpt"
)

// dialStrict connects to an MX host whose policy (DANE, or MTA-STS in
// enforce mode) demands verified TLS: STARTTLS must be offered and the
// certificate must match the TLSA records or be valid for the MX name
// under the WebPKI (plus ca_file). Anything less defers the host with a
// 4.7.x error: it is never retried in plaintext.
func (c *Client) dialStrict(ctx context.Context, dp domainPolicy, hp hostPolicy, t target, ip net.IP) (*session, error) {
	addr := net.JoinHostPort(ip.String(), fmt.Sprint(t.port))
	label := t.label(ip)
	conn, err := c.dial(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("outbound: connect to %s: %w", label, err)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	res := &tlsResult{}
	sc, noTLS, err := c.startTLS(conn, label, c.strictTLS(t.name, hp, res))
	if err != nil {
		return nil, err
	}
	if noTLS != nil {
		c.reportSession(dp, hp, t, ip, conn, tlsrpt.StartTLSNotSupported, noTLS.Error())
		c.log.Warn("outbound: STARTTLS required but not available; not delivering in plaintext",
			"domain", dp.domain, "host", label, "policy", hp.name(), "err", noTLS)
		return nil, envelope.Errorf(451, 4, 7, 4, "%s did not do STARTTLS (%s), which %s requires; not delivering in plaintext",
			label, oneLine(noTLS.Error()), hp.describe(dp.domain))
	}
	s, err := c.newSession(sc, conn, addr, label)
	if err != nil {
		verr := res.err()
		if verr == nil && (res.done() || isTimeout(err)) {
			return nil, hostError(label, "EHLO", err)
		}
		typ := tlsrpt.ValidationFailure
		if verr != nil {
			typ, err = classify(verr), verr
		}
		c.reportSession(dp, hp, t, ip, conn, typ, err.Error())
		c.log.Warn("outbound: TLS does not satisfy the policy; not delivering", "domain", dp.domain, "host", label,
			"policy", hp.name(), "err", err)
		return nil, envelope.Errorf(451, 4, 7, 5, "TLS with %s does not satisfy %s: %s", label, hp.describe(dp.domain), oneLine(err.Error()))
	}
	s.tls = describeTLS(sc, res)
	s.verified = hp.kind != daneEncrypt
	if !s.verified {
		s.tls = strings.TrimSuffix(s.tls, " verified") + " unverified: no usable TLSA record"
	}
	c.reportSession(dp, hp, t, ip, conn, tlsrpt.Success, "")
	c.log.Debug("outbound: connected", "host", label, "tls", s.tls, "policy", hp.name())
	return s, nil
}

// strictTLS verifies the server by hp: the TLSA records for DANE (RFC 7672
// section 3), else the WebPKI with the MX name (RFC 8461 section 4.2).
func (c *Client) strictTLS(name string, hp hostPolicy, res *tlsResult) *tls.Config {
	return &tls.Config{
		ServerName:         name, // SNI, as RFC 7672 section 8.1 asks
		InsecureSkipVerify: true, // verified below, by the policy's rules
		MinVersion:         tls.VersionTLS12,
		VerifyConnection: func(cs tls.ConnectionState) error {
			var err error
			switch hp.kind {
			case daneVerified:
				err = dane.Verify(hp.tlsa, name, cs.PeerCertificates, time.Now())
			case daneEncrypt: // encryption only
			default:
				err = verifyPeer(cs, name, c.opts.RootCAs)
			}
			res.set(err)
			return err
		},
	}
}

// classify maps a certificate verification failure to its TLS-RPT type.
func classify(err error) tlsrpt.ResultType {
	var he x509.HostnameError
	var ce x509.CertificateInvalidError
	var ua x509.UnknownAuthorityError
	switch {
	case errors.As(err, &he):
		return tlsrpt.CertificateHostMismatch
	case errors.As(err, &ce) && ce.Reason == x509.Expired:
		return tlsrpt.CertificateExpired
	case errors.As(err, &ua):
		return tlsrpt.CertificateNotTrusted
	}
	return tlsrpt.ValidationFailure
}

// name is the policy's name for logs.
func (hp hostPolicy) name() string {
	switch hp.kind {
	case stsTesting:
		return "mta-sts testing"
	case stsEnforce:
		return "mta-sts enforce"
	case daneVerified:
		return "dane"
	case daneEncrypt:
		return "dane (no usable TLSA record: encryption only)"
	}
	return "opportunistic"
}

// describe names the policy in error messages, which reach DSNs.
func (hp hostPolicy) describe(domain string) string {
	switch hp.kind {
	case daneVerified:
		return "the DANE TLSA records of this MX host"
	case daneEncrypt:
		return "the DANE TLSA records of this MX host (unusable, but they demand TLS)"
	case stsEnforce, stsTesting:
		return "the MTA-STS policy of " + domain
	}
	return "our policy"
}

// reportOpportunistic reports a session set up without a strict policy:
// in MTA-STS testing mode, what enforce mode would have said.
func (c *Client) reportOpportunistic(dp domainPolicy, hp hostPolicy, t target, ip net.IP, conn net.Conn, verifyErr error) {
	switch {
	case hp.kind == stsTesting && !hp.match:
		c.reportSession(dp, hp, t, ip, conn, tlsrpt.ValidationFailure, "MX host not in the MTA-STS policy")
	case verifyErr != nil && hp.kind == stsTesting:
		c.log.Info("outbound: certificate fails the MTA-STS policy (testing mode: delivering anyway)",
			"domain", dp.domain, "host", t.name, "err", verifyErr)
		c.reportSession(dp, hp, t, ip, conn, classify(verifyErr), verifyErr.Error())
	case verifyErr != nil:
		c.reportSession(dp, hp, t, ip, conn, classify(verifyErr), verifyErr.Error())
	default:
		c.reportSession(dp, hp, t, ip, conn, tlsrpt.Success, "")
	}
}

// reportSession reports one TLS attempt with one MX address.
func (c *Client) reportSession(dp domainPolicy, hp hostPolicy, t target, ip net.IP, conn net.Conn, typ tlsrpt.ResultType, detail string) {
	if c.opts.TLSReports == nil {
		return
	}
	r := tlsrpt.Result{PolicyDomain: dp.domain, PolicyType: hp.policyType(), PolicyStrings: hp.strings,
		MXHost: t.name, Type: typ, Detail: detail}
	if a, ok := conn.LocalAddr().(*net.TCPAddr); ok {
		r.SendingIP = a.IP.String()
	}
	if ip != nil {
		r.ReceivingIP = ip.String()
	}
	c.report(r)
}
