package smtp

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzXtext: the ENVID and ORCPT decoders (RFC 3461 xtext, RFC 6533
// utf-8-addr-xtext and -unitext) take any network input without panic,
// an rfc822 ORCPT decodes only to printable ASCII, and what the client
// encodes the server decodes back to the same value.
func FuzzXtext(f *testing.F) {
	for _, s := range []string{
		"e+3Dmc2@example.com", "+2B+3D+20", "+4", "+zz", "+80", "rfc822;a+40b@example.com",
		`utf-8;\x{E9}l\x{E8}ve@example.com`, `utf-8;élève@example.com`, `utf-8;\x{1}`, `x-unknown;a@b`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		decodeXtext(s)
		decodeUTF8AddrXtext(s)
		if typ, addr, err := decodeTypedAddress(s); err == nil {
			if typ == DSNAddressTypeRFC822 && !isPrintableASCII(addr) {
				t.Fatalf("rfc822 ORCPT %q decoded to %q", s, addr)
			}
			if typ != DSNAddressTypeRFC822 && typ != DSNAddressTypeUTF8 {
				t.Fatalf("address type %q", typ)
			}
		}
		if isPrintableASCII(s) {
			if got, err := decodeXtext(encodeXtext(s)); err != nil || got != s {
				t.Fatalf("xtext round trip of %q: %q, %v", s, got, err)
			}
		}
		if utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 }) {
			if got, err := decodeUTF8AddrXtext(encodeUTF8AddrXtext(s)); err != nil || got != s {
				t.Fatalf("utf-8-addr-xtext round trip of %q: %q, %v", s, got, err)
			}
			if got, err := decodeUTF8AddrXtext(encodeUTF8AddrUnitext(s)); err != nil || got != s {
				t.Fatalf("utf-8-addr-unitext round trip of %q: %q, %v", s, got, err)
			}
		}
	})
}
