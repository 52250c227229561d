package mimeparse

import (
	"html"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Preview sizes (RFC 8970 §2: at most 256 octets, and no more than 200 characters).
const (
	previewChars = 200
	previewBytes = 256
	previewRead  = 16 << 10 // decoded bytes of the part read at most
)

// Preview returns a message's preview text (RFC 8970): the start of its first text/plain part
// that is not an attachment (else of its first text/html part, without markup), white space
// collapsed, at most 200 characters and 256 octets of UTF-8. A message without such a part has
// the empty preview.
func Preview(f io.ReaderAt, root *Part) (string, error) {
	p := firstText(root, "plain")
	if p == nil {
		p = firstText(root, "html")
	}
	if p == nil {
		return "", nil
	}
	var r io.Reader = io.NewSectionReader(f, p.BodyStart, p.Size())
	if d, err := DecodeCTE(p.Header.Get("Content-Transfer-Encoding"), r); err == nil {
		r = d
	}
	if dec := charsetDecoder(p.Params["charset"]); dec != nil {
		r = dec.Reader(r)
	}
	b, err := io.ReadAll(io.LimitReader(r, previewRead))
	if err != nil {
		return "", err
	}
	text := strings.ToValidUTF8(string(b), "\uFFFD")
	if p.Subtype == "html" {
		text = stripHTML(text)
	}
	return collapse(text), nil
}

// firstText finds the first text/<subtype> part, depth first, that is not an attachment; it does
// not look into attached messages.
func firstText(p *Part, subtype string) *Part {
	if p.IsMultipart() {
		for _, c := range p.Children {
			if t := firstText(c, subtype); t != nil {
				return t
			}
		}
		return nil
	}
	if p.Type != "text" || p.Subtype != subtype {
		return nil
	}
	if d := disposition(p.Header); d != nil && d.Value == "attachment" {
		return nil
	}
	return p
}

// stripHTML drops tags, comments and the content of style and script elements, and decodes
// entities.
func stripHTML(s string) string {
	var b strings.Builder
	for len(s) > 0 {
		i := strings.IndexByte(s, '<')
		if i < 0 {
			b.WriteString(s)
			break
		}
		b.WriteString(s[:i])
		s = s[i:]
		lower := strings.ToLower(s[:min(len(s), 8)])
		end := ">"
		switch {
		case strings.HasPrefix(lower, "<!--"):
			end = "-->"
		case strings.HasPrefix(lower, "<style"):
			end = "</style>"
		case strings.HasPrefix(lower, "<script"):
			end = "</script>"
		}
		j := strings.Index(strings.ToLower(s), end)
		if j < 0 {
			break
		}
		s = s[j+len(end):]
		b.WriteByte(' ')
	}
	return html.UnescapeString(b.String())
}

// collapse turns runs of white space (and control characters) into one space, trims, and cuts
// at previewChars characters and previewBytes octets, on a character boundary.
func collapse(s string) string {
	var b strings.Builder
	space, chars := false, 0
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			space = b.Len() > 0
			continue
		}
		n := utf8.RuneLen(r)
		if space {
			n++
		}
		if chars+1+btoi(space) > previewChars || b.Len()+n > previewBytes {
			break
		}
		if space {
			b.WriteByte(' ')
			chars++
			space = false
		}
		b.WriteRune(r)
		chars++
	}
	return b.String()
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
