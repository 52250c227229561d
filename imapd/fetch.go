package imapd

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"postie/imapd/mimeparse"
	"postie/maildir"
)

// fetchBatch is how many messages are gathered per look at the mailbox.
const fetchBatch = 256

// Fetch answers FETCH and UID FETCH. A body section fetched without PEEK sets \Seen (not after EXAMINE)
// and the new flags are part of the answer.
func (s *session) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	markSeen := false
	if !s.sel.readOnly {
		for _, bs := range options.BodySection {
			markSeen = markSeen || !bs.Peek
		}
		for _, bs := range options.BinarySection {
			markSeen = markSeen || !bs.Peek
		}
	}
	if markSeen {
		defer s.busy()()
	}
	return s.fetch(w, numSet, options, markSeen)
}

func (s *session) fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions, markSeen bool) error {
	sel := s.sel
	sel.entry.cache.touch()
	f := &fetcher{s: s, w: w, opts: options, flagNames: make(map[uint64][]imap.Flag)}
	defer f.release()
	prefill := onlyCachedFields(options)
	if err := s.fetchVanished(w, numSet, options); err != nil {
		return err
	}
	err := sel.each(numSet, fetchBatch, func(batch []*message) error {
		batch = changedSince(batch, options.ChangedSince)
		if markSeen {
			if err := s.markSeen(batch); err != nil {
				return err
			}
		}
		if prefill {
			// Header sync: read the headers the cache lacks on several goroutines, then write.
			parallel(batch, func(_ int, m *message) {
				m.cachedRaw()
				m.closeFile()
			})
		}
		for _, m := range batch {
			err := f.one(m)
			m.close()
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return f.result
}

// errConnLost ends a command whose answer could not be written: the client is gone, so nothing more
// is read for it, and nothing is logged (one line per failed message once flooded the log).
var errConnLost = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable, Text: "Connection lost"}

// onlyCachedFields reports whether a FETCH needs nothing from the files but cached header fields.
func onlyCachedFields(o *imap.FetchOptions) bool {
	if o.BodyStructure != nil || len(o.BinarySection) > 0 || len(o.BinarySectionSize) > 0 {
		return false
	}
	for _, sec := range o.BodySection {
		if len(sec.Part) > 0 || sec.Specifier != imap.PartSpecifierHeader || !allCached(sec.HeaderFields) {
			return false
		}
	}
	return o.Envelope || len(o.BodySection) > 0
}

// markSeen sets \Seen on the messages of batch that lack it, before their data goes out.
func (s *session) markSeen(batch []*message) error {
	var uids []uint32
	for _, m := range batch {
		if m.flags&uint64(maildir.FlagSeen) == 0 {
			uids = append(uids, m.uid)
		}
	}
	if len(uids) == 0 {
		return nil
	}
	changed, err := s.sel.mbox.SetFlags(uids, maildir.FlagsAdd, maildir.FlagSeen, s.sel.st)
	if err != nil {
		return s.mailError("fetch", err)
	}
	byUID := make(map[uint32]maildir.Message, len(changed))
	for _, c := range changed {
		byUID[c.UID] = c
	}
	for _, m := range batch {
		if c, ok := byUID[m.uid]; ok {
			m.flags, m.modseq, m.flagsChanged = uint64(c.Flags)|m.flags&flagRecent, c.ModSeq, true
		}
	}
	return nil
}

// fetcher writes the FETCH responses of one command.
type fetcher struct {
	s         *session
	w         *imapserver.FetchWriter
	opts      *imap.FetchOptions
	flagNames map[uint64][]imap.Flag // per command: flag sets repeat
	result    error                  // the command's final answer when some items could not be served
	sizeWarn  bool
	buf       *[]byte // for copying literals, borrowed from copyBufs
}

// literal is one prepared body or binary section: bytes in memory, or a reader of n bytes.
type literal struct {
	n    int64
	data []byte // when set, the n bytes themselves
	r    io.Reader
}

// prepared holds everything a response needs, gathered before the response starts: once
// CreateMessage is called the connection is locked until Close, and nothing may fail in between.
type prepared struct {
	env      *imap.Envelope
	bs       imap.BodyStructure
	sections []literal
	binaries []literal
	binOK    []bool
	sizes    []uint32
	preview  *string // PREVIEW (preview.go)
}

func (f *fetcher) one(m *message) error {
	p, err := f.prepare(m)
	if errors.Is(err, maildir.ErrNoSuchMessage) {
		return nil // expunged meanwhile (by another process): RFC 9051 §7.5.2 lets us leave it out
	}
	if err != nil {
		return f.s.mailError("fetch", err)
	}
	if f.write(m, p) != nil {
		return errConnLost
	}
	return nil
}

func (f *fetcher) prepare(m *message) (*prepared, error) {
	o := f.opts
	p := &prepared{}
	if o.Envelope {
		h, err := m.cachedHeader()
		if err != nil {
			return nil, err
		}
		p.env = mimeparse.Envelope(h)
	}
	if o.BodyStructure != nil {
		root, err := m.structure()
		if err != nil {
			return nil, err
		}
		p.bs = mimeparse.BodyStructure(root)
	}
	if err := f.preparePreview(m, p); err != nil {
		return nil, err
	}
	for _, sec := range o.BodySection {
		l, err := f.bodyLiteral(m, sec)
		if err != nil {
			return nil, err
		}
		p.sections = append(p.sections, l)
	}
	for _, sec := range o.BinarySection {
		l, ok, err := f.binaryLiteral(m, sec.Part, sec.Partial)
		if err != nil {
			return nil, err
		}
		p.binaries = append(p.binaries, l)
		p.binOK = append(p.binOK, ok)
	}
	for _, sec := range o.BinarySectionSize {
		l, ok, err := f.binaryLiteral(m, sec.Part, nil)
		if err != nil {
			return nil, err
		}
		if !ok {
			l.n = 0
		}
		p.sizes = append(p.sizes, mimeparse.Clamp32(l.n))
	}
	return p, nil
}

// bodyLiteral locates a BODY[section]. The common cases avoid parsing the message: the whole message
// comes straight from the file (byte-exact, size = RFC822.SIZE), header fields from the cache, the
// header and text from one read of the header.
func (f *fetcher) bodyLiteral(m *message, sec *imap.FetchItemBodySection) (literal, error) {
	var sp mimeparse.Span
	if len(sec.Part) == 0 {
		switch {
		case sec.Specifier == imap.PartSpecifierNone:
			_, size, err := m.reader()
			if err != nil {
				return literal{}, err
			}
			if size != m.size && !f.sizeWarn {
				f.sizeWarn = true
				f.s.logf(slog.LevelWarn, "imap: message size differs from the store's", "uid", m.uid, "file", size, "store", m.size)
			}
			sp = mimeparse.FileSpan(0, size)
		case sec.Specifier == imap.PartSpecifierHeader && len(sec.HeaderFields) > 0 && allCached(sec.HeaderFields):
			raw, err := m.cachedRaw()
			if err != nil {
				return literal{}, err
			}
			sp = mimeparse.DataSpan(mimeparse.FilterRaw(raw, sec.HeaderFields))
		case sec.Specifier == imap.PartSpecifierHeader && len(sec.HeaderFields) > 0:
			h, err := m.fullHeader()
			if err != nil {
				return literal{}, err
			}
			sp = mimeparse.DataSpan(mimeparse.FilterHeader(h, sec.HeaderFields, false))
		case sec.Specifier == imap.PartSpecifierHeader && len(sec.HeaderFieldsNot) > 0:
			h, err := m.fullHeader()
			if err != nil {
				return literal{}, err
			}
			sp = mimeparse.DataSpan(mimeparse.FilterHeader(h, sec.HeaderFieldsNot, true))
		case sec.Specifier == imap.PartSpecifierHeader || sec.Specifier == imap.PartSpecifierText:
			if _, err := m.fullHeader(); err != nil {
				return literal{}, err
			}
			if sec.Specifier == imap.PartSpecifierHeader {
				sp = mimeparse.FileSpan(0, m.hdrEnd)
			} else {
				sp = mimeparse.FileSpan(m.hdrEnd, m.f.Size()) // m.f is open: fullHeader read it
			}
		}
		if sp.OK {
			sp = sp.Partial(sec.Partial)
		}
	}
	if !sp.OK {
		root, err := m.structure()
		if err != nil {
			return literal{}, err
		}
		sp = mimeparse.BodySection(root, sec)
	}
	if m.ra == nil && sp.Data == nil && sp.OK {
		if _, err := m.file(); err != nil {
			return literal{}, err
		}
	}
	if sp.Data == nil && sp.OK {
		if b := m.memSlice(sp.Off, sp.N); b != nil {
			return literal{n: sp.N, data: b}, nil
		}
	}
	return literal{n: sp.N, r: sp.Reader(m.ra)}, nil
}

// binaryLiteral locates a BINARY[part] (RFC 3516): the decoded content, sized by a first decoding
// pass. ok is false when the transfer encoding is unknown.
func (f *fetcher) binaryLiteral(m *message, part []int, partial *imap.SectionPartial) (literal, bool, error) {
	root, err := m.structure()
	if err != nil {
		return literal{}, false, err
	}
	enc, sp := mimeparse.BinarySection(root, part)
	n, err := mimeparse.DecodedSize(m.ra, enc, sp)
	if errors.Is(err, mimeparse.ErrUnknownCTE) {
		f.result = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnknownCTE, Text: "Unknown Content-Transfer-Encoding"}
		return literal{}, false, nil
	}
	if err != nil {
		return literal{}, false, err
	}
	off, size := int64(0), n
	if partial != nil {
		off = min(max(partial.Offset, 0), n)
		size = min(max(partial.Size, 0), n-off)
	}
	r, _ := mimeparse.DecodeCTE(enc, sp.Reader(m.ra))
	return literal{n: size, r: &skipReader{r: r, skip: off, left: size}}, true, nil
}

// skipReader drops the first skip bytes and stops after left bytes.
type skipReader struct {
	r          io.Reader
	skip, left int64
}

func (s *skipReader) Read(p []byte) (int, error) {
	if s.skip > 0 {
		if _, err := io.CopyN(io.Discard, s.r, s.skip); err != nil {
			return 0, err
		}
		s.skip = 0
	}
	if s.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > s.left {
		p = p[:s.left]
	}
	n, err := s.r.Read(p)
	s.left -= int64(n)
	return n, err
}

func (f *fetcher) flags(m *message) []imap.Flag {
	if l, ok := f.flagNames[m.flags]; ok {
		return l
	}
	e := f.s.sel.entry
	if !e.knows(maildir.Flags(m.flags)) {
		e.refreshKeywords() // another process defined a keyword
	}
	l := withRecent(e.flagList(maildir.Flags(m.flags)), m.flags)
	f.flagNames[m.flags] = l
	return l
}

// write sends one FETCH response; it cannot fail half-way (a short read is padded, so the literal
// keeps its announced size, and logged). An error means the connection failed.
func (f *fetcher) write(m *message, p *prepared) (err error) {
	o := f.opts
	rw := f.w.CreateMessage(m.seq)
	defer func() {
		if cerr := rw.Close(); err == nil {
			err = cerr
		}
	}()
	if o.UID {
		rw.WriteUID(imap.UID(m.uid))
	}
	if o.Flags || m.flagsChanged {
		rw.WriteFlags(f.flags(m))
	}
	if o.RFC822Size {
		rw.WriteRFC822Size(m.size)
	}
	if o.InternalDate {
		rw.WriteInternalDate(m.date)
	}
	if o.ModSeq {
		rw.WriteModSeq(max(m.modseq, 1))
	}
	if p.env != nil {
		rw.WriteEnvelope(p.env)
	}
	if p.bs != nil {
		rw.WriteBodyStructure(p.bs)
	}
	if o.Preview {
		rw.WritePreview(p.preview)
	}
	for i, sec := range o.BodySection {
		l := p.sections[i]
		if err := f.copyLiteral(m, rw.WriteBodySection(sec, l.n), l); err != nil {
			return err
		}
	}
	for i, sec := range o.BinarySection {
		if p.binOK[i] {
			l := p.binaries[i]
			if err := f.copyLiteral(m, rw.WriteBinarySection(sec, l.n), l); err != nil {
				return err
			}
		}
	}
	for i, sec := range o.BinarySectionSize {
		rw.WriteBinarySectionSize(sec, p.sizes[i])
	}
	return nil
}

// copyLiteral sends a literal's n bytes: in one write when they are in memory, else through one
// buffer for the whole command. A file that gives fewer bytes than announced is padded (and logged);
// an error returned is the connection's.
func (f *fetcher) copyLiteral(m *message, w io.WriteCloser, l literal) error {
	cw := &countWriter{w: w}
	var rerr error
	if l.data != nil || l.r == nil {
		cw.Write(l.data[:min(int64(len(l.data)), l.n)])
	} else {
		if f.buf == nil {
			f.buf = copyBufs.Get().(*[]byte)
		}
		_, rerr = io.CopyBuffer(cw, io.LimitReader(l.r, l.n), *f.buf)
	}
	if cw.err != nil {
		return cw.err
	}
	if got := cw.n; got < l.n {
		pad := bytes.Repeat([]byte{' '}, int(min(l.n-got, 32<<10)))
		for cw.n < l.n && cw.err == nil {
			cw.Write(pad[:min(l.n-cw.n, int64(len(pad)))])
		}
		if cw.err != nil {
			return cw.err
		}
		f.s.logf(slog.LevelError, "imap fetch: short read", "uid", m.uid, "want", l.n, "got", got, "err", fmt.Sprint(rerr))
	}
	return w.Close()
}

// countWriter counts what was written and keeps the first write error: it tells a failed connection
// (a write error) from a short file (a read error) in io.Copy.
type countWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.err = err
	return n, err
}

// copyBufs lends the buffer a FETCH streams big literals through (not kept by idle sessions).
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// release gives back what the command borrowed.
func (f *fetcher) release() {
	if f.buf != nil {
		copyBufs.Put(f.buf)
		f.buf = nil
	}
}
