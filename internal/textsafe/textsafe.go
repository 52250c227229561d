// Package textsafe makes text that came from the network safe to put in a
// header field or a log line. It is the one place that decides what is
// unsafe, so that every header Postie writes follows the same rules.
package textsafe

import (
	"strings"
	"unicode/utf8"
)

// Clean returns s with every control character (C0, DEL, C1), invalid
// UTF-8 byte, line or paragraph separator (U+2028, U+2029) and every
// character of mask replaced by '?', cut to at most max bytes on a
// character boundary (max <= 0: no cut).
func Clean(s string, max int, mask string) string {
	var b strings.Builder
	for _, r := range s {
		if r < ' ' || r >= 0x7f && r < 0xa0 || r == utf8.RuneError || r == '\u2028' || r == '\u2029' || strings.ContainsRune(mask, r) {
			r = '?'
		}
		if max > 0 && b.Len()+utf8.RuneLen(r) > max {
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}
