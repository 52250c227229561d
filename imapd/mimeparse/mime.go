// Package mimeparse analyses stored messages for the IMAP server; imapd keeps the protocol.
//
// ParseMessage locates the MIME structure of a message by byte offsets (Part), so every section is a
// byte range of the file (BodySection, BinarySection, Span) served by streaming, never by
// re-serialising. BodyStructure and Envelope build those answers in go-imap's types. DecodeCTE undoes
// transfer encodings leniently; text is converted from its charset to UTF-8 through
// golang.org/x/text. FindText and HeaderContains find case-folded (Fold) words for SEARCH.
//
// The contract: any bytes parse and nothing panics; memory and nesting are bounded whatever the
// input (header bytes kept, MIME depth, part count); a message is only read, never changed, through
// the io.ReaderAt the caller gives; no state is kept between calls, and every function is safe for
// concurrent use.
package mimeparse

import (
	"bufio"
	"bytes"
	"io"
	"mime"
	"strings"
	"sync"
)

// Limits that keep a hostile message from costing unbounded memory or stack.
const (
	maxHeaderBytes = 256 << 10 // header bytes kept for field parsing; the rest is skipped (but counted)
	maxMIMEDepth   = 32        // nesting beyond this is treated as an opaque leaf
	maxMIMEParts   = 10000     // parts beyond this are folded into their parent's body
	lineBufSize    = 32 << 10
)

// Part is one MIME entity of a stored message, located by byte offsets in the message file: its header
// is [HdrStart, BodyStart) (blank line included) and its body is [BodyStart, End). Offsets make every
// section a plain byte range of the file, so sections are served by streaming, never by re-serialising.
type Part struct {
	HdrStart, BodyStart, End int64
	Header                   Header

	Type, Subtype string            // lower case, e.g. "text", "plain"
	Params        map[string]string // Content-Type parameters (names lower case)
	Children      []*Part           // multipart/*
	Msg           *Part             // message/rfc822 and message/global: the encapsulated message
	Lines         int64             // lines of the body (text/* and message/rfc822)
}

// Size is the length of the part's body.
func (p *Part) Size() int64 { return p.End - p.BodyStart }

// IsMultipart reports whether the part is a multipart/* (whose parts are its Children).
func (p *Part) IsMultipart() bool { return p.Type == "multipart" }

// Field is one header field as it appears in the file: Raw holds the name, the colon, the value with its
// folding and the line end(s). A line that is not a field (no colon) has an empty name.
type Field struct {
	Name string // as written
	Raw  []byte
}

// Value returns the unfolded field body with surrounding white space removed.
func (f Field) Value() string {
	i := bytes.IndexByte(f.Raw, ':')
	if i < 0 {
		return ""
	}
	v := f.Raw[i+1:]
	if bytes.IndexByte(v, '\n') < 0 && bytes.IndexByte(v, '\r') < 0 {
		return string(bytes.TrimSpace(v))
	}
	var b strings.Builder
	b.Grow(len(v))
	for _, c := range v {
		if c != '\r' && c != '\n' {
			b.WriteByte(c)
		}
	}
	return strings.TrimSpace(b.String())
}

// Header is a header block, field by field in the order of the file.
type Header []Field

// Get returns the unfolded value of the first field named name (case-insensitive).
func (h Header) Get(name string) string {
	for _, f := range h {
		if strings.EqualFold(f.Name, name) {
			return f.Value()
		}
	}
	return ""
}

// Has reports whether h has a field called name (case-insensitive).
func (h Header) Has(name string) bool {
	for _, f := range h {
		if strings.EqualFold(f.Name, name) {
			return true
		}
	}
	return false
}

// ParseHeader splits a raw header block into fields. raw may include the terminating blank line.
func ParseHeader(raw []byte) Header {
	var h Header
	for len(raw) > 0 {
		n := bytes.IndexByte(raw, '\n') + 1
		if n == 0 {
			n = len(raw)
		}
		line := raw[:n]
		if isBlankLine(line) {
			break
		}
		if (line[0] == ' ' || line[0] == '\t') && len(h) > 0 {
			last := &h[len(h)-1]
			// raw is one contiguous buffer and the continuation follows the field directly, so extending
			// the slice keeps the exact bytes.
			last.Raw = last.Raw[:len(last.Raw)+n]
		} else {
			name := ""
			if i := bytes.IndexByte(line, ':'); i > 0 {
				name = string(bytes.TrimRight(line[:i], " \t"))
				if !validFieldName(name) {
					name = ""
				}
			}
			h = append(h, Field{Name: name, Raw: line})
		}
		raw = raw[n:]
	}
	return h
}

func validFieldName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

func isBlankLine(line []byte) bool {
	return len(line) == 1 && line[0] == '\n' || len(line) == 2 && line[0] == '\r' && line[1] == '\n'
}

// contentType parses a Content-Type value leniently. It returns lower-case type and subtype, or empty
// strings when the value is unusable.
func contentType(v string) (typ, sub string, params map[string]string) {
	if v == "" {
		return "", "", nil
	}
	mt, ps, err := mime.ParseMediaType(v)
	if err != nil && mt == "" {
		// Keep what can be understood: "text/plain; charset=..." with a broken parameter.
		mt, _, _ = strings.Cut(v, ";")
		mt = strings.ToLower(strings.TrimSpace(mt))
		ps = lenientParams(v)
	}
	t, s, ok := strings.Cut(mt, "/")
	if !ok || !isToken(t) || !isToken(s) {
		return "", "", nil
	}
	return t, s, ps
}

// lenientParams extracts name=value pairs from a Content-Type that mime.ParseMediaType refused.
func lenientParams(v string) map[string]string {
	var ps map[string]string
	parts := strings.Split(v, ";")
	for _, p := range parts[1:] {
		k, val, ok := strings.Cut(p, "=")
		if !ok {
			continue
		}
		k = strings.ToLower(strings.TrimSpace(k))
		val = strings.Trim(strings.TrimSpace(val), `"`)
		if !isToken(k) {
			continue
		}
		if ps == nil {
			ps = make(map[string]string)
		}
		if _, dup := ps[k]; !dup {
			ps[k] = val
		}
	}
	return ps
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?=`, c) >= 0 {
			return false
		}
	}
	return true
}

// lineReader yields lines (or, for very long lines, fragments) with their file offsets.
type lineReader struct {
	br       *bufio.Reader
	off      int64 // offset of the next byte
	lf       int64 // line feeds seen before off
	midLine  bool  // the next fragment continues a line
	lastLine []byte
}

func newLineReader(br *bufio.Reader, start int64) *lineReader {
	return &lineReader{br: br, off: start}
}

// Line readers are pooled: a FETCH or SEARCH over a big mailbox parses many messages.
var (
	bigReaders   = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, lineBufSize) }}
	smallReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}
)

func getReader(p *sync.Pool, r io.Reader) *bufio.Reader {
	br := p.Get().(*bufio.Reader)
	br.Reset(r)
	return br
}

func putReader(p *sync.Pool, br *bufio.Reader) {
	br.Reset(nil)
	p.Put(br)
}

// next returns the next fragment and whether it starts a line. At EOF it returns nil.
func (lr *lineReader) next() (frag []byte, lineStart bool) {
	b, err := lr.br.ReadSlice('\n')
	if len(b) == 0 && err != nil {
		return nil, false
	}
	lineStart = !lr.midLine
	lr.midLine = err == bufio.ErrBufferFull
	lr.off += int64(len(b))
	if b[len(b)-1] == '\n' {
		lr.lf++
	}
	return b, lineStart
}

// boundHit tells where and why an entity ended.
type boundHit struct {
	level       int   // index into parser.bounds; -1 at end of file
	closing     bool  // "--boundary--"
	at          int64 // offset of the boundary line (or of EOF)
	eolLen      int64 // length of the line break before the boundary line (it belongs to the delimiter); at EOF, of the last line's break
	lf          int64 // line feeds before at
	blankBefore bool  // the line before the boundary line was blank
}

type parser struct {
	lr     *lineReader
	bounds []string
	parts  int
	// the previous line, to place the end of a body before a delimiter's leading line break
	prevEOL   int64
	prevBlank bool
}

// ParseMessage parses the MIME structure of a whole message read from r.
func ParseMessage(r io.Reader) *Part {
	br := getReader(&bigReaders, r)
	defer putReader(&bigReaders, br)
	p := &parser{lr: newLineReader(br, 0)}
	root, _ := p.entity(0, "text", "plain")
	return root
}

// boundary reports whether line is a delimiter of an enclosing multipart.
func (p *parser) boundary(line []byte) (level int, closing bool) {
	if len(line) < 3 || line[0] != '-' || line[1] != '-' {
		return -1, false
	}
	rest := line[2:]
	for i := len(p.bounds) - 1; i >= 0; i-- {
		b := p.bounds[i]
		if !bytes.HasPrefix(rest, []byte(b)) {
			continue
		}
		tail := rest[len(b):]
		if bytes.HasPrefix(tail, []byte("--")) {
			return i, true
		}
		if len(bytes.Trim(tail, " \t\r\n")) == 0 {
			return i, false
		}
	}
	return -1, false
}

// readLine reads one line; a delimiter line or the end of the file is reported as a hit instead.
func (p *parser) readLine() (line []byte, lineStart bool, hit *boundHit) {
	start, lfBefore := p.lr.off, p.lr.lf
	line, lineStart = p.lr.next()
	if line == nil {
		return nil, false, &boundHit{level: -1, at: start, lf: lfBefore, eolLen: p.prevEOL}
	}
	if lineStart && len(p.bounds) > 0 {
		if lvl, closing := p.boundary(line); lvl >= 0 {
			h := &boundHit{level: lvl, closing: closing, at: start, eolLen: p.prevEOL, lf: lfBefore, blankBefore: p.prevBlank}
			p.noteLine(line, true)
			return nil, true, h
		}
	}
	p.noteLine(line, lineStart)
	return line, lineStart, nil
}

func (p *parser) noteLine(line []byte, lineStart bool) {
	switch {
	case bytes.HasSuffix(line, []byte("\r\n")):
		p.prevEOL = 2
	case line[len(line)-1] == '\n':
		p.prevEOL = 1
	default:
		p.prevEOL = 0
	}
	p.prevBlank = lineStart && isBlankLine(line)
}

// finish sets the end of pt's body from the hit that ended it, and its line count.
func (p *parser) finish(pt *Part, h *boundHit, lfAtBody int64) {
	end, lf := h.at, h.lf
	endsLF := h.level < 0 && h.eolLen > 0
	if h.level >= 0 {
		end -= h.eolLen
		if h.eolLen > 0 {
			lf--
		}
		endsLF = h.blankBefore
	}
	if end <= pt.BodyStart {
		// Empty body. The delimiter's line break may even be the blank line that ended the header.
		end = max(end, pt.HdrStart)
		pt.BodyStart = min(pt.BodyStart, end)
		pt.End, pt.Lines = pt.BodyStart, 0
		return
	}
	pt.End = end
	if pt.Type == "text" || pt.Msg != nil {
		pt.Lines = lf - lfAtBody
		if !endsLF {
			pt.Lines++ // a last line without its own line break still counts
		}
	}
}

// entity parses one header and body. It returns when a delimiter of an enclosing multipart, or the
// end of the file, ends the entity.
func (p *parser) entity(depth int, defType, defSub string) (*Part, *boundHit) {
	p.parts++
	pt := &Part{HdrStart: p.lr.off}
	var raw []byte
	var hit *boundHit
	truncated := false
	for hit == nil {
		var line []byte
		var lineStart bool
		line, lineStart, hit = p.readLine()
		if hit != nil {
			pt.BodyStart = hit.at
			if hit.level >= 0 {
				// The line break before a delimiter belongs to the delimiter (it may also end the
				// delimiter line that opened this entity, which then is empty).
				pt.BodyStart = hit.at - hit.eolLen
				pt.HdrStart = min(pt.HdrStart, pt.BodyStart)
			}
			break
		}
		if !truncated && len(raw)+len(line) <= maxHeaderBytes {
			raw = append(raw, line...)
		} else {
			truncated = true
		}
		if lineStart && isBlankLine(line) {
			pt.BodyStart = p.lr.off
			break
		}
	}
	pt.Header = ParseHeader(raw)
	pt.Type, pt.Subtype, pt.Params = contentType(pt.Header.Get("Content-Type"))
	if pt.Type == "" {
		pt.Type, pt.Subtype, pt.Params = defType, defSub, nil
		if defType == "text" {
			pt.Params = map[string]string{"charset": "us-ascii"}
		}
	}
	if hit != nil { // the header ran into a delimiter or the end: no body
		pt.End = pt.BodyStart
		return pt, hit
	}
	lfAtBody := p.lr.lf
	switch {
	case pt.Type == "multipart" && pt.Params["boundary"] != "" && depth < maxMIMEDepth && p.parts < maxMIMEParts:
		hit = p.multipart(pt, depth)
	case pt.Type == "message" && (pt.Subtype == "rfc822" || pt.Subtype == "global") && depth < maxMIMEDepth:
		pt.Msg, hit = p.entity(depth+1, "text", "plain")
	default:
		hit = p.skipBody()
	}
	p.finish(pt, hit, lfAtBody)
	return pt, hit
}

// skipBody reads lines until a delimiter or the end of the file.
func (p *parser) skipBody() *boundHit {
	for {
		if _, _, h := p.readLine(); h != nil {
			return h
		}
	}
}

// multipart parses the preamble, the parts and the epilogue of pt.
func (p *parser) multipart(pt *Part, depth int) *boundHit {
	p.bounds = append(p.bounds, pt.Params["boundary"])
	level := len(p.bounds) - 1
	defer func() { p.bounds = p.bounds[:level] }()
	childType, childSub := "text", "plain"
	if pt.Subtype == "digest" {
		childType, childSub = "message", "rfc822"
	}
	hit := p.skipBody() // preamble
	for hit.level == level && !hit.closing {
		if p.parts >= maxMIMEParts {
			hit = p.skipBody()
			continue
		}
		var child *Part
		child, hit = p.entity(depth+1, childType, childSub)
		pt.Children = append(pt.Children, child)
	}
	if hit.level == level { // closing delimiter: skip the epilogue, where our boundary means nothing
		p.bounds = p.bounds[:level]
		hit = p.skipBody()
	}
	return hit
}

// ReadHeaderBlock reads the top-level header of a message: its raw bytes (at most maxHeaderBytes are
// kept, whole lines only) and the offset where the body starts.
func ReadHeaderBlock(r io.Reader) (raw []byte, bodyStart int64) {
	br := getReader(&smallReaders, r)
	defer putReader(&smallReaders, br)
	lr := newLineReader(br, 0)
	raw = make([]byte, 0, 2048)
	truncated := false
	for {
		line, lineStart := lr.next()
		if line == nil {
			return raw, lr.off
		}
		if !truncated && len(raw)+len(line) <= maxHeaderBytes {
			raw = append(raw, line...)
		} else {
			truncated = true
		}
		if lineStart && isBlankLine(line) {
			return raw, lr.off
		}
	}
}

// FilterRaw is filterHeader for raw header bytes kept as a string (the cache's form), without
// building the field list: the same bytes come out.
func FilterRaw(raw string, names []string) []byte {
	out := make([]byte, 0, len(raw)+2)
	keep, first := false, true
	for len(raw) > 0 {
		n := strings.IndexByte(raw, '\n') + 1
		if n == 0 {
			n = len(raw)
		}
		line := raw[:n]
		if line == "\r\n" || line == "\n" {
			break
		}
		if first || line[0] != ' ' && line[0] != '\t' { // else a continuation: as its field
			first, keep = false, false
			if i := strings.IndexByte(line, ':'); i > 0 {
				name := strings.TrimRight(line[:i], " \t")
				keep = validFieldName(name) && nameIn(name, names)
			}
		}
		if keep {
			out = append(out, line...)
			if line[len(line)-1] != '\n' {
				out = append(out, '\r', '\n')
			}
		}
		raw = raw[n:]
	}
	return append(out, '\r', '\n')
}
