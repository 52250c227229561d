package imapd

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
func resolvePart(root *part, path []int) *part {
	cur, atMsg := root, true
	for _, n := range path {
		if n < 1 {
			return nil
		}
		if !atMsg && cur.msg != nil {
			cur, atMsg = cur.msg, true
		}
		switch {
		case cur.isMultipart():
			if n > len(cur.children) {
				return nil
			}
			cur, atMsg = cur.children[n-1], false
		case atMsg && n == 1:
			atMsg = false
		default:
			return nil
		}
	}
	return cur
}

// span is a byte range of the message file, or literal bytes when data is set.
type span struct {
	off, n int64
	data   []byte
	ok     bool // false: the section does not exist; it is sent as an empty string
}

func fileSpan(from, to int64) span {
	if to < from {
		to = from
	}
	return span{off: from, n: to - from, ok: true}
}

func dataSpan(b []byte) span { return span{data: b, n: int64(len(b)), ok: true} }

// partial applies a <offset.size> window.
func (s span) partial(p *imap.SectionPartial) span {
	if p == nil {
		return s
	}
	// Both come from the client: clamp without adding them, since
	// off+size can overflow int64.
	off := min(max(p.Offset, 0), s.n)
	size := s.n - off
	if p.Size >= 0 {
		size = min(p.Size, size)
	}
	if s.data != nil {
		s.data = s.data[off : off+size]
	} else {
		s.off += off
	}
	s.n = size
	return s
}

// reader returns the span's bytes from the message file f.
func (s span) reader(f io.ReaderAt) io.Reader {
	if s.data != nil || !s.ok {
		return bytes.NewReader(s.data)
	}
	return io.NewSectionReader(f, s.off, s.n)
}

// bodySection locates a BODY[section] in a parsed message. The whole-message case (no part, no
// specifier) is served by the caller straight from the file.
func bodySection(root *part, sec *imap.FetchItemBodySection) span {
	target := root
	if len(sec.Part) > 0 {
		target = resolvePart(root, sec.Part)
		if target == nil {
			return span{}
		}
	}
	var s span
	switch sec.Specifier {
	case imap.PartSpecifierNone:
		if len(sec.Part) == 0 {
			s = fileSpan(root.hdrStart, root.end)
		} else {
			s = fileSpan(target.bodyStart, target.end)
		}
	case imap.PartSpecifierMIME:
		s = fileSpan(target.hdrStart, target.bodyStart)
	case imap.PartSpecifierHeader, imap.PartSpecifierText:
		msg := target
		if len(sec.Part) > 0 && target.msg != nil {
			msg = target.msg
		}
		switch {
		case sec.Specifier == imap.PartSpecifierText:
			s = fileSpan(msg.bodyStart, msg.end)
		case len(sec.HeaderFields) > 0:
			s = dataSpan(filterHeader(msg.header, sec.HeaderFields, false))
		case len(sec.HeaderFieldsNot) > 0:
			s = dataSpan(filterHeader(msg.header, sec.HeaderFieldsNot, true))
		default:
			s = fileSpan(msg.hdrStart, msg.bodyStart)
		}
	default:
		return span{}
	}
	return s.partial(sec.Partial)
}

// filterHeader returns the fields of h named (or, with not, not named) in names, in their original
// order and bytes, followed by the blank line (RFC 3501: HEADER.FIELDS includes the delimiting blank line).
func filterHeader(h header, names []string, not bool) []byte {
	var b []byte
	for _, f := range h {
		match := f.name != "" && nameIn(f.name, names)
		if match == not {
			continue
		}
		b = append(b, f.raw...)
		if !bytes.HasSuffix(f.raw, []byte("\n")) {
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

// binarySection locates a BINARY[part] (RFC 3516): the part's body with its transfer encoding removed.
// An empty path is the whole message as stored. It returns the encoding to undo and the raw span.
func binarySection(root *part, path []int) (enc string, s span) {
	if len(path) == 0 {
		return "", fileSpan(root.hdrStart, root.end)
	}
	target := resolvePart(root, path)
	if target == nil {
		return "", span{}
	}
	if target.isMultipart() || target.msg != nil {
		// Composite parts have no transfer encoding of their own to undo (RFC 2045 §6.4).
		return "", fileSpan(target.bodyStart, target.end)
	}
	return target.header.get("Content-Transfer-Encoding"), fileSpan(target.bodyStart, target.end)
}

// decodedSize counts the bytes of a decoded span.
func decodedSize(f io.ReaderAt, enc string, s span) (int64, error) {
	r, err := decodeCTE(enc, s.reader(f))
	if err != nil {
		return 0, err
	}
	return io.Copy(io.Discard, r)
}
