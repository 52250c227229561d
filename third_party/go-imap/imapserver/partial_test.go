package imapserver

import (
	"slices"
	"testing"
)

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
	nums := []uint32{3, 1, 2}
	for _, c := range []struct {
		lo, hi int64
		want   []uint32
	}{
		{1, 4294967295, []uint32{3, 1, 2}},
		{-1, -4294967295, []uint32{3, 1, 2}},
		{2, 3, []uint32{1, 2}},
		{-1, -2, []uint32{1, 2}},
		{-3, -3, []uint32{3}},
		{4, 9, nil},
		{-4, -9, nil},
	} {
		r := returnExt{lo: c.lo, hi: c.hi}
		if got := r.partialSlice(nums); !slices.Equal(got, c.want) {
			t.Errorf("%d:%d of %v: %v, want %v", c.lo, c.hi, nums, got, c.want)
		}
	}
}
