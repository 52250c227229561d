package mimeparse

import (
	"fmt"
	"io"
	"strings"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/htmlindex"
	"golang.org/x/text/encoding/ianaindex"
	"golang.org/x/text/encoding/unicode"
)

// charsetDecoder returns a decoder from charset to UTF-8, found by its WHATWG label (htmlindex: the
// names mail programs actually write, "latin1" and "us-ascii" meaning windows-1252 as browsers take
// them) or else its IANA name. It returns nil when no conversion is needed (UTF-8, no charset) or
// possible (an unknown charset, or one whose bytes decode to nothing useful): the raw bytes are then
// used, so ASCII text still matches. Bytes that are not of the charset decode to U+FFFD.
func charsetDecoder(charset string) *encoding.Decoder {
	name := strings.ToLower(strings.TrimSpace(charset))
	switch name {
	case "", "utf-8", "utf8":
		return nil
	}
	enc, err := htmlindex.Get(name)
	if err != nil {
		if enc, err = ianaindex.MIME.Encoding(name); err != nil {
			return nil
		}
	}
	if enc == nil || enc == encoding.Replacement || enc == unicode.UTF8 {
		return nil
	}
	return enc.NewDecoder()
}

// charsetReader lets mime.WordDecoder decode encoded words in every charset charsetDecoder knows
// (it handles UTF-8, US-ASCII and ISO-8859-1 itself).
func charsetReader(charset string, r io.Reader) (io.Reader, error) {
	dec := charsetDecoder(charset)
	if dec == nil {
		return nil, fmt.Errorf("mimeparse: charset %q not supported", charset)
	}
	return dec.Reader(io.LimitReader(r, maxHeaderBytes)), nil
}
