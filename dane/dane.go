// Package dane implements the sending side of SMTP security via
// opportunistic DANE TLS (RFC 7672): TLSA lookups of _25._tcp.<mx> with
// the DNSSEC OK bit through a validating resolver, trusting an answer only
// when the resolver set the AD (authenticated data) bit, and verification
// of a server's certificate chain against the usable records.
//
// Usable records are DANE-TA(2) and DANE-EE(3) with selector Cert(0) or
// SPKI(1) and matching type Full(0), SHA2-256(1) or SHA2-512(2). The PKIX
// usages 0 and 1 are unusable for SMTP (RFC 7672 section 3.1.3), as are
// unknown parameters. DANE-EE matches the server's own certificate and
// ignores its names and dates (section 3.1.1); DANE-TA matches a trust
// anchor the server sends in its chain, and the chain must then validate
// from it with the MX host name (section 3.1.2, 3.2).
//
// What DANE means for a delivery (it applies only over a secure MX lookup;
// a mismatch defers; it wins over MTA-STS) is package outbound's
// business.
package dane

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Certificate usages, selectors and matching types (RFC 6698, RFC 7218).
const (
	UsagePKIXTA = 0
	UsagePKIXEE = 1
	UsageDANETA = 2
	UsageDANEEE = 3

	SelectorCert = 0
	SelectorSPKI = 1

	MatchFull   = 0
	MatchSHA256 = 1
	MatchSHA512 = 2
)

// Record is one TLSA record.
type Record struct {
	Usage, Selector, MatchingType uint8
	Data                          []byte
}

// String is the record's presentation form, "3 1 1 ab12...", as TLS-RPT
// reports show it.
func (r Record) String() string {
	return fmt.Sprintf("%d %d %d %s", r.Usage, r.Selector, r.MatchingType, hex.EncodeToString(r.Data))
}

// Usable reports whether SMTP can use the record (RFC 7672 section 3.1).
func (r Record) Usable() bool {
	if r.Usage != UsageDANETA && r.Usage != UsageDANEEE {
		return false
	}
	if r.Selector != SelectorCert && r.Selector != SelectorSPKI {
		return false
	}
	switch r.MatchingType {
	case MatchFull:
		return len(r.Data) > 0
	case MatchSHA256:
		return len(r.Data) == sha256.Size
	case MatchSHA512:
		return len(r.Data) == sha512.Size
	}
	return false
}

// Usable returns the usable records among records.
func Usable(records []Record) []Record {
	var out []Record
	for _, r := range records {
		if r.Usable() {
			out = append(out, r)
		}
	}
	return out
}

// Matches reports whether cert matches r's selector, matching type and data.
func (r Record) Matches(cert *x509.Certificate) bool {
	var data []byte
	switch r.Selector {
	case SelectorCert:
		data = cert.Raw
	case SelectorSPKI:
		data = cert.RawSubjectPublicKeyInfo
	default:
		return false
	}
	switch r.MatchingType {
	case MatchFull:
	case MatchSHA256:
		sum := sha256.Sum256(data)
		data = sum[:]
	case MatchSHA512:
		sum := sha512.Sum512(data)
		data = sum[:]
	default:
		return false
	}
	return bytes.Equal(data, r.Data)
}

// ErrMismatch is wrapped by Verify's error when no record matches.
var ErrMismatch = errors.New("dane: no TLSA record matches the server's certificate")

// Verify checks the chain a server sent (leaf first) against the usable
// records among records, for the MX host name host, at time now. It
// returns nil when one record authenticates the server.
func Verify(records []Record, host string, chain []*x509.Certificate, now time.Time) error {
	if len(chain) == 0 {
		return fmt.Errorf("%w: no certificate", ErrMismatch)
	}
	host = strings.TrimSuffix(host, ".")
	var taErr error
	for _, r := range Usable(records) {
		switch r.Usage {
		case UsageDANEEE:
			if r.Matches(chain[0]) {
				return nil
			}
		case UsageDANETA:
			for i := 1; i < len(chain); i++ {
				if !r.Matches(chain[i]) {
					continue
				}
				if err := verifyFrom(chain, i, host, now); err != nil {
					taErr = err
					continue
				}
				return nil
			}
		}
	}
	if taErr != nil {
		return fmt.Errorf("%w: the trust anchor matches but the chain does not validate: %v", ErrMismatch, taErr)
	}
	return ErrMismatch
}

// verifyFrom validates chain[0] up to chain[ta] taken as the root, with a
// name check for host.
func verifyFrom(chain []*x509.Certificate, ta int, host string, now time.Time) error {
	roots := x509.NewCertPool()
	roots.AddCert(chain[ta])
	inter := x509.NewCertPool()
	for _, c := range chain[1:ta] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{
		DNSName: host, Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	return err
}
