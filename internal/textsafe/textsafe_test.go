package textsafe

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestClean(t *testing.T) {
	for _, tc := range []struct {
		in, mask string
		max      int
		want     string
	}{
		{"plain text", "", 0, "plain text"},
		{"a\r\nb\tc\x00d\x7fe\u0085f\u2028g\xffh", "", 0, "a??b?c?d?e?f?g?h"},
		{`say "hi" \ (x) <y>`, `"\`, 0, `say ?hi? ? (x) <y>`},
		{"(x) <y>", "()<>", 0, "?x? ?y?"},
		{strings.Repeat("a", 9) + "é", "", 10, strings.Repeat("a", 9)},
		{"ééé", "", 5, "éé"},
		{"abc", "", 2, "ab"},
	} {
		got := Clean(tc.in, tc.max, tc.mask)
		if got != tc.want || !utf8.ValidString(got) {
			t.Errorf("Clean(%q, %d, %q) = %q, want %q", tc.in, tc.max, tc.mask, got, tc.want)
		}
	}
}

func FuzzClean(f *testing.F) {
	f.Add("a\r\nb\xff\u2028", 5, `"`)
	f.Fuzz(func(t *testing.T, s string, max int, mask string) {
		got := Clean(s, max, mask)
		if !utf8.ValidString(got) || max > 0 && len(got) > max {
			t.Fatalf("Clean(%q, %d) = %q", s, max, got)
		}
		for _, r := range got {
			if r < ' ' || r == 0x7f || r >= 0x80 && r < 0xa0 {
				t.Fatalf("control %U left in %q", r, got)
			}
		}
	})
}
