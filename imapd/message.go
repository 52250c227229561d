package imapd

import (
	"bytes"
	"io"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"postie/imapd/mimeparse"
)

// msgFile is an open message file.
type msgFile interface {
	io.ReaderAt
	io.Closer
	Size() int64 // the file's real size
}

// msgSource gives access to the files and cached fields of one mailbox during a command.
type msgSource struct {
	open     func(uid uint32) (msgFile, error)
	cache    *boxCache // nil: no cache
	validity uint32
}

// message is one message during a command: its state from the mailbox, and the file-backed parts
// (file, header, structure), loaded at most once and only when needed.
type message struct {
	src   *msgSource
	seq   uint32 // client view; 0 when the client does not know the message yet
	uid   uint32
	size  int64
	date  time.Time
	flags uint64

	modseq       uint64 // RFC 7162
	flagsChanged bool   // \Seen was just set by this FETCH: FLAGS go out

	f      msgFile
	mem    *[]byte          // a small message read whole, for parsing, searching and sending
	memN   int64            // its length in mem
	ra     io.ReaderAt      // mem's reader, or f
	hdrEnd int64            // where the body starts, once the header was read
	full   mimeparse.Header // the top-level header
	subRaw string           // the cached fields, raw
	sub    mimeparse.Header // subRaw parsed
	hasSub bool
	root   *mimeparse.Part
}

func (m *message) seqNum() uint32 { return m.seq }
func (m *message) uidNum() uint32 { return m.uid }
func (m *message) state() (int64, time.Time, uint64) {
	return m.size, m.date, m.flags
}

// file opens the message file once.
func (m *message) file() (msgFile, error) {
	if m.f == nil {
		f, err := m.src.open(m.uid)
		if err != nil {
			return nil, err
		}
		m.f, m.ra = f, f
	}
	return m.f, nil
}

// smallMessage is the size up to which a message that is parsed is first read whole (one read call,
// no buffered re-reads).
const smallMessage = 64 << 10

var smallBufs = sync.Pool{New: func() any { b := make([]byte, smallMessage); return &b }}

// reader returns the message's bytes for parsing and section reads, and their number. A message
// the store says is small is read whole in one pread of one byte more than its size: that read also
// tells its real size (a short one ends early, a longer one fills the byte more), so no fstat is
// needed. Only when the file is bigger than the store thinks is its size asked for.
func (m *message) reader() (io.ReaderAt, int64, error) {
	if m.mem != nil {
		return m.ra, m.memN, nil
	}
	f, err := m.file()
	if err != nil {
		return nil, 0, err
	}
	if m.size >= 0 && m.size < smallMessage {
		buf := smallBufs.Get().(*[]byte)
		n, err := f.ReadAt((*buf)[:m.size+1], 0)
		switch {
		case err == io.EOF && int64(n) <= m.size:
			m.keep(buf, n)
			return m.ra, m.memN, nil
		case err != nil && err != io.EOF:
			smallBufs.Put(buf)
			return nil, 0, err
		}
		smallBufs.Put(buf) // bigger than the store says
	}
	size := f.Size()
	if size <= smallMessage {
		buf := smallBufs.Get().(*[]byte)
		n, err := f.ReadAt((*buf)[:size], 0)
		if err != nil && !(err == io.EOF && int64(n) == size) {
			smallBufs.Put(buf)
			return nil, 0, err
		}
		m.keep(buf, n)
		return m.ra, m.memN, nil
	}
	return m.ra, size, nil
}

// keep makes the first n bytes of buf the message's in-memory copy.
func (m *message) keep(buf *[]byte, n int) {
	m.mem, m.memN = buf, int64(n)
	m.ra = bytes.NewReader((*buf)[:n])
}

// memSlice returns the in-memory copy of the span [off, off+n), or nil when the message is not in
// memory.
func (m *message) memSlice(off, n int64) []byte {
	if m.mem == nil || off < 0 || n < 0 || off+n > m.memN {
		return nil
	}
	return (*m.mem)[off : off+n : off+n]
}

// closeFile releases the file (and the in-memory copy), keeping what was parsed from the header.
func (m *message) closeFile() {
	if m.f != nil {
		m.f.Close()
		m.f = nil
	}
	if m.mem != nil {
		smallBufs.Put(m.mem)
		m.mem, m.memN = nil, 0
	}
	m.ra, m.root = nil, nil
}

// close releases everything loaded for the message.
func (m *message) close() {
	m.closeFile()
	m.full, m.sub, m.subRaw, m.hasSub = nil, nil, "", false
}

func (m *message) fullHeader() (mimeparse.Header, error) {
	if m.full != nil {
		return m.full, nil
	}
	if m.root != nil {
		m.full, m.hdrEnd = m.root.Header, m.root.BodyStart
		return m.full, nil
	}
	if _, err := m.file(); err != nil {
		return nil, err
	}
	// To the end of the file, whatever its size: no fstat.
	raw, end := mimeparse.ReadHeaderBlock(io.NewSectionReader(m.ra, 0, math.MaxInt64))
	m.full, m.hdrEnd = mimeparse.ParseHeader(raw), end
	if m.full == nil {
		m.full = mimeparse.Header{}
	}
	return m.full, nil
}

// cachedRaw returns the raw cached fields, reading the header and filling the cache on a miss.
func (m *message) cachedRaw() (string, error) {
	if m.hasSub {
		return m.subRaw, nil
	}
	c := m.src.cache
	if c != nil {
		if s, ok := c.get(m.src.validity, m.uid); ok {
			m.subRaw, m.hasSub = s, true
			return s, nil
		}
	}
	h, err := m.fullHeader()
	if err != nil {
		return "", err
	}
	s := cachedSubset(h)
	if c != nil {
		c.put(m.src.validity, m.uid, s)
	}
	m.subRaw, m.hasSub = s, true
	return s, nil
}

// cachedHeader returns the cached fields parsed.
func (m *message) cachedHeader() (mimeparse.Header, error) {
	if m.sub != nil {
		return m.sub, nil
	}
	s, err := m.cachedRaw()
	if err != nil {
		return nil, err
	}
	m.sub = mimeparse.ParseHeader([]byte(s))
	if m.sub == nil {
		m.sub = mimeparse.Header{}
	}
	return m.sub, nil
}

// structure parses the whole message once.
func (m *message) structure() (*mimeparse.Part, error) {
	if m.root != nil {
		return m.root, nil
	}
	ra, size, err := m.reader()
	if err != nil {
		return nil, err
	}
	m.root = mimeparse.ParseMessage(io.NewSectionReader(ra, 0, size))
	return m.root, nil
}

func (m *message) textFound(needles []mimeparse.Needle) ([]bool, error) {
	root, err := m.structure()
	if err != nil {
		return nil, err
	}
	return mimeparse.FindText(m.ra, root, needles)
}

// parallel runs fn on every message of batch, on a few goroutines: reading message files is
// system-call bound, and the messages are independent. Each message is handled by one goroutine.
func parallel(batch []*message, fn func(i int, m *message)) {
	workers := min(len(batch), 2*runtime.GOMAXPROCS(0), 8)
	if workers <= 1 {
		for i, m := range batch {
			fn(i, m)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(batch) {
					return
				}
				fn(i, batch[i])
			}
		}()
	}
	wg.Wait()
}
