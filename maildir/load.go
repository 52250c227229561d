package maildir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Mailbox returns the named folder's state, loaded once per process and
// shared. ErrNoSuchMailbox if it does not exist.
func (u *User) Mailbox(name string) (*Mailbox, error) {
	canon, err := canonicalName(name)
	if err != nil {
		return nil, err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.mailboxLocked(canon)
}

// loadedMailbox returns the folder's state if this process has loaded it.
func (u *User) loadedMailbox(name string) *Mailbox {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.boxes[name]
}

// mailboxLocked returns the canonical name's Mailbox, loading it; u.mu held.
func (u *User) mailboxLocked(name string) (*Mailbox, error) {
	if m := u.boxes[name]; m != nil {
		m.mu.RLock()
		deleted := m.deleted
		m.mu.RUnlock()
		if !deleted {
			return m, nil
		}
		delete(u.boxes, name)
	}
	dir := filepath.Join(u.dir, folderDir(name))
	if fi, err := os.Stat(filepath.Join(dir, "cur")); err != nil || !fi.IsDir() {
		switch {
		case errors.Is(err, os.ErrNotExist) && u.existsLocked(name): // half-made, now healed
		case err == nil || errors.Is(err, os.ErrNotExist):
			return nil, fmt.Errorf("%w: %s", ErrNoSuchMailbox, name)
		default:
			return nil, fmt.Errorf("maildir: open %s: %w", name, err)
		}
	}
	m := &Mailbox{u: u, id: u.s.boxIDs.Add(1), name: name, dir: dir}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.loadLocked(); err != nil {
		return nil, fmt.Errorf("maildir: open %s: %w", name, err)
	}
	u.boxes[name] = m
	return m, nil
}

// loadLine is a UID list line while loading, with what the listing of cur/
// says of its file.
type loadLine struct {
	ulLine
	size    int64
	flags   Flags
	present bool
	odd     *oddName
	newName string // the file is still in new/, under this name
	stale   bool   // the file's flags are not those the line records
}

// loadLocked reads the folder: the UID list, then one listing each of cur/
// and new/, with no stat per file (sizes come from ",S=" in the names).
// Files the UID list does not know get UIDs; new/ files move to cur/.
func (m *Mailbox) loadLocked() error {
	if m.name != "INBOX" {
		m.u.cleanTmp(filepath.Join(m.dir, "tmp"))
	}
	m.loadKeywordsLocked()
	// Under the flock, so that no other process numbers a file between our
	// reading of the UID list and our listing of the directories.
	unlock, err := m.lockUIDList()
	if err != nil {
		return err
	}
	defer unlock()
	l := &loader{m: m, curPath: filepath.Join(m.dir, "cur"), newPath: filepath.Join(m.dir, "new")}
	if err := l.readUIDList(); err != nil {
		return err
	}
	// new/ before cur/: a file another process moves from new/ to cur/
	// while we list is seen at least once.
	newNames, err := l.listNew()
	if err != nil {
		return err
	}
	if err := l.listCur(); err != nil {
		return err
	}
	l.matchNew(newNames)
	return l.finish()
}

// loader is one loading of a folder, its phases in the order loadLocked
// runs them.
type loader struct {
	m                *Mailbox
	curPath, newPath string
	began            int64 // when the directories were first stat-ed (ns)
	curSt, newSt     dirStat
	lines            []loadLine
	idx              map[string]int32 // base name → index in lines (the last line wins)
	seen             int              // lines whose file was found
	found            []foundFile      // files with no UID yet
	vanished         []vanishedUID    // expunge lines
}

// readUIDList stats the directories, then reads the UID list (a new one if
// missing or damaged) into lines.
func (l *loader) readUIDList() error {
	m := l.m
	l.began = time.Now().UnixNano()
	var err error
	if l.curSt, err = statDir(l.curPath); err != nil {
		return err
	}
	if l.newSt, err = statDir(l.newPath); err != nil {
		return err
	}
	uf, err := readUIDList(m.uidlistPath())
	if err != nil {
		return err
	}
	if !uf.ok {
		if uf, err = m.resetUIDList(); err != nil {
			return err
		}
	}
	m.uidValidity, m.uidNext = uf.hdr.uidValidity, uf.hdr.next
	m.modseqTop, m.floor = uf.hdr.modseq, uf.hdr.floor
	est := len(uf.data)/80 + 16
	l.lines = make([]loadLine, 0, est)
	l.idx = make(map[string]int32, est)
	consumed, bad := parseLines(uf.data, func(ul ulLine) {
		if ul.uid >= m.uidNext {
			m.uidNext = ul.uid + 1
		}
		m.modseqTop = max(m.modseqTop, ul.ms)
		if ul.gone {
			l.vanished = append(l.vanished, vanishedUID{uid: ul.uid, ms: ul.ms})
		}
		l.idx[ul.key] = int32(len(l.lines))
		l.lines = append(l.lines, loadLine{ulLine: ul})
	})
	m.modseqTop = max(m.modseqTop, 1)
	m.modseq = m.modseqTop
	m.vanished = m.vanished[:0]
	for _, v := range l.vanished {
		m.noteVanishedLocked(v.uid, v.ms)
	}
	l.vanished = nil
	if bad > 0 {
		m.u.log().Warn("maildir: malformed uidlist lines skipped", "mailbox", m.name, "lines", bad)
	}
	m.ul = ulState{ino: uf.st.ino, consumed: int64(uf.hdrLen + consumed), size: uf.st.size}
	return nil
}

// listNew lists new/.
func (l *loader) listNew() ([]string, error) {
	var names []string
	err := l.m.list(l.newPath, func(name []byte) {
		if name[0] != '.' {
			names = append(names, string(name))
		}
	})
	if err != nil {
		return nil, err
	}
	l.m.new.strict = true
	l.m.new.setScanned(l.newSt, l.began)
	return names, nil
}

// match marks the line of a listed file present, with its flags and size;
// false if no line names it.
func (l *loader) match(name []byte, dir string) bool {
	key, info := splitName(name)
	j, ok := l.idx[string(key)]
	if !ok || l.lines[j].gone {
		return false // a file whose UID was expunged is a new message
	}
	if l.lines[j].present {
		return true
	}
	ln := &l.lines[j]
	ln.present = true
	l.seen++
	if ln.hasInfo && !infoIs(info, ln.info) {
		ln.stale = true // flags changed with no modseq recorded
	}
	f, unknown, canon := parseInfo(info)
	ln.flags = f
	if !canon || unknown != "" {
		o := oddFor(name, len(key), unknown, canon)
		ln.odd = &o
	}
	if s, ok := keySize(ln.key); ok {
		ln.size = s
	} else {
		ln.size, _ = fileFacts(filepath.Join(l.m.dir, dir, string(name)), ln.key)
	}
	return true
}

// listCur lists cur/, matching files to lines; unknown ones are found. A
// second listing catches files a concurrent rename hid from the first.
func (l *loader) listCur() error {
	err := l.m.list(l.curPath, func(name []byte) {
		if name[0] != '.' && !l.match(name, "cur") {
			l.found = append(l.found, foundFile{name: string(name)})
		}
	})
	if err != nil {
		return err
	}
	if after, err := statDir(l.curPath); err == nil && after != l.curSt && l.seen < len(l.idx) {
		if err := l.m.list(l.curPath, func(name []byte) { l.match(name, "cur") }); err != nil {
			return err
		}
	}
	l.m.cur.setScanned(l.curSt, l.began)
	return nil
}

// matchNew sorts the files of new/: numbered (by another process) but not
// moved yet, or unknown.
func (l *loader) matchNew(names []string) {
	for _, n := range names {
		key, _ := splitName([]byte(n))
		j, ok := l.idx[string(key)]
		switch {
		case ok && !l.lines[j].present && !l.lines[j].gone:
			l.match([]byte(n), "new")
			l.lines[j].newName = n
		case !ok || l.lines[j].gone:
			l.found = append(l.found, foundFile{name: n, inNew: true})
		}
	}
}

// finish builds the message list, moves numbered files of new/ to cur/,
// numbers the unknown files, and checks the UID list and keywords.
func (l *loader) finish() error {
	m := l.m
	lost := l.lostUIDs()
	again, moves := m.buildLocked(l.lines)
	found := append(l.found, again...)
	if len(moves) > 0 {
		if err := m.moveNumberedLocked(moves); err != nil {
			return err
		}
	}
	if len(found) > 0 {
		if err := m.addFilesLocked(found); err != nil {
			return err
		}
	}
	if err := m.recordLoadedLocked(l.lines, lost); err != nil {
		m.u.log().Warn("maildir: modseq record", "mailbox", m.name, "err", err)
	}
	m.maybeCompactLocked()
	var used Flags
	for i := range m.msgs {
		used |= m.msgs[i].Flags
	}
	m.checkKeywordsLocked(used)
	return nil
}

// moveNumberedLocked moves to cur/ the files of new/ that already have
// UIDs (their names in new/ by UID).
func (m *Mailbox) moveNumberedLocked(moves map[uint32]string) error {
	unlock, err := m.lockUIDList()
	if err != nil {
		return err
	}
	defer unlock()
	var gone []int
	mv := openDirMover(m.u.s.fs, filepath.Join(m.dir, "new"), filepath.Join(m.dir, "cur"), len(moves) > 4)
	defer mv.close()
	for uid, name := range moves {
		i, _ := m.indexLocked(uid)
		var unknown string
		if len(m.odd) > 0 {
			unknown = m.odd[uid].unknown
		}
		toName := canonicalFileName(m.keys[i], m.msgs[i].Flags, unknown)
		if err := mv.rename(name, toName); err != nil {
			if _, serr := os.Lstat(filepath.Join(m.dir, "cur", toName)); serr != nil { // not moved by someone else either: gone
				gone = append(gone, i)
			}
		}
		m.setOddLocked(uid, oddName{unknown: unknown})
	}
	slices.Sort(gone)
	m.removeLocked(gone, nil)
	m.new.ownChange(filepath.Join(m.dir, "new"))
	m.cur.ownChange(filepath.Join(m.dir, "cur"))
	return nil
}

// buildLocked makes the message list from the loaded lines whose file is
// present, with every base name in one string. It returns the files whose
// UID another line already took (a damaged list: they get new UIDs), and
// the files of new/ that have UIDs (by UID), to be moved to cur/.
func (m *Mailbox) buildLocked(lines []loadLine) (again []foundFile, moves map[uint32]string) {
	live, total := 0, 0
	for i := range lines {
		if lines[i].present {
			live++
			total += len(lines[i].key)
		}
	}
	var b strings.Builder
	b.Grow(total)
	for i := range lines {
		if lines[i].present {
			b.WriteString(lines[i].key)
		}
	}
	arena := b.String()
	m.msgs = make([]Message, 0, live+live/8+8)
	m.keys = make([]string, 0, cap(m.msgs))
	var extra []loadExtra // parallel to msgs, only when some message needs it
	off := 0
	for i := range lines {
		l := &lines[i]
		if !l.present {
			continue
		}
		key := arena[off : off+len(l.key)]
		off += len(l.key)
		t := l.t
		if t == 0 {
			t, _ = keyTime(key)
		}
		m.msgs = append(m.msgs, Message{UID: l.uid, Size: l.size, Date: time.Unix(t, 0), Flags: l.flags, ModSeq: max(l.ms, 1)})
		m.keys = append(m.keys, key)
		if (l.odd != nil || l.newName != "") && extra == nil {
			extra = make([]loadExtra, len(m.msgs)-1, cap(m.msgs))
		}
		if extra != nil {
			e := loadExtra{newName: l.newName}
			if l.odd != nil {
				e.odd = *l.odd
			}
			extra = append(extra, e)
		}
	}
	if !slices.IsSortedFunc(m.msgs, func(a, b Message) int { return int64cmp(int64(a.UID), int64(b.UID)) }) {
		m.sortByUID(extra)
	}
	m.byKey = make(map[string]uint32, len(m.msgs))
	m.dead = len(lines) - len(m.msgs)
	w := 0
	for i := range m.msgs {
		var e loadExtra
		if extra != nil {
			e = extra[i]
		}
		if w > 0 && m.msgs[i].UID == m.msgs[w-1].UID { // damaged: one UID, two files
			switch {
			case e.newName != "":
				again = append(again, foundFile{name: e.newName, inNew: true})
			case e.odd.exact:
				again = append(again, foundFile{name: m.keys[i] + e.odd.suffix})
			default:
				again = append(again, foundFile{name: canonicalFileName(m.keys[i], m.msgs[i].Flags, e.odd.unknown)})
			}
			continue
		}
		m.msgs[w], m.keys[w] = m.msgs[i], m.keys[i]
		uid := m.msgs[w].UID
		m.byKey[m.keys[w]] = uid
		m.size += m.msgs[w].Size
		m.setOddLocked(uid, e.odd)
		if e.newName != "" {
			if moves == nil {
				moves = make(map[uint32]string)
			}
			moves[uid] = e.newName
		}
		w++
	}
	clear(m.keys[w:])
	m.msgs, m.keys = m.msgs[:w], m.keys[:w]
	return again, moves
}

// loadExtra is what a few loaded messages carry besides Message.
type loadExtra struct {
	odd     oddName
	newName string
}

func int64cmp(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// sortByUID sorts msgs, keys and extra (if not nil) together.
func (m *Mailbox) sortByUID(extra []loadExtra) {
	perm := make([]int, len(m.msgs))
	for i := range perm {
		perm[i] = i
	}
	slices.SortStableFunc(perm, func(a, b int) int { return int64cmp(int64(m.msgs[a].UID), int64(m.msgs[b].UID)) })
	msgs := make([]Message, len(m.msgs), cap(m.msgs))
	keys := make([]string, len(m.keys), cap(m.keys))
	var e2 []loadExtra
	if extra != nil {
		e2 = make([]loadExtra, len(extra))
	}
	for i, p := range perm {
		msgs[i], keys[i] = m.msgs[p], m.keys[p]
		if extra != nil {
			e2[i] = extra[p]
		}
	}
	m.msgs, m.keys = msgs, keys
	copy(extra, e2)
}

// resetUIDList starts a new UID list with a new UIDVALIDITY (greater than
// any this user had) when the file is missing or its header is damaged.
func (m *Mailbox) resetUIDList() (ulFile, error) {
	unlock, err := m.lockUIDList()
	if err != nil {
		return ulFile{}, err
	}
	defer unlock()
	path := m.uidlistPath()
	uf, err := readUIDList(path) // another process may have just written it
	if err != nil || uf.ok {
		return uf, err
	}
	_, statErr := os.Stat(path)
	v, err := m.u.nextUIDValidity(1)
	if err != nil {
		return uf, err
	}
	if statErr == nil {
		m.u.log().Warn("maildir: damaged uidlist; UIDs reassigned", "mailbox", m.name, "uidvalidity", v)
	}
	if err := m.u.s.fs.WriteFile(path, appendHeader(nil, ulHeader{uidValidity: v, next: 1}), 0o600); err != nil {
		return uf, fmt.Errorf("maildir: uidlist: %w", err)
	}
	return readUIDList(path)
}
