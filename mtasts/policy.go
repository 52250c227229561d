// Package mtasts implements the sending side of SMTP MTA Strict Transport
// Security (RFC 8461): it finds a recipient domain's policy (the
// _mta-sts TXT record, then the policy file over HTTPS with a verified
// certificate, bounded in size and time, never following redirects),
// caches it for its max_age in memory and on disk so that it survives
// restarts, refetches it when the record's id changes, and matches MX host
// names against its patterns.
//
// What a policy means for delivery (enforce: only matching MX hosts, only
// over TLS with a certificate valid for the MX name; testing: report only)
// is package outbound's business; this package only says which policy is
// in force.
package mtasts

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Mode is a policy's mode (RFC 8461 section 5).
type Mode string

// Policy modes.
const (
	ModeEnforce Mode = "enforce"
	ModeTesting Mode = "testing"
	ModeNone    Mode = "none"
)

// Limits from RFC 8461.
const (
	MaxMaxAge     = 31557600 * time.Second // section 3.2: max_age at most one year
	MaxPolicySize = 64 << 10               // section 3.3: policy bodies are bounded (64 KiB)
	maxIDLen      = 32                     // section 3.1: id is 1*32 alphanumeric
)

// Policy is a domain's MTA-STS policy.
type Policy struct {
	Mode   Mode
	MX     []string      // patterns: "mx.example.com" or "*.example.com"
	MaxAge time.Duration // how long the policy may be cached
	// ID is the id of the TXT record the policy was fetched under.
	ID string
	// Text is the policy file as fetched, for reports.
	Text string
}

// Parse parses a policy file (RFC 8461 section 3.2): "key: value" lines
// separated by LF or CRLF. version, mode and max_age are required, and at
// least one mx unless the mode is none; unknown keys are ignored; of a key
// other than mx given twice, the first counts.
func Parse(text string) (*Policy, error) {
	if len(text) > MaxPolicySize {
		return nil, fmt.Errorf("mta-sts: policy of %d bytes is over the %d byte limit", len(text), MaxPolicySize)
	}
	p := &Policy{Text: text}
	seen := map[string]bool{}
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSuffix(line, "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		key, value, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("mta-sts: policy line %q has no colon", clip(line))
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		if key != "mx" && seen[key] {
			continue
		}
		seen[key] = true
		if err := p.setField(key, value); err != nil {
			return nil, err
		}
	}
	switch {
	case !seen["version"]:
		return nil, errors.New("mta-sts: policy has no version")
	case !seen["mode"]:
		return nil, errors.New("mta-sts: policy has no mode")
	case !seen["max_age"]:
		return nil, errors.New("mta-sts: policy has no max_age")
	case len(p.MX) == 0 && p.Mode != ModeNone:
		return nil, errors.New("mta-sts: policy has no mx")
	}
	return p, nil
}

func (p *Policy) setField(key, value string) error {
	switch key {
	case "version":
		if value != "STSv1" {
			return fmt.Errorf("mta-sts: unknown policy version %q", clip(value))
		}
	case "mode":
		switch m := Mode(value); m {
		case ModeEnforce, ModeTesting, ModeNone:
			p.Mode = m
		default:
			return fmt.Errorf("mta-sts: unknown mode %q", clip(value))
		}
	case "max_age":
		if value == "" || len(value) > 10 || strings.Trim(value, "0123456789") != "" {
			return fmt.Errorf("mta-sts: bad max_age %q", clip(value))
		}
		n, _ := strconv.ParseInt(value, 10, 64)
		p.MaxAge = time.Duration(min(n, int64(MaxMaxAge/time.Second))) * time.Second
	case "mx":
		if !validPattern(value) {
			return fmt.Errorf("mta-sts: bad mx pattern %q", clip(value))
		}
		p.MX = append(p.MX, strings.ToLower(strings.TrimSuffix(value, ".")))
	}
	return nil
}

// validPattern checks an mx value: a host name, optionally with "*." in
// front of it (one wildcard label, leftmost only).
func validPattern(v string) bool {
	v = strings.TrimPrefix(strings.TrimSuffix(v, "."), "*.")
	if v == "" || len(v) > 253 {
		return false
	}
	for _, label := range strings.Split(v, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// Match reports whether the MX host name host is allowed by the policy
// (RFC 8461 section 4.1): equal to a pattern, or one label followed by
// the part after "*." of a wildcard pattern. Case and a final dot do not
// matter.
func (p *Policy) Match(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, pat := range p.MX {
		if rest, ok := strings.CutPrefix(pat, "*."); ok {
			label, parent, found := strings.Cut(host, ".")
			if found && label != "" && parent == rest {
				return true
			}
		} else if host == pat {
			return true
		}
	}
	return false
}

// Format is the text of a policy file as we serve ours: CRLF line ends,
// version, mode, one mx line per pattern, max_age in seconds.
func Format(mode Mode, mx []string, maxAge time.Duration) string {
	var b strings.Builder
	b.WriteString("version: STSv1\r\nmode: " + string(mode) + "\r\n")
	for _, m := range mx {
		b.WriteString("mx: " + m + "\r\n")
	}
	b.WriteString("max_age: " + strconv.FormatInt(int64(maxAge/time.Second), 10) + "\r\n")
	return b.String()
}

// Lines returns the policy's non-empty lines, as TLS-RPT's
// policy-string wants them (RFC 8460 section 4.4).
func (p *Policy) Lines() []string {
	var out []string
	for _, l := range strings.Split(p.Text, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// ParseRecord parses an _mta-sts TXT record (RFC 8461 section 3.1),
// "v=STSv1; id=20160831085700Z;", and returns its id. ok is false when
// the text is not an STSv1 record at all (other TXT records at the name
// are ignored); err is set when it is one but malformed.
func ParseRecord(txt string) (id string, ok bool, err error) {
	fields := strings.Split(txt, ";")
	first := strings.TrimSpace(fields[0])
	if first != "v=STSv1" {
		return "", false, nil
	}
	for _, f := range fields[1:] {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		k, v, found := strings.Cut(f, "=")
		if !found {
			return "", true, fmt.Errorf("mta-sts: bad record field %q", clip(f))
		}
		if k == "id" && id == "" {
			if v == "" || len(v) > maxIDLen || !isAlnum(v) {
				return "", true, fmt.Errorf("mta-sts: bad record id %q", clip(v))
			}
			id = v
		}
	}
	if id == "" {
		return "", true, errors.New("mta-sts: record has no id")
	}
	return id, true, nil
}

func isAlnum(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// clip shortens network input quoted in errors.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
