package mimeparse

import (
	"math"
	"mime"
	"strings"

	"github.com/emersion/go-imap/v2"
)

// BodyStructure builds the BODYSTRUCTURE of a parsed part (RFC 3501 §7.4.2). It is always extended:
// the library's writer drops the extension data for plain BODY.
func BodyStructure(p *Part) imap.BodyStructure {
	if p.IsMultipart() && len(p.Children) > 0 {
		mp := &imap.BodyStructureMultiPart{
			Subtype: p.Subtype,
			Extended: &imap.BodyStructureMultiPartExt{
				Params:      cleanParams(p.Params),
				Disposition: disposition(p.Header),
				Language:    languages(p.Header),
				Location:    clean(p.Header.Get("Content-Location")),
			},
		}
		for _, c := range p.Children {
			mp.Children = append(mp.Children, BodyStructure(c))
		}
		return mp
	}
	typ, sub, params := p.Type, p.Subtype, p.Params
	if p.IsMultipart() {
		// A multipart without any part (no delimiter found) cannot be written as one (the writer
		// panics on an empty multipart); show its body as text.
		typ, sub, params = "text", "plain", map[string]string{"charset": "us-ascii"}
	}
	sp := &imap.BodyStructureSinglePart{
		Type:        typ,
		Subtype:     sub,
		Params:      cleanParams(params),
		ID:          clean(p.Header.Get("Content-ID")),
		Description: clean(p.Header.Get("Content-Description")),
		Encoding:    clean(p.Header.Get("Content-Transfer-Encoding")),
		Size:        Clamp32(p.Size()),
		Extended: &imap.BodyStructureSinglePartExt{
			Disposition: disposition(p.Header),
			Language:    languages(p.Header),
			Location:    clean(p.Header.Get("Content-Location")),
		},
	}
	switch {
	case p.Msg != nil:
		sp.MessageRFC822 = &imap.BodyStructureMessageRFC822{
			Envelope:      Envelope(p.Msg.Header),
			BodyStructure: BodyStructure(p.Msg),
			NumLines:      p.Lines,
		}
	case typ == "text":
		sp.Text = &imap.BodyStructureText{NumLines: p.Lines}
	}
	return sp
}

// Clamp32 fits a size into the 32 bits IMAP numbers have.
func Clamp32(n int64) uint32 {
	if n > math.MaxUint32 {
		return math.MaxUint32
	}
	if n < 0 {
		return 0
	}
	return uint32(n)
}

func cleanParams(ps map[string]string) map[string]string {
	if len(ps) == 0 {
		return nil
	}
	out := make(map[string]string, len(ps))
	for k, v := range ps {
		if k = clean(k); k != "" {
			out[k] = clean(v)
		}
	}
	return out
}

func disposition(h Header) *imap.BodyStructureDisposition {
	v := h.Get("Content-Disposition")
	if v == "" {
		return nil
	}
	d, ps, err := mime.ParseMediaType(v)
	if err != nil && d == "" {
		d, _, _ = strings.Cut(v, ";")
		d = strings.ToLower(strings.TrimSpace(d))
		ps = lenientParams(v)
	}
	if !isToken(d) {
		return nil
	}
	return &imap.BodyStructureDisposition{Value: d, Params: cleanParams(ps)}
}

func languages(h Header) []string {
	v := h.Get("Content-Language")
	if v == "" {
		return nil
	}
	var l []string
	for _, s := range strings.Split(v, ",") {
		if s = clean(strings.TrimSpace(stripComments(s))); s != "" {
			l = append(l, s)
		}
	}
	return l
}
