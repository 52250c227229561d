package junk

import (
	"math"
	"slices"
)

// Robinson's method with Fisher's chi-square combining, as SpamBayes and
// bogofilter use it: each token's spam probability is shrunk toward 0.5 by
// how little it has been seen, the most telling tokens are combined, and the
// result is near 0 (ham), near 1 (spam), or near 0.5 (unsure).
const (
	strength    = 1.0  // s: weight of the 0.5 prior, in messages
	prior       = 0.5  // x
	minDeviance = 0.1  // tokens with |f-0.5| below this say nothing
	maxClues    = 150  // the most telling tokens that are combined
	minProb     = 0.01 // bounds on a token's probability, so no one token decides
	maxProb     = 0.99
)

// score returns the spam probability of a message with the given tokens,
// and the number of tokens that counted.
func (t *table) score(tokens []string) (float64, int) {
	if t.nham == 0 || t.nspam == 0 {
		return 0.5, 0
	}
	clues := make([]float64, 0, len(tokens))
	for _, tok := range tokens {
		r := t.get(key(kindToken, tok))
		if r.ham == 0 && r.spam == 0 {
			continue
		}
		b := float64(r.spam) / float64(t.nspam)
		g := float64(r.ham) / float64(t.nham)
		p := b / (b + g)
		n := float64(r.ham + r.spam)
		f := (strength*prior + n*p) / (strength + n)
		f = min(max(f, minProb), maxProb)
		if math.Abs(f-0.5) >= minDeviance {
			clues = append(clues, f)
		}
	}
	if len(clues) == 0 {
		return 0.5, 0
	}
	if len(clues) > maxClues {
		slices.SortFunc(clues, func(a, b float64) int {
			da, db := math.Abs(a-0.5), math.Abs(b-0.5)
			switch {
			case da > db:
				return -1
			case da < db:
				return 1
			}
			return 0
		})
		clues = clues[:maxClues]
	}
	var lnS, lnH float64 // sums of ln(1-f) and ln(f)
	for _, f := range clues {
		lnS += math.Log(1 - f)
		lnH += math.Log(f)
	}
	n := len(clues)
	s := 1 - chi2Q(-2*lnS, 2*n) // spamminess
	h := 1 - chi2Q(-2*lnH, 2*n) // hamminess
	return (1 + s - h) / 2, n
}

// chi2Q is the probability that a chi-square variable with v (even) degrees
// of freedom exceeds x2.
func chi2Q(x2 float64, v int) float64 {
	m := x2 / 2
	sum := math.Exp(-m)
	term := sum
	for i := 1; i < v/2; i++ {
		term *= m / float64(i)
		sum += term
	}
	return min(sum, 1)
}
