package mimeparse

import "io"

// TextSink receives the text SEARCH TEXT and BODY look in, folded as Fold folds needles: Reset
// starts a part (matches never span parts; body is false for the top-level header), Write gives the
// next folded bytes of the part (whole runes). A search index built from it finds what the search
// finds.
type TextSink interface {
	Reset(body bool)
	Write(folded []byte)
}

// WalkText feeds a parsed message's searchable text (read from f) to sink: exactly the text, parts
// and folding FindText matches needles against.
func WalkText(f io.ReaderAt, root *Part, sink TextSink) error {
	tm := newTextMatcher(nil)
	tm.sink = sink
	tm.keep = 1 // context to carry is none, but write's trimming needs keep > 0
	lp := foldBufs.Get().(*[]byte)
	tm.lower = (*lp)[:0]
	err := searchText(tm, f, root)
	*lp = tm.lower[:0]
	foldBufs.Put(lp)
	return err
}
