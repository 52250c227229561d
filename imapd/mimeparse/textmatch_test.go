package mimeparse

import (
	"bytes"
	"testing"
)

// TestTextMatcherChunks feeds text in every split into two and three chunks (runes cut in half
// included) and checks the matcher agrees with a search of the whole folded text.
func TestTextMatcherChunks(t *testing.T) {
	text := []byte("Grüße aus MÜNCHEN, straße ÉTÉ\xff\xfe ok Ωmega ñandú")
	needles := []string{"münchen", "straße ét", "été\ufffd", "ωmega ñ", "ñandú", "absent", "n, s"}
	var ns []Needle
	for _, s := range needles {
		ns = append(ns, Needle{Folded: Fold([]byte(s))})
	}
	whole := Fold(text)
	for i := 0; i <= len(text); i++ {
		for j := i; j <= len(text); j += 3 {
			tm := newTextMatcher(ns)
			tm.reset(true)
			tm.write(text[:i])
			tm.write(text[i:j])
			tm.write(text[j:])
			for k, n := range ns {
				if want := bytes.Contains(whole, n.Folded); tm.found[k] != want {
					t.Fatalf("split %d/%d: %q found=%v, want %v", i, j, needles[k], tm.found[k], want)
				}
			}
		}
	}
}
