package mtasts

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"

	"postie/tlsrpt"
)

// Error is a failure to obtain a domain's policy, with its TLS-RPT result
// type (sts-policy-fetch-error, sts-policy-invalid, sts-webpki-invalid).
type Error struct {
	Domain string
	Type   tlsrpt.ResultType
	Err    error
}

func (e *Error) Error() string {
	return fmt.Sprintf("mta-sts: policy of %s: %s: %v", e.Domain, e.Type, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// newHTTPClient builds the client that fetches policies: it resolves
// mta-sts.<domain> through the Client's resolver, dials its port, verifies
// the certificate against roots (nil: the system's), follows no redirect
// (section 3.3) and uses no proxy from the environment.
func (c *Client) newHTTPClient() *http.Client {
	tr := &http.Transport{
		Proxy:                  nil,
		DialContext:            c.dialPolicyHost,
		TLSClientConfig:        &tls.Config{RootCAs: c.opts.RootCAs, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:    c.opts.Timeout,
		ResponseHeaderTimeout:  c.opts.Timeout,
		DisableKeepAlives:      true,
		MaxResponseHeaderBytes: 16 << 10,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   c.opts.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// dialPolicyHost connects to the policy host's port (443 unless a test
// says otherwise), trying its addresses in turn.
func (c *Client) dialPolicyHost(ctx context.Context, network, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	addrs, err := c.opts.Resolver.LookupIPAddr(ctx, host)
	if err != nil {
		return nil, err
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("%s has no address", host)
	}
	var lastErr error
	for i, a := range addrs {
		if i == 4 {
			break
		}
		conn, err := c.opts.Dial(ctx, "tcp", net.JoinHostPort(a.IP.String(), strconv.Itoa(c.opts.Port)))
		if err == nil {
			return conn, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

// fetch gets and parses the policy of domain from
// https://mta-sts.<domain>/.well-known/mta-sts.txt (RFC 8461 section 3.3).
func (c *Client) fetch(ctx context.Context, domain string) (*Policy, error) {
	url := "https://mta-sts." + domain + "/.well-known/mta-sts.txt"
	fail := func(t tlsrpt.ResultType, err error) (*Policy, error) {
		return nil, &Error{Domain: domain, Type: t, Err: err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fail(tlsrpt.STSPolicyFetchError, err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if isCertError(err) {
			return fail(tlsrpt.STSWebPKIInvalid, err)
		}
		return fail(tlsrpt.STSPolicyFetchError, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fail(tlsrpt.STSPolicyFetchError, fmt.Errorf("GET %s: HTTP status %s (redirects are not followed)", url, resp.Status))
	}
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "text/plain" {
			return fail(tlsrpt.STSPolicyInvalid, fmt.Errorf("GET %s: content type %q, want text/plain", url, clip(ct)))
		}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxPolicySize+1))
	if err != nil {
		return fail(tlsrpt.STSPolicyFetchError, fmt.Errorf("GET %s: %w", url, err))
	}
	if len(body) > MaxPolicySize {
		return fail(tlsrpt.STSPolicyInvalid, fmt.Errorf("GET %s: policy over %d bytes", url, MaxPolicySize))
	}
	p, err := Parse(string(body))
	if err != nil {
		return fail(tlsrpt.STSPolicyInvalid, err)
	}
	return p, nil
}

func isCertError(err error) bool {
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	return errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci) ||
		strings.Contains(err.Error(), "x509: ")
}
