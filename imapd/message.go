package imapd

import (
	"io"
	"time"
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

	flagsChanged bool // \Seen was just set by this FETCH: FLAGS go out

	f      msgFile
	hdrEnd int64 // where the body starts, once the header was read
	full   header
	sub    header
	hasSub bool
	root   *part
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
		m.f = f
	}
	return m.f, nil
}

// close releases the file and everything parsed from it.
func (m *message) close() {
	if m.f != nil {
		m.f.Close()
		m.f = nil
	}
	m.full, m.sub, m.root, m.hasSub = nil, nil, nil, false
}

func (m *message) fullHeader() (header, error) {
	if m.full != nil {
		return m.full, nil
	}
	f, err := m.file()
	if err != nil {
		return nil, err
	}
	if m.root != nil {
		m.full, m.hdrEnd = m.root.header, m.root.bodyStart
		return m.full, nil
	}
	raw, end := readHeaderBlock(io.NewSectionReader(f, 0, f.Size()))
	m.full, m.hdrEnd = parseHeader(raw), end
	if m.full == nil {
		m.full = header{}
	}
	return m.full, nil
}

// cachedHeader returns the cached fields, reading the header and filling the cache on a miss.
func (m *message) cachedHeader() (header, error) {
	if m.hasSub {
		return m.sub, nil
	}
	if c := m.src.cache; c != nil {
		if s, ok := c.get(m.src.validity, m.uid); ok {
			m.sub, m.hasSub = parseHeader([]byte(s)), true
			return m.sub, nil
		}
	}
	h, err := m.fullHeader()
	if err != nil {
		return nil, err
	}
	s := cachedSubset(h)
	if c := m.src.cache; c != nil {
		c.put(m.src.validity, m.uid, s)
	}
	m.sub, m.hasSub = parseHeader([]byte(s)), true
	return m.sub, nil
}

// structure parses the whole message once.
func (m *message) structure() (*part, error) {
	if m.root != nil {
		return m.root, nil
	}
	f, err := m.file()
	if err != nil {
		return nil, err
	}
	m.root = parseMessage(io.NewSectionReader(f, 0, f.Size()))
	return m.root, nil
}

func (m *message) textFound(needles []needle) ([]bool, error) {
	root, err := m.structure()
	if err != nil {
		return nil, err
	}
	tm := newTextMatcher(needles)
	if err := searchText(tm, m.f, root); err != nil {
		return nil, err
	}
	return tm.found, nil
}
