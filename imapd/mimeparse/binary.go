package mimeparse

import (
	"bytes"
	"encoding/base64"
	"strings"
)

// EncodeBinaryParts rewrites the parts of msg whose Content-Transfer-Encoding is "binary" as base64
// (their CTE field says so, the rest of the message is untouched), as Dovecot does with a message
// APPENDed as a literal8 (RFC 3516): a BODY[] answer is an ordinary literal, which must not carry
// NULs, while BINARY[] decodes the base64 and gives the client the bytes it sent. It reports false,
// and returns msg as it is, when there is no such part.
func EncodeBinaryParts(msg []byte) ([]byte, bool) {
	root := ParseMessage(bytes.NewReader(msg))
	var leaves []*Part
	var walk func(p *Part)
	walk = func(p *Part) {
		switch {
		case len(p.Children) > 0:
			for _, c := range p.Children {
				walk(c)
			}
		case strings.EqualFold(strings.TrimSpace(p.Header.Get("Content-Transfer-Encoding")), "binary"):
			leaves = append(leaves, p) // a binary message/rfc822 too: its bytes are opaque
		case p.Msg != nil:
			walk(p.Msg)
		}
	}
	walk(root)
	if len(leaves) == 0 {
		return msg, false
	}
	var out bytes.Buffer
	out.Grow(len(msg) + len(msg)/3)
	at := int64(0)
	for _, p := range leaves {
		if p.HdrStart < at || p.End > int64(len(msg)) || p.BodyStart > p.End {
			continue // (offsets out of order cannot happen; never rewrite what is not understood)
		}
		hdr := msg[p.HdrStart:p.BodyStart]
		f, ok := cteField(p.Header)
		i := bytes.Index(hdr, f.Raw)
		if !ok || i < 0 {
			continue
		}
		out.Write(msg[at : p.HdrStart+int64(i)])
		out.WriteString("Content-Transfer-Encoding: base64\r\n")
		out.Write(hdr[i+len(f.Raw):])
		writeBase64Lines(&out, msg[p.BodyStart:p.End])
		if p.End == int64(len(msg)) {
			out.WriteString("\r\n")
		}
		at = p.End
	}
	out.Write(msg[at:])
	return out.Bytes(), true
}

func cteField(h Header) (Field, bool) {
	for _, f := range h {
		if strings.EqualFold(f.Name, "Content-Transfer-Encoding") {
			return f, true
		}
	}
	return Field{}, false
}

// writeBase64Lines writes b in base64, 76 characters a line, lines joined by CRLF (no final CRLF).
func writeBase64Lines(out *bytes.Buffer, b []byte) {
	enc := base64.StdEncoding.EncodeToString(b)
	for len(enc) > 76 {
		out.WriteString(enc[:76])
		out.WriteString("\r\n")
		enc = enc[76:]
	}
	out.WriteString(enc)
}
