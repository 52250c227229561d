package imapd

import (
	"math"
	"mime"
	"strings"

	"github.com/emersion/go-imap/v2"
)

// bodyStructure builds the BODYSTRUCTURE of a parsed part (RFC 3501 §7.4.2). It is always extended:
// the library's writer drops the extension data for plain BODY.
func bodyStructure(p *part) imap.BodyStructure {
	if p.isMultipart() && len(p.children) > 0 {
		mp := &imap.BodyStructureMultiPart{
			Subtype: p.subtype,
			Extended: &imap.BodyStructureMultiPartExt{
				Params:      cleanParams(p.params),
				Disposition: disposition(p.header),
				Language:    languages(p.header),
				Location:    clean(p.header.get("Content-Location")),
			},
		}
		for _, c := range p.children {
			mp.Children = append(mp.Children, bodyStructure(c))
		}
		return mp
	}
	typ, sub, params := p.typ, p.subtype, p.params
	if p.isMultipart() {
		// A multipart without any part (no delimiter found) cannot be written as one (the writer
		// panics on an empty multipart); show its body as text.
		typ, sub, params = "text", "plain", map[string]string{"charset": "us-ascii"}
	}
	sp := &imap.BodyStructureSinglePart{
		Type:        typ,
		Subtype:     sub,
		Params:      cleanParams(params),
		ID:          clean(p.header.get("Content-ID")),
		Description: clean(p.header.get("Content-Description")),
		Encoding:    clean(p.header.get("Content-Transfer-Encoding")),
		Size:        clamp32(p.size()),
		Extended: &imap.BodyStructureSinglePartExt{
			Disposition: disposition(p.header),
			Language:    languages(p.header),
			Location:    clean(p.header.get("Content-Location")),
		},
	}
	switch {
	case p.msg != nil:
		sp.MessageRFC822 = &imap.BodyStructureMessageRFC822{
			Envelope:      buildEnvelope(p.msg.header),
			BodyStructure: bodyStructure(p.msg),
			NumLines:      p.lines,
		}
	case typ == "text":
		sp.Text = &imap.BodyStructureText{NumLines: p.lines}
	}
	return sp
}

func clamp32(n int64) uint32 {
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

func disposition(h header) *imap.BodyStructureDisposition {
	v := h.get("Content-Disposition")
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

func languages(h header) []string {
	v := h.get("Content-Language")
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
