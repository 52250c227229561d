package inbound

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"strings"

	"golang.org/x/net/idna"

	"postie/envelope"
)

// maxHeader bounds the header section the checks read into memory; a
// longer one is cut at its last complete line before the bound.
const maxHeader = 1 << 20

var errHeaderTooLong = errors.New("header section longer than 1 MiB")

// ReadHeader returns msg's header section up to and including the blank
// line that ends it (the whole message if there is none), for
// StripForged: the body then starts at offset len(header). A header
// section over 1 MiB is cut at a line end and reported with an error.
func ReadHeader(msg io.ReaderAt, size int64) ([]byte, error) {
	n := min(size, 64<<10)
	for {
		buf := make([]byte, n)
		k, err := msg.ReadAt(buf, 0)
		if err != nil && !(errors.Is(err, io.EOF) && int64(k) == n) {
			return nil, fmt.Errorf("inbound: read header: %w", err)
		}
		if end := headerEnd(buf); end >= 0 {
			return buf[:end], nil
		}
		if n == size {
			return buf, nil
		}
		if n >= maxHeader {
			if i := bytes.LastIndexByte(buf, '\n'); i >= 0 {
				buf = buf[:i+1]
			}
			return buf, errHeaderTooLong
		}
		n = min(size, maxHeader)
	}
}

// headerEnd is the length of b's header section including the blank line
// that ends it, or -1 if b holds no blank line.
func headerEnd(b []byte) int {
	i := 0
	for {
		switch {
		case bytes.HasPrefix(b[i:], []byte("\r\n")):
			return i + 2
		case bytes.HasPrefix(b[i:], []byte("\n")):
			return i + 1
		}
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		i += j + 1
	}
}

// field is one header field: its name and its raw bytes, continuation
// lines and line ends included. A line that is not a field (no colon, or
// a continuation with nothing before it) is a field with an empty name.
type field struct {
	name string
	raw  []byte
}

// value is the field's body after the colon, unfolded (CR and LF removed).
func (f field) value() string {
	_, v, _ := bytes.Cut(f.raw, []byte(":"))
	v = bytes.ReplaceAll(v, []byte("\r"), nil)
	return string(bytes.ReplaceAll(v, []byte("\n"), nil))
}

// splitFields cuts a header section into fields, stopping at the blank
// line. Concatenating the fields' raw bytes gives back hdr up to there.
func splitFields(hdr []byte) []field {
	var fields []field
	for len(hdr) > 0 {
		end := bytes.IndexByte(hdr, '\n') + 1
		if end == 0 {
			end = len(hdr)
		}
		line := hdr[:end]
		if bytes.Equal(line, []byte("\r\n")) || bytes.Equal(line, []byte("\n")) {
			break
		}
		if (line[0] == ' ' || line[0] == '\t') && len(fields) > 0 {
			last := &fields[len(fields)-1]
			last.raw = last.raw[:len(last.raw)+len(line)] // contiguous in hdr
		} else {
			name := ""
			if n, _, ok := bytes.Cut(line, []byte(":")); ok {
				name = strings.TrimRight(string(n), " \t")
			}
			fields = append(fields, field{name: name, raw: line})
		}
		hdr = hdr[end:]
	}
	return fields
}

// StripForged returns header without the fields that would speak in our
// name: every Authentication-Results field whose authserv-id is authservID
// (compared case-insensitively, final dot ignored), as RFC 8601 §5 asks of
// a border MTA, and the spam verdict fields Postie writes itself
// (X-Spam-Flag, X-Spam-Score, X-Spam-Reason, X-Spamd-Result), so that
// nobody can forge our verdicts and fool the user's mail rules. header may
// be a header section or a whole message; only fields before the first
// blank line are considered, and every other byte, folding included, is
// kept. When nothing is removed header itself is returned.
func StripForged(header []byte, authservID string) []byte {
	fields := splitFields(header)
	var out []byte
	pos, kept := 0, 0
	for _, f := range fields {
		if isOurAuthResults(f, authservID) || isVerdictField(f) {
			if out == nil {
				out = make([]byte, 0, len(header))
			}
			out = append(out, header[kept:pos]...)
			kept = pos + len(f.raw)
		}
		pos += len(f.raw)
	}
	if out == nil {
		return header
	}
	return append(out, header[kept:]...)
}

// isVerdictField reports whether f is one of the spam verdict fields that
// Postie (and rspamd through it) writes on mail from outside.
func isVerdictField(f field) bool {
	switch strings.ToLower(f.name) {
	case "x-spam-flag", "x-spam-score", "x-spam-reason", "x-spamd-result":
		return true
	}
	return false
}

func isOurAuthResults(f field, authservID string) bool {
	if !strings.EqualFold(f.name, "Authentication-Results") {
		return false
	}
	id := authservIDOf(f.value())
	return id != "" && strings.EqualFold(strings.TrimSuffix(id, "."), strings.TrimSuffix(authservID, "."))
}

// authservIDOf parses the authserv-id that starts an Authentication-Results
// value (RFC 8601 §2.2): [CFWS] (token / quoted-string). It returns "" if
// there is none.
func authservIDOf(v string) string {
	v = skipCFWS(v)
	if strings.HasPrefix(v, `"`) {
		var b strings.Builder
		for i := 1; i < len(v); i++ {
			switch v[i] {
			case '\\':
				if i+1 < len(v) {
					i++
					b.WriteByte(v[i])
				}
			case '"':
				return b.String()
			default:
				b.WriteByte(v[i])
			}
		}
		return "" // unterminated
	}
	end := strings.IndexFunc(v, func(r rune) bool {
		return r <= ' ' || r == 0x7f || strings.ContainsRune(`()<>@,;:\"/[]?=`, r)
	})
	if end < 0 {
		end = len(v)
	}
	return v[:end]
}

// skipCFWS drops leading white space and (nested) comments.
func skipCFWS(v string) string {
	depth := 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\\' && depth > 0:
			i++
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case depth > 0, c == ' ', c == '\t':
		default:
			return v[i:]
		}
	}
	return ""
}

// fromInfo is what the From: fields say about the author's domain.
type fromInfo struct {
	domain  string   // the one RFC5322.From domain, if there is exactly one
	domains []string // every domain seen (also leniently, when unparseable), at most maxFromDomains
	problem string   // why there is not exactly one domain, "" if there is
}

const maxFromDomains = 4

// fromDomains finds the RFC5322.From domain (RFC 7489 §6.6.1). Zero or
// several From: fields, an unparseable field, or several distinct domains
// leave domain empty and say why in problem.
func fromDomains(fields []field) fromInfo {
	var values []string
	for _, f := range fields {
		if strings.EqualFold(f.name, "From") {
			values = append(values, f.value())
		}
	}
	var fi fromInfo
	switch len(values) {
	case 0:
		fi.problem = "no From: field"
		return fi
	case 1:
	default:
		fi.problem = "several From: fields"
		for _, v := range values {
			fi.addLenient(v)
		}
		return fi
	}
	p := mail.AddressParser{WordDecoder: &mime.WordDecoder{
		// Only the addresses matter; display names in any charset are fine.
		CharsetReader: func(_ string, r io.Reader) (io.Reader, error) { return r, nil },
	}}
	addrs, err := p.ParseList(values[0])
	if err != nil {
		fi.problem = "unparseable From: field"
		fi.addLenient(values[0])
		return fi
	}
	for _, a := range addrs {
		_, d := envelope.Split(a.Address)
		d, ok := dnsDomain(d)
		if !ok {
			fi.problem = "bad From: domain"
			continue
		}
		fi.add(d)
	}
	switch {
	case fi.problem != "":
	case len(fi.domains) == 0:
		fi.problem = "no From: address"
	case len(fi.domains) > 1:
		fi.problem = "several From: domains"
	default:
		fi.domain = fi.domains[0]
	}
	return fi
}

func (fi *fromInfo) add(d string) {
	for _, x := range fi.domains {
		if x == d {
			return
		}
	}
	if len(fi.domains) < maxFromDomains {
		fi.domains = append(fi.domains, d)
	}
}

// addLenient collects what looks like "@domain" in an unparseable value,
// so that a malformed From: still meets our own-domain and reject rules.
func (fi *fromInfo) addLenient(v string) {
	for {
		i := strings.IndexByte(v, '@')
		if i < 0 {
			return
		}
		v = v[i+1:]
		end := strings.IndexFunc(v, func(r rune) bool {
			return !(r == '.' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= 0x80)
		})
		if end < 0 {
			end = len(v)
		}
		if d, ok := dnsDomain(v[:end]); ok {
			fi.add(d)
		}
		v = v[end:]
	}
}

// dnsDomain is d as DNS asks for it: A-labels, lower case, no final dot;
// ok is false for address literals and malformed names.
func dnsDomain(d string) (string, bool) {
	d = strings.TrimSuffix(d, ".")
	if d == "" || strings.HasPrefix(d, "[") || envelope.ValidateDomain(d) != nil {
		return "", false
	}
	a, err := idna.Lookup.ToASCII(d)
	if err != nil || a == "" {
		return "", false
	}
	return strings.ToLower(a), true
}
