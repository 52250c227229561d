package mimeparse

import (
	"bytes"
	"io"
	"strings"

	"github.com/emersion/go-imap/v2"
)

// RFC 3501 §6.4.5 / RFC 9051 §6.4.5: section numbering. Every message has a part 1; the parts of a
// multipart are numbered 1..n; the parts of an encapsulated message (message/rfc822) are numbered as
// the subparts of the part that holds it.

// resolvePart returns the part named by path, or nil when there is none. For a non-multipart message,
// part 1 is the message itself (its body is the section's content).
func resolvePart(root *Part, path []int) *Part {
	cur, atMsg := root, true
	for _, n := range path {
		if n < 1 {
			return nil
		}
		if !atMsg && cur.Msg != nil {
			cur, atMsg = cur.Msg, true
		}
		switch {
		case cur.IsMultipart():
			if n > len(cur.Children) {
				return nil
			}
			cur, atMsg = cur.Children[n-1], false
		case atMsg && n == 1:
			atMsg = false
		default:
			return nil
		}
	}
	return cur
}

// Span is a section: a byte range of the message file, or bytes of its own when Data is set.
type Span struct {
	Off, N int64
	Data   []byte
	OK     bool // false: the section does not exist; it is sent as an empty string
}

// FileSpan is the byte range [from, to) of the message file (empty when to < from).
func FileSpan(from, to int64) Span {
	if to < from {
		to = from
	}
	return Span{Off: from, N: to - from, OK: true}
}

// DataSpan is a section made of the bytes b rather than of the file.
func DataSpan(b []byte) Span { return Span{Data: b, N: int64(len(b)), OK: true} }

// Partial applies a <offset.size> window.
func (s Span) Partial(p *imap.SectionPartial) Span {
	if p == nil {
		return s
	}
	// Both come from the client: clamp without adding them, since
	// off+size can overflow int64.
	off := min(max(p.Offset, 0), s.N)
	size := s.N - off
	if p.Size >= 0 {
		size = min(p.Size, size)
	}
	if s.Data != nil {
		s.Data = s.Data[off : off+size]
	} else {
		s.Off += off
	}
	s.N = size
	return s
}

// Reader returns the span's bytes from the message file f.
func (s Span) Reader(f io.ReaderAt) io.Reader {
	if s.Data != nil || !s.OK {
		return bytes.NewReader(s.Data)
	}
	return io.NewSectionReader(f, s.Off, s.N)
}

// BodySection locates a BODY[section] in a parsed message. The whole-message case (no part, no
// specifier) is served by the caller straight from the file.
func BodySection(root *Part, sec *imap.FetchItemBodySection) Span {
	target := root
	if len(sec.Part) > 0 {
		target = resolvePart(root, sec.Part)
		if target == nil {
			return Span{}
		}
	}
	var s Span
	switch sec.Specifier {
	case imap.PartSpecifierNone:
		if len(sec.Part) == 0 {
			s = FileSpan(root.HdrStart, root.End)
		} else {
			s = FileSpan(target.BodyStart, target.End)
		}
	case imap.PartSpecifierMIME:
		s = FileSpan(target.HdrStart, target.BodyStart)
	case imap.PartSpecifierHeader, imap.PartSpecifierText:
		msg := target
		if len(sec.Part) > 0 && target.Msg != nil {
			msg = target.Msg
		}
		switch {
		case sec.Specifier == imap.PartSpecifierText:
			s = FileSpan(msg.BodyStart, msg.End)
		case len(sec.HeaderFields) > 0:
			s = DataSpan(FilterHeader(msg.Header, sec.HeaderFields, false))
		case len(sec.HeaderFieldsNot) > 0:
			s = DataSpan(FilterHeader(msg.Header, sec.HeaderFieldsNot, true))
		default:
			s = FileSpan(msg.HdrStart, msg.BodyStart)
		}
	default:
		return Span{}
	}
	return s.Partial(sec.Partial)
}

// FilterHeader returns the fields of h named (or, with not, not named) in names, in their original
// order and bytes, followed by the blank line (RFC 3501: HEADER.FIELDS includes the delimiting blank line).
func FilterHeader(h Header, names []string, not bool) []byte {
	var b []byte
	for _, f := range h {
		match := f.Name != "" && nameIn(f.Name, names)
		if match == not {
			continue
		}
		b = append(b, f.Raw...)
		if !bytes.HasSuffix(f.Raw, []byte("\n")) {
			b = append(b, '\r', '\n')
		}
	}
	return append(b, '\r', '\n')
}

func nameIn(name string, names []string) bool {
	for _, n := range names {
		if strings.EqualFold(n, name) {
			return true
		}
	}
	return false
}

// BinarySection locates a BINARY[part] (RFC 3516): the part's body with its transfer encoding removed.
// An empty path is the whole message as stored. It returns the encoding to undo and the raw span.
func BinarySection(root *Part, path []int) (enc string, s Span) {
	if len(path) == 0 {
		return "", FileSpan(root.HdrStart, root.End)
	}
	target := resolvePart(root, path)
	if target == nil {
		return "", Span{}
	}
	if target.IsMultipart() || target.Msg != nil {
		// Composite parts have no transfer encoding of their own to undo (RFC 2045 §6.4).
		return "", FileSpan(target.BodyStart, target.End)
	}
	return target.Header.Get("Content-Transfer-Encoding"), FileSpan(target.BodyStart, target.End)
}

// DecodedSize counts the bytes of a decoded span.
func DecodedSize(f io.ReaderAt, enc string, s Span) (int64, error) {
	r, err := DecodeCTE(enc, s.Reader(f))
	if err != nil {
		return 0, err
	}
	return io.Copy(io.Discard, r)
}
