package main

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// A remote reply reaches `postie queue list` and `postie suppress list`
// through oneLine: nothing in it may drive the administrator's terminal.
func TestOneLineTerminalSafe(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"550 5.1.1 user unknown", "550 5.1.1 user unknown"},
		{"550 5.1.1\r\nuser unknown", "550 5.1.1  user unknown"},
		{"550 \x1b[2Jgone", "550 ?[2Jgone"},
		{"550 \u009b2Jgone", "550 ?2Jgone"},
		{"550 \x07bell\tand\x00nul", "550 ?bell?and?nul"},
		{"550 bad \xff byte", "550 bad ? byte"},
	} {
		if got := oneLine(tc.in); got != tc.want {
			t.Errorf("oneLine(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	long := strings.Repeat("a", 116) + "é" + strings.Repeat("b", 20) // é straddles byte 117
	got := oneLine(long)
	if !utf8.ValidString(got) || !strings.HasSuffix(got, "...") || len(got) > 120 {
		t.Errorf("oneLine of a long reply = %q (%d bytes): want valid UTF-8, at most 120 bytes, ending in ...", got, len(got))
	}
}
