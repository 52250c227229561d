package imapd

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// baseSubjectStepwise is RFC 5256 §2.1 steps (3) to (5) taken literally: one blob removed, then
// the leaders again. baseSubject skips the leader scan between blobs; they must agree.
func baseSubjectStepwise(s string) (string, bool) {
	reply := false
	for changed := true; changed; {
		changed = false
		for {
			n, refwd := subjLeader(s)
			if n == 0 {
				break
			}
			s, changed = s[n:], true
			reply = reply || refwd
		}
		if n := subjBlob(s); n > 0 && n < len(s) {
			s, changed = s[n:], true
		}
	}
	return s, reply
}

func TestBaseSubjectBlobsAsStepwise(t *testing.T) {
	parts := []string{"[a]", "[b] ", "re", "Re:", "fwd", "fw[x]:", ":", " ", "[", "]", "x", "y z", "(fwd)"}
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		var b strings.Builder
		for range r.IntN(8) {
			b.WriteString(parts[r.IntN(len(parts))])
		}
		in := collapseWSP(b.String())
		// Steps (3)-(5) alone, on a subject without (1), (2) and (6) work to do.
		if strings.Contains(strings.ToLower(in), "(fwd)") || strings.HasSuffix(in, " ") || strings.HasPrefix(strings.ToLower(in), "[fwd:") {
			continue
		}
		got, gr := baseSubject(in)
		want, wr := baseSubjectStepwise(in)
		if strings.HasPrefix(strings.ToLower(want), "[fwd:") || strings.HasSuffix(want, " ") {
			continue // (6) or (2) would go on
		}
		if got != want || gr != wr {
			t.Fatalf("baseSubject(%q) = %q, %v; stepwise %q, %v", in, got, gr, want, wr)
		}
	}
}

// A Subject of many blobs (up to the 256 KiB header limit) costs linear time.
func BenchmarkBaseSubjectBlobs(b *testing.B) {
	s := strings.Repeat("[a]", 80000) + "x"
	for b.Loop() {
		baseSubject(s)
	}
}
