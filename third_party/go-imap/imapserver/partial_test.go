package imapserver

import "testing"

// RFC 9394's ranges: nz-numbers up to 4294967295 (or their negatives), either order; no "*", no
// mixed signs, no zero, no sign "+".
func TestParsePartialRange(t *testing.T) {
	for _, c := range []struct {
		in     string
		lo, hi int64
		ok     bool
	}{
		{"1:100", 1, 100, true},
		{"100:1", 1, 100, true},
		{"-1:-100", -1, -100, true},
		{"-100:-1", -1, -100, true},
		{"1:4294967295", 1, 4294967295, true},
		{"-4294967295:-1", -1, -4294967295, true},
		{"1:4294967296", 0, 0, false},
		{"0:5", 0, 0, false},
		{"-1:5", 0, 0, false},
		{"1:*", 0, 0, false},
		{"+1:5", 0, 0, false},
		{"--1:-5", 0, 0, false},
		{"5", 0, 0, false},
		{"-:-", 0, 0, false},
	} {
		lo, hi, ok := parsePartialRange(c.in)
		if ok != c.ok || lo != c.lo || hi != c.hi {
			t.Errorf("%q: %d:%d %v, want %d:%d %v", c.in, lo, hi, ok, c.lo, c.hi, c.ok)
		}
	}
	r := returnExt{lo: 1, hi: 4294967295}
	if got := r.partialSlice([]uint32{3, 1, 2}); len(got) != 3 {
		t.Errorf("1:4294967295 of three: %v", got)
	}
	r = returnExt{lo: -1, hi: -4294967295}
	if got := r.partialSlice([]uint32{3, 1, 2}); len(got) != 3 {
		t.Errorf("-1:-4294967295 of three: %v", got)
	}
}
