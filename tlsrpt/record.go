package tlsrpt

import (
	"errors"
	"net/url"
	"strings"

	"postie/envelope"
)

// Destinations are where a domain wants its reports: the rua of its
// _smtp._tls TXT record (RFC 8460 §3).
type Destinations struct {
	Mailto []string // addresses
	HTTPS  []string // URLs, POSTed to
}

// errNoRecord: the domain has no (single, valid) TLSRPT record, so it
// gets no report.
var errNoRecord = errors.New("no TLSRPT record")

// maxRUA bounds the destinations taken from one record.
const maxRUA = 10

// parseRecords picks the domain's TLSRPT record out of its _smtp._tls TXT
// records and returns its rua. Records not starting with "v=TLSRPTv1" are
// ignored; if not exactly one is left, or it has no usable rua, the
// domain does not take reports (errNoRecord).
func parseRecords(txts []string) (Destinations, error) {
	var rec string
	n := 0
	for _, t := range txts {
		// tlsrpt-version, then field-delim = *WSP ";" *WSP (RFC 8460 §3).
		if rest, ok := strings.CutPrefix(t, "v=TLSRPTv1"); ok && (rest == "" || strings.HasPrefix(strings.TrimLeft(rest, " \t"), ";")) {
			rec, n = t, n+1
		}
	}
	if n != 1 {
		return Destinations{}, errNoRecord
	}
	var d Destinations
	for _, field := range strings.Split(rec, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(field), "=")
		if !ok || strings.TrimSpace(k) != "rua" {
			continue
		}
		for _, u := range strings.Split(v, ",") {
			if len(d.Mailto)+len(d.HTTPS) == maxRUA {
				break
			}
			addDestination(&d, strings.TrimSpace(u))
		}
	}
	if len(d.Mailto) == 0 && len(d.HTTPS) == 0 {
		return Destinations{}, errNoRecord
	}
	return d, nil
}

// addDestination adds one rua URI, if it is a usable mailto: or https:.
func addDestination(d *Destinations, raw string) {
	u, err := url.Parse(raw)
	if err != nil {
		return
	}
	switch strings.ToLower(u.Scheme) {
	case "mailto":
		addr := u.Opaque
		if addr == "" {
			return
		}
		if a, err := url.PathUnescape(addr); err == nil {
			addr = a
		}
		if envelope.ValidateSender(addr) == nil {
			d.Mailto = append(d.Mailto, addr)
		}
	case "https":
		if u.Host != "" && u.User == nil {
			d.HTTPS = append(d.HTTPS, u.String())
		}
	}
}
