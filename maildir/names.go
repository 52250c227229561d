package maildir

import (
	"encoding/base64"
	"fmt"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Mailbox names are IMAP names: UTF-8, '/' between hierarchy levels, "INBOX"
// (any case) for the root. On disk a folder "a/b" is the directory ".a.b"
// where each part is encoded as modified UTF-7 (RFC 3501 §5.1.3) with '.'
// also encoded (as "&AC4-"), so names may contain dots and any character
// that survives validation.

const (
	maxNameLen    = 200 // bytes of an IMAP name
	maxDirNameLen = 250 // bytes of the encoded directory name (NAME_MAX is 255)
)

// mutf7 is the modified BASE64 of RFC 3501 §5.1.3 (',' for '/', no padding).
var mutf7 = base64.NewEncoding("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,").
	WithPadding(base64.NoPadding).Strict()

// ValidateMailboxName reports whether name may name a mailbox: not empty, at
// most 200 bytes, valid UTF-8, no control characters, no '*' or '%' (LIST
// wildcards), no empty hierarchy level (so no '/' at either end and no
// "//"), and no level starting with '.' (so no "..").
func ValidateMailboxName(name string) error {
	_, err := canonicalName(name)
	return err
}

// canonicalName validates name and returns it with INBOX's case folded.
func canonicalName(name string) (string, error) {
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("%w: %q: %s", ErrInvalidName, name, why)
	}
	if name == "" {
		return bad("empty")
	}
	if len(name) > maxNameLen {
		return bad("too long")
	}
	if !utf8.ValidString(name) {
		return bad("not UTF-8")
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return bad("control character")
		}
		if r == '*' || r == '%' {
			return bad("wildcard character")
		}
	}
	parts := strings.Split(name, "/")
	for _, p := range parts {
		if p == "" {
			return bad("empty hierarchy level")
		}
		if p[0] == '.' {
			return bad("a level starts with '.'")
		}
	}
	if strings.EqualFold(parts[0], "INBOX") && parts[0] != "INBOX" {
		name = "INBOX" + name[len(parts[0]):]
	}
	if len(folderDir(name)) > maxDirNameLen {
		return bad("too long once encoded")
	}
	return name, nil
}

// folderDir is the directory name, relative to the user's root, of the
// canonical mailbox name ("" for INBOX).
func folderDir(name string) string {
	if name == "INBOX" {
		return ""
	}
	var b strings.Builder
	for _, p := range strings.Split(name, "/") {
		b.WriteByte('.')
		b.WriteString(encodePart(p))
	}
	return b.String()
}

// nameFromDir is the inverse of folderDir for an entry of the user's root;
// ok is false for anything that is not the canonical form of a valid name.
func nameFromDir(dir string) (name string, ok bool) {
	if len(dir) < 2 || dir[0] != '.' {
		return "", false
	}
	parts := strings.Split(dir[1:], ".")
	for i, p := range parts {
		d, err := decodePart(p)
		if err != nil {
			return "", false
		}
		parts[i] = d
	}
	name, err := canonicalName(strings.Join(parts, "/"))
	if err != nil || folderDir(name) != dir {
		return "", false
	}
	return name, true
}

// encodePart encodes one hierarchy level as modified UTF-7, with '.' (and
// '/', which validation already keeps out of a level) in the BASE64 runs too.
func encodePart(s string) string {
	var b strings.Builder
	var run []uint16
	flush := func() {
		if len(run) == 0 {
			return
		}
		buf := make([]byte, 2*len(run))
		for i, c := range run {
			buf[2*i], buf[2*i+1] = byte(c>>8), byte(c)
		}
		b.WriteByte('&')
		b.WriteString(mutf7.EncodeToString(buf))
		b.WriteByte('-')
		run = run[:0]
	}
	for _, r := range s {
		switch {
		case r == '&':
			flush()
			b.WriteString("&-")
		case r >= 0x20 && r <= 0x7e && r != '.' && r != '/':
			flush()
			b.WriteByte(byte(r))
		default:
			run = utf16.AppendRune(run, r)
		}
	}
	flush()
	return b.String()
}

// decodePart decodes one level encoded by encodePart. It accepts only the
// canonical encoding, so that two directories never decode to one name.
func decodePart(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); {
		c := s[i]
		if c != '&' {
			if c < 0x20 || c > 0x7e {
				return "", fmt.Errorf("byte %#x outside modified UTF-7", c)
			}
			b.WriteByte(c)
			i++
			continue
		}
		end := strings.IndexByte(s[i+1:], '-')
		if end < 0 {
			return "", fmt.Errorf("unterminated shift")
		}
		enc := s[i+1 : i+1+end]
		i += end + 2
		if enc == "" {
			b.WriteByte('&')
			continue
		}
		raw, err := mutf7.DecodeString(enc)
		if err != nil || len(raw)%2 != 0 {
			return "", fmt.Errorf("bad modified BASE64 %q", enc)
		}
		units := make([]uint16, len(raw)/2)
		for j := range units {
			units[j] = uint16(raw[2*j])<<8 | uint16(raw[2*j+1])
		}
		for j := 0; j < len(units); j++ {
			u := units[j]
			r := rune(u)
			if utf16.IsSurrogate(r) {
				if j+1 >= len(units) {
					return "", fmt.Errorf("unpaired surrogate")
				}
				r = utf16.DecodeRune(r, rune(units[j+1]))
				if r == utf8.RuneError {
					return "", fmt.Errorf("unpaired surrogate")
				}
				j++
			}
			b.WriteRune(r)
		}
	}
	out := b.String()
	if encodePart(out) != s {
		return "", fmt.Errorf("not the canonical encoding")
	}
	return out, nil
}

// sanitizeHost makes a host name safe inside a base name: no '/', ':' or
// ',' (octal escapes, as Maildir writers do), and short enough to keep base
// names under 128 bytes.
func sanitizeHost(h string) string {
	var b strings.Builder
	for i := 0; i < len(h); i++ {
		switch c := h[i]; {
		case c == '/':
			b.WriteString(`\057`)
		case c == ':':
			b.WriteString(`\072`)
		case c == ',':
			b.WriteString(`\054`)
		case c <= ' ' || c >= 0x7f:
			b.WriteByte('_')
		default:
			b.WriteByte(c)
		}
	}
	s := b.String()
	if s == "" {
		s = "localhost"
	}
	if len(s) > 40 {
		s = s[:40]
	}
	return s
}
