package mimeparse

import (
	"bytes"
	"io"
	"slices"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// Needle is a search string, case-folded by Fold.
type Needle struct {
	Folded     []byte
	WithHeader bool // TEXT (header and body); BODY is body only
}

// HeaderContains reports whether a field called name (any case) contains value (folded; empty:
// whether the field exists), encoded words decoded.
func HeaderContains(h Header, name string, value []byte) bool {
	addr := addressField(name) // once, not per field of every message
	for _, f := range h {
		if f.Name == "" || !strings.EqualFold(f.Name, name) {
			continue
		}
		if len(value) == 0 || bytes.Contains(Fold([]byte(DecodeHeader(f.Value()))), value) {
			return true
		}
		if addr && bytes.Contains(Fold([]byte(AddressText(f.Value()))), value) {
			return true
		}
	}
	return false
}

// addressField reports whether the field holds addresses, which SEARCH also matches normalized.
func addressField(name string) bool {
	switch strings.ToLower(name) {
	case "from", "to", "cc", "bcc", "sender", "reply-to":
		return true
	}
	return false
}

// FindText reports, for each needle, whether the text of a parsed message (read from f) contains it.
func FindText(f io.ReaderAt, root *Part, needles []Needle) ([]bool, error) {
	tm := newTextMatcher(needles)
	lp := foldBufs.Get().(*[]byte)
	tm.lower = (*lp)[:0]
	err := searchText(tm, f, root)
	*lp = tm.lower[:0]
	foldBufs.Put(lp)
	if err != nil {
		return nil, err
	}
	return tm.found, nil
}

// foldBufs lends text matchers the buffer they fold text into.
var foldBufs = sync.Pool{New: func() any { b := make([]byte, 0, 20<<10); return &b }}

// Fold case-folds text for case-insensitive matching (simple Unicode lower-casing).
func Fold(b []byte) []byte { return bytes.ToLower(b) }

// foldInto appends fold(src) to dst, without allocating: what bytes.ToLower does, rune by rune
// (an invalid byte becomes U+FFFD, as there).
func foldInto(dst, src []byte) []byte {
	dst = slices.Grow(dst, len(src))
	for i := 0; i < len(src); {
		c := src[i]
		if c < utf8.RuneSelf {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			dst = append(dst, c)
			i++
			continue
		}
		r, w := utf8.DecodeRune(src[i:])
		dst = utf8.AppendRune(dst, unicode.ToLower(r))
		i += w
	}
	return dst
}

// textMatcher looks for several folded needles in a stream of UTF-8 text that arrives in chunks;
// matches may span chunk boundaries but not parts (reset between parts). Each chunk is folded once,
// straight after the folded tail of the text before it.
type textMatcher struct {
	needles []Needle
	found   []bool
	left    int
	keep    int      // folded bytes of context carried between chunks
	lower   []byte   // the folded tail of the text so far, then the chunk being matched
	pend    []byte   // an incomplete rune at the end of the last chunk, raw
	body    bool     // matching body text (BODY and TEXT needles) or header text (TEXT only)
	sink    TextSink // when set, also gets all the folded text (WalkText); the walk then never ends early
}

func newTextMatcher(needles []Needle) *textMatcher {
	tm := &textMatcher{needles: needles, found: make([]bool, len(needles)), left: len(needles)}
	for _, n := range needles {
		tm.keep = max(tm.keep, len(n.Folded)+utf8.UTFMax)
	}
	return tm
}

func (tm *textMatcher) done() bool { return tm.left == 0 && tm.sink == nil }

func (tm *textMatcher) reset(body bool) {
	tm.lower, tm.pend = tm.lower[:0], tm.pend[:0]
	tm.body = body
	if tm.sink != nil {
		tm.sink.Reset(body)
	}
}

// write feeds UTF-8 text.
func (tm *textMatcher) write(chunk []byte) {
	n0 := len(tm.lower)
	// First complete the rune the last chunk ended in.
	for len(tm.pend) > 0 && len(chunk) > 0 {
		tm.pend = append(tm.pend, chunk[0])
		chunk = chunk[1:]
		if utf8.FullRune(tm.pend) {
			tm.lower = foldInto(tm.lower, tm.pend)
			tm.pend = tm.pend[:0]
		}
	}
	// Hold back an incomplete rune at the end for the next chunk.
	cut := len(chunk)
	for i := 1; i <= 3 && i <= len(chunk); i++ {
		c := chunk[len(chunk)-i]
		if c < 0x80 {
			break
		}
		if c >= 0xc0 {
			if !utf8.FullRune(chunk[len(chunk)-i:]) {
				cut = len(chunk) - i
			}
			break
		}
	}
	tm.pend = append(tm.pend, chunk[cut:]...)
	tm.lower = foldInto(tm.lower, chunk[:cut])
	folded := tm.lower
	if tm.sink != nil {
		tm.sink.Write(folded[n0:])
	}
	for i, n := range tm.needles {
		if !tm.found[i] && (tm.body || n.WithHeader) && bytes.Contains(folded, n.Folded) {
			tm.found[i] = true
			tm.left--
		}
	}
	// Keep the last keep bytes (from a rune's start) as context for the next chunk.
	start := max(0, len(folded)-tm.keep)
	for start > 0 && !utf8.RuneStart(folded[start]) {
		start--
	}
	tm.lower = folded[:copy(folded, folded[start:])]
}

// searchText feeds a parsed message's text to tm: the top header (for TEXT), then every text part,
// transfer-decoded and, where possible, converted to UTF-8, and the headers of encapsulated messages.
func searchText(tm *textMatcher, f io.ReaderAt, root *Part) error {
	tm.reset(false)
	feedHeader(tm, root.Header)
	return searchParts(tm, f, root)
}

func feedHeader(tm *textMatcher, h Header) {
	for _, fl := range h {
		if tm.done() {
			return
		}
		line := fl.Name + ": " + DecodeHeader(fl.Value()) + "\n"
		tm.write([]byte(line))
	}
}

var searchBufs = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

func searchParts(tm *textMatcher, f io.ReaderAt, p *Part) error {
	if tm.done() {
		return nil
	}
	switch {
	case p.IsMultipart():
		for _, c := range p.Children {
			if err := searchParts(tm, f, c); err != nil {
				return err
			}
		}
		return nil
	case p.Msg != nil:
		tm.reset(true)
		feedHeader(tm, p.Msg.Header)
		return searchParts(tm, f, p.Msg)
	case p.Type != "text":
		return nil
	}
	tm.reset(true)
	var r io.Reader = io.NewSectionReader(f, p.BodyStart, p.Size())
	if d, err := DecodeCTE(p.Header.Get("Content-Transfer-Encoding"), r); err == nil {
		r = d
	}
	if dec := charsetDecoder(p.Params["charset"]); dec != nil {
		r = dec.Reader(r)
	}
	bufp := searchBufs.Get().(*[]byte)
	defer searchBufs.Put(bufp)
	buf := *bufp
	for !tm.done() {
		n, err := r.Read(buf)
		if n > 0 {
			tm.write(buf[:n])
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
	return nil
}
