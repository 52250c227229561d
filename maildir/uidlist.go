package maildir

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The UID list of a folder (postie-uidlist), modelled on Dovecot's
// dovecot-uidlist:
//
//	1 V<uidvalidity> N<uidnext> M<highest modseq> E<vanished floor>
//	<uid> T<internal date, unix seconds> M<modseq> F<info letters> :<base name without info>
//	<uid> T<date> M<modseq> X :<base name, or "x" when no longer known>
//
// The M, F, X fields and the header's M and E are the CONDSTORE record
// (modseq.go); older readers skip fields they do not know, so the format
// stays readable by them. A message's line is appended again, under the same
// UID, each time its flags change (M and F say the new state); an X line
// says the UID was expunged at that modseq. The latest line of a UID wins.
//
// Lines are only ever appended (under the flock of postie-uidlist.lock, then
// fsynced) or the whole file is replaced through a temporary file and
// rename. The next UID is max(N, greatest UID listed + 1), so appending needs
// no header rewrite. When a base name is listed twice, the later (greater)
// UID wins. Lines whose file no longer exists are dead; they are dropped
// when the file is rewritten.

// ulLine is one UID line.
type ulLine struct {
	uid  uint32
	t    int64
	key  string
	ms   uint64 // modseq; 0: not recorded (an older writer)
	info string // info letters after "2," (F field), valid with hasInfo
	// hasInfo: the line records the flags (F); gone: an expunge record (X).
	hasInfo, gone bool
}

// ulHeader is the parsed header line.
type ulHeader struct {
	uidValidity uint32
	next        uint32
	modseq      uint64 // highest modseq handed out (M)
	floor       uint64 // expunges up to this modseq may be forgotten (E)
}

// ulState is how much of the file on disk we have read.
type ulState struct {
	ino      uint64
	consumed int64 // bytes parsed, up to the end of the last complete line
	size     int64 // file size when last looked at (> consumed: a torn last line)
}

// parseHeader parses the first line; ok is false if it is not ours.
func parseHeader(line string) (h ulHeader, ok bool) {
	f := strings.Fields(line)
	if len(f) < 3 || f[0] != "1" {
		return h, false
	}
	for _, x := range f[1:] {
		if len(x) < 2 {
			continue
		}
		n, err := strconv.ParseUint(x[1:], 10, 64)
		if err != nil {
			return h, false
		}
		switch x[0] {
		case 'V':
			if n > 1<<32-1 {
				return h, false
			}
			h.uidValidity = uint32(n)
		case 'N':
			if n > 1<<32-1 {
				return h, false
			}
			h.next = uint32(n)
		case 'M':
			h.modseq = n
		case 'E':
			h.floor = n
		}
	}
	return h, h.uidValidity != 0 && h.next != 0
}

// parseLines parses UID lines from data (which must start at a line
// boundary), calling fn for each good one. It returns the number of bytes up
// to the end of the last complete line, and the number of malformed lines.
func parseLines(data string, fn func(ulLine)) (consumed int, bad int) {
	for consumed < len(data) {
		nl := strings.IndexByte(data[consumed:], '\n')
		if nl < 0 {
			break // a torn last line: a writer crashed before its fsync
		}
		line := data[consumed : consumed+nl]
		consumed += nl + 1
		l, ok := parseLine(line)
		if !ok {
			if line != "" {
				bad++
			}
			continue
		}
		fn(l)
	}
	return consumed, bad
}

func parseLine(line string) (ulLine, bool) {
	var l ulLine
	sp := strings.IndexByte(line, ' ')
	if sp <= 0 {
		return l, false
	}
	uid, err := strconv.ParseUint(line[:sp], 10, 32)
	if err != nil || uid == 0 {
		return l, false
	}
	l.uid = uint32(uid)
	rest := line[sp+1:]
	for rest != "" && rest[0] != ':' {
		sp := strings.IndexByte(rest, ' ')
		if sp < 0 {
			return l, false
		}
		f := rest[:sp]
		if f == "" {
			f = "-" // two spaces: no field
		}
		switch f[0] {
		case 'T':
			t, err := strconv.ParseInt(f[1:], 10, 64)
			if err != nil {
				return l, false
			}
			l.t = t
		case 'M':
			ms, err := strconv.ParseUint(f[1:], 10, 63)
			if err != nil {
				return l, false
			}
			l.ms = ms
		case 'F':
			l.info, l.hasInfo = f[1:], true
		case 'X':
			l.gone = true
		}
		rest = rest[sp+1:]
	}
	if len(rest) < 2 || strings.ContainsAny(rest[1:], ":/\x00") {
		return l, false
	}
	l.key = rest[1:]
	return l, true
}

func appendLine(b []byte, l ulLine) []byte {
	b = strconv.AppendUint(b, uint64(l.uid), 10)
	b = append(b, " T"...)
	b = strconv.AppendInt(b, l.t, 10)
	if l.ms != 0 {
		b = append(b, " M"...)
		b = strconv.AppendUint(b, l.ms, 10)
	}
	if l.gone {
		b = append(b, " X"...)
	} else if l.hasInfo {
		b = append(b, " F"...)
		b = append(b, l.info...)
	}
	b = append(b, " :"...)
	b = append(b, l.key...)
	return append(b, '\n')
}

func appendHeader(b []byte, h ulHeader) []byte {
	if h.modseq == 0 {
		return fmt.Appendf(b, "1 V%d N%d\n", h.uidValidity, h.next)
	}
	return fmt.Appendf(b, "1 V%d N%d M%d E%d\n", h.uidValidity, h.next, h.modseq, h.floor)
}

// ulFile is the UID list as read from disk.
type ulFile struct {
	data   string // everything after the header line
	hdr    ulHeader
	hdrLen int
	st     ulState // consumed not set
	ok     bool    // present, with a valid header
}

// readUIDList reads the whole file. ok is false when the file is missing or
// its header is not valid.
func readUIDList(path string) (ulFile, error) {
	var u ulFile
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return u, nil
	}
	if err != nil {
		return u, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return u, err
	}
	buf := make([]byte, fi.Size()+512)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return u, err
	}
	buf = buf[:n]
	u.st.ino = fi.Sys().(*syscall.Stat_t).Ino
	u.st.size = int64(n)
	nl := bytes.IndexByte(buf, '\n')
	if nl < 0 {
		return u, nil
	}
	u.hdr, u.ok = parseHeader(string(buf[:nl]))
	if !u.ok {
		return u, nil
	}
	u.hdrLen = nl + 1
	u.data = string(buf[nl+1:])
	return u, nil
}

// uidlistPath and friends name the folder's files.
func (m *Mailbox) uidlistPath() string     { return filepath.Join(m.dir, uidlistFile) }
func (m *Mailbox) uidlistLockPath() string { return filepath.Join(m.dir, uidlistLock) }

// lockUIDList takes the folder's writer lock (flock, so other processes are
// excluded too). Call with m.mu held; while held, further calls are no-ops,
// since two flocks of one file in one process would wait for each other.
func (m *Mailbox) lockUIDList() (unlock func(), err error) {
	if m.flocked {
		return func() {}, nil
	}
	release, err := flock(m.uidlistLockPath(), false)
	if err != nil {
		return nil, err
	}
	m.flocked = true
	return func() {
		m.flocked = false
		release()
	}, nil
}

// syncUIDListLocked reads what other processes appended to (or rewrote in)
// the UID list since we last looked, with the flock held. Lines for base
// names we do not hold become pending: the UID another process gave a file we
// have not listed yet (see placePendingLocked). It returns their base names.
func (m *Mailbox) syncUIDListLocked() (newPending []string, err error) {
	path := m.uidlistPath()
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		// Lost behind our back: write it again from what we hold (same
		// UIDVALIDITY; our UIDs stay valid).
		return nil, m.rewriteUIDListLocked()
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	ino := fi.Sys().(*syscall.Stat_t).Ino
	size := fi.Size()
	if ino == m.ul.ino && size == m.ul.size {
		return nil, nil
	}
	note := func(l ulLine) {
		if l.uid >= m.uidNext {
			m.uidNext = l.uid + 1
		}
		m.modseqTop = max(m.modseqTop, l.ms)
		if l.gone {
			m.syncGoneLocked(l)
			return
		}
		if cur, ok := m.byKey[l.key]; ok && cur == l.uid {
			m.applyLineLocked(l)
			return
		}
		if m.pending == nil {
			m.pending = make(map[string]ulLine)
		}
		if p, ok := m.pending[l.key]; ok && p.uid == l.uid {
			m.pending[l.key] = l // a later state of a message we have not placed yet
			return
		}
		if _, known := m.byKey[l.key]; !known {
			m.pending[l.key] = l
			newPending = append(newPending, l.key)
		}
	}
	if ino == m.ul.ino && size > m.ul.consumed {
		buf := make([]byte, size-m.ul.consumed)
		n, err := f.ReadAt(buf, m.ul.consumed)
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		c, _ := parseLines(string(buf[:n]), note)
		m.ul.consumed += int64(c)
		m.ul.size = size
		if c > 0 {
			m.sawOthers() // another process numbers files here
		}
		return newPending, nil
	}
	// Replaced (or shrunk): read it all again.
	uf, err := readUIDList(path)
	if err != nil {
		return nil, err
	}
	if !uf.ok || uf.hdr.uidValidity != m.uidValidity {
		return nil, errUIDValidityChanged
	}
	if uf.hdr.next > m.uidNext {
		m.uidNext = uf.hdr.next
	}
	m.modseqTop = max(m.modseqTop, uf.hdr.modseq)
	m.floor = max(m.floor, uf.hdr.floor)
	c, _ := parseLines(uf.data, note)
	m.ul = ulState{ino: uf.st.ino, consumed: int64(uf.hdrLen + c), size: uf.st.size}
	m.sawOthers()
	return newPending, nil
}

// errUIDValidityChanged says another process reset the folder's UID list.
var errUIDValidityChanged = errors.New("maildir: UIDVALIDITY changed on disk")

// appendUIDListLocked appends lines and fsyncs them, with the flock held and
// after syncUIDListLocked. Only then may the UIDs be shown to anyone.
func (m *Mailbox) appendUIDListLocked(lines []ulLine) error {
	if len(lines) == 0 {
		return nil
	}
	b := make([]byte, 0, len(lines)*(len(lines[0].key)+24)+1)
	if m.ul.size > m.ul.consumed {
		b = append(b, '\n') // end a torn line left by a crashed writer
	}
	for _, l := range lines {
		b = appendLine(b, l)
	}
	size, err := m.u.s.fs.Append(m.uidlistPath(), b)
	if err != nil {
		// Some of b may be in the file, not durably: cut it off (we hold
		// the flock, so it ends with our lines), lest this process or
		// another read those UIDs back and show them. Failing that, its
		// lines are dead (their files are not placed) and a torn one is
		// ended by the next append.
		if terr := os.Truncate(m.uidlistPath(), m.ul.size); terr != nil {
			m.u.log().Warn("maildir: uidlist take-back", "mailbox", m.name, "err", terr)
		}
		return fmt.Errorf("maildir: uidlist: %w", err)
	}
	m.ul.size = size
	m.ul.consumed = m.ul.size
	return nil
}

// rewriteUIDListLocked replaces the UID list with the header and one line
// per message we hold (plus pending lines of other processes), with the
// flock held. Dead lines disappear.
func (m *Mailbox) rewriteUIDListLocked() error {
	b := make([]byte, 0, 32+len(m.msgs)*(len(m.keysSample())+24))
	b = appendHeader(b, ulHeader{uidValidity: m.uidValidity, next: m.uidNext, modseq: max(m.modseqTop, 1), floor: m.floor})
	for i := range m.msgs {
		b = appendLine(b, m.stateLineLocked(i, m.msgs[i].ModSeq))
	}
	for _, l := range m.pending {
		b = appendLine(b, l)
	}
	for _, v := range m.vanished {
		b = appendLine(b, ulLine{uid: v.uid, key: "x", ms: v.ms, gone: true})
	}
	path := m.uidlistPath()
	if err := m.u.s.fs.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("maildir: uidlist: %w", err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return fmt.Errorf("maildir: uidlist: %w", err)
	}
	m.ul = ulState{ino: st.Ino, consumed: int64(len(b)), size: int64(len(b))}
	m.dead = 0
	return nil
}

func (m *Mailbox) keysSample() string {
	if len(m.keys) == 0 {
		return ""
	}
	return m.keys[0]
}

// maybeCompactLocked rewrites the UID list when dead lines outnumber live
// ones (and are many), so it does not grow without end.
func (m *Mailbox) maybeCompactLocked() {
	if m.dead < 1000 || m.dead < len(m.msgs) {
		return
	}
	unlock, err := m.lockUIDList()
	if err != nil {
		m.u.log().Warn("maildir: compact uidlist", "mailbox", m.name, "err", err)
		return
	}
	defer unlock()
	if _, err := m.lockSyncedLocked(nil); err != nil { // flocked: unlocks nothing
		m.u.log().Warn("maildir: compact uidlist", "mailbox", m.name, "err", err)
		return
	}
	if err := m.rewriteUIDListLocked(); err != nil {
		m.u.log().Warn("maildir: compact uidlist", "mailbox", m.name, "err", err)
		return
	}
	m.compactKeys()
}

// nextUIDValidity hands out n UIDVALIDITY values (first, first+1, ...) for
// new or reset folders of this user: the current time, and always greater
// than any handed out before (postie-uidvalidity remembers the last one).
func (u *User) nextUIDValidity(n int) (first uint32, err error) {
	unlock, err := flock(filepath.Join(u.dir, rootLock), false)
	if err != nil {
		return 0, err
	}
	defer unlock()
	path := filepath.Join(u.dir, uidvalFile)
	var last uint64
	if b, err := os.ReadFile(path); err == nil {
		if v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32); err == nil {
			last = v
		}
	}
	v := uint64(time.Now().Unix())
	if v <= last {
		v = last + 1
	}
	end := v + uint64(n) - 1
	if end > 1<<32-1 {
		return 0, fmt.Errorf("maildir: UIDVALIDITY exhausted")
	}
	if err := u.s.fs.WriteFile(path, []byte(strconv.FormatUint(end, 10)+"\n"), 0o600); err != nil {
		return 0, fmt.Errorf("maildir: uidvalidity: %w", err)
	}
	return uint32(v), nil
}
