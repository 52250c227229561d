// Package envelope holds the small types every mail role shares: mail
// addresses (parsing, validation, normalisation, +tag handling) and the
// typed delivery error that carries an SMTP reply code.
package envelope

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Limits from RFC 5321 §4.5.3.1.
const (
	maxLocalLen   = 64
	maxDomainLen  = 255
	maxAddressLen = 254
)

// Split cuts addr at its last '@'. An address without '@' is all local part.
func Split(addr string) (local, domain string) {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return addr, ""
	}
	return addr[:i], addr[i+1:]
}

// CanonDomain is the form domains are compared in: lower case, without a
// trailing dot.
func CanonDomain(d string) string { return strings.ToLower(strings.TrimSuffix(d, ".")) }

// Normalize validates addr and returns its canonical form: the domain
// lower-cased (and any trailing dot dropped), the local part kept as given.
// The null sender "" is not an address; callers handle it before.
func Normalize(addr string) (string, error) {
	if err := Validate(addr); err != nil {
		return "", err
	}
	local, domain := Split(addr)
	return local + "@" + CanonDomain(domain), nil
}

// Key is the form used to look addresses up: local part and domain both
// folded to lower case. Mail servers our users come from (Postfix virtual
// tables, Dovecot) compare local parts case-insensitively too.
func Key(addr string) string {
	local, domain := Split(addr)
	return strings.ToLower(local) + "@" + CanonDomain(domain)
}

// StripTag removes a "+tag" detail from a local part: "ann+lists" → "ann", "lists".
// A local part that starts with '+' keeps it: "+x" is not a tag of "".
func StripTag(local string) (base, tag string) {
	i := strings.IndexByte(local, '+')
	if i <= 0 {
		return local, ""
	}
	return local[:i], local[i+1:]
}

// Validate reports whether addr is a syntactically acceptable mailbox
// address "local@domain" for storage and routing. It is stricter than RFC
// 5322 where strictness protects us: no control characters, no spaces, and
// no path-like local parts.
func Validate(addr string) error {
	if len(addr) > maxAddressLen {
		return fmt.Errorf("address too long (%d > %d octets)", len(addr), maxAddressLen)
	}
	if !utf8.ValidString(addr) {
		return errors.New("address is not valid UTF-8")
	}
	local, domain := Split(addr)
	if !strings.Contains(addr, "@") {
		return fmt.Errorf("address %q has no domain", addr)
	}
	if err := ValidateLocal(local); err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	if err := ValidateDomain(domain); err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	return nil
}

// ValidateSender checks an address that came from elsewhere in an SMTP
// path (a sender, or a remote recipient we send back to): laxer than
// Validate, since legal but odd local parts ("a..b", ".x") exist in the
// wild and refusing them would lose mail; it still refuses what could
// break a header or a command line (control characters, spaces, angle
// brackets, backslashes) and requires a valid domain. Such addresses are
// never used to build paths.
func ValidateSender(addr string) error {
	if len(addr) > maxAddressLen || !utf8.ValidString(addr) {
		return fmt.Errorf("address too long or not UTF-8")
	}
	for _, r := range addr {
		if r <= ' ' || r == 0x7f || r == '<' || r == '>' || r == '\\' {
			return fmt.Errorf("address %q has forbidden character %q", addr, r)
		}
	}
	local, domain := Split(addr)
	if !strings.Contains(addr, "@") || local == "" || len(local) > maxLocalLen {
		return fmt.Errorf("address %q has no usable local part", addr)
	}
	if err := ValidateDomain(domain); err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	return nil
}

// ValidateLocal checks a local part.
func ValidateLocal(local string) error {
	switch {
	case local == "":
		return errors.New("empty local part")
	case len(local) > maxLocalLen:
		return fmt.Errorf("local part too long (%d > %d octets)", len(local), maxLocalLen)
	case local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, ".."):
		return errors.New("local part has a leading, trailing or double dot")
	}
	for _, r := range local {
		if r <= ' ' || r == 0x7f || r == '/' || r == '\\' || r == '@' || r == '"' || r == '<' || r == '>' || r == ',' || r == ';' || r == ':' {
			return fmt.Errorf("local part has forbidden character %q", r)
		}
	}
	return nil
}

// ValidateDomain checks a domain name (letters, digits, hyphens and
// non-ASCII UTF-8 labels, dot separated) or an address literal "[...]".
func ValidateDomain(domain string) error {
	domain = strings.TrimSuffix(domain, ".")
	if domain == "" {
		return errors.New("empty domain")
	}
	if len(domain) > maxDomainLen {
		return errors.New("domain too long")
	}
	if domain[0] == '[' {
		if domain[len(domain)-1] != ']' || strings.ContainsAny(domain[1:len(domain)-1], "[]\\ \t") {
			return fmt.Errorf("bad address literal %q", domain)
		}
		return nil
	}
	for _, label := range strings.Split(domain, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("bad domain label in %q", domain)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("domain label %q starts or ends with a hyphen", label)
		}
		for _, r := range label {
			ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r >= 0x80
			if !ok {
				return fmt.Errorf("domain %q has forbidden character %q", domain, r)
			}
		}
	}
	return nil
}

// Error is a delivery outcome that is not success, carrying what an SMTP
// server would answer: a reply code (4xx temporary, 5xx permanent), an
// RFC 3463 enhanced status code and a human text. Remote names the host
// whose reply this is, when it came from another server (a DSN's
// Remote-MTA). Err, if set, is the cause for logs; it is never sent to a
// client.
type Error struct {
	Code     int
	Enhanced [3]int
	Message  string
	Remote   string
	Err      error
}

func (e *Error) Error() string {
	s := fmt.Sprintf("%d %d.%d.%d %s", e.Code, e.Enhanced[0], e.Enhanced[1], e.Enhanced[2], e.Message)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Temporary reports whether the failure may go away by itself (a 4xx).
func (e *Error) Temporary() bool { return e.Code >= 400 && e.Code < 500 }

// Errorf builds an Error; code and enhanced follow SMTP (e.g. 550, 5,1,1).
func Errorf(code, class, subject, detail int, format string, args ...any) *Error {
	return &Error{Code: code, Enhanced: [3]int{class, subject, detail}, Message: fmt.Sprintf(format, args...)}
}

// Common outcomes, shared so every role answers alike.
var (
	ErrUnknownUser   = &Error{Code: 550, Enhanced: [3]int{5, 1, 1}, Message: "no such user here"}
	ErrRelayDenied   = &Error{Code: 554, Enhanced: [3]int{5, 7, 1}, Message: "relay access denied"}
	ErrQuotaExceeded = &Error{Code: 552, Enhanced: [3]int{5, 2, 2}, Message: "mailbox full"}
	ErrTooLarge      = &Error{Code: 552, Enhanced: [3]int{5, 3, 4}, Message: "message too large"}
	ErrTempLocal     = &Error{Code: 451, Enhanced: [3]int{4, 3, 0}, Message: "temporary local problem, try again later"}
)

// Temp wraps cause as a temporary local failure (451 4.3.0), the answer for
// a full disk, an I/O error or any fault that is ours and may pass.
func Temp(cause error) *Error {
	return &Error{Code: 451, Enhanced: [3]int{4, 3, 0}, Message: "temporary local problem, try again later", Err: cause}
}

// AsError returns err as an *Error: itself if it is one (or wraps one),
// otherwise a temporary local failure wrapping it. Unknown faults are never
// turned into permanent rejections: a retry loses nothing, a 5xx may.
func AsError(err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return Temp(err)
}
