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

// UIDs are assigned under the folder's flock, after reading what other
// processes appended to the UID list. Those lines name files we may not have
// listed yet; we add them, with the UIDs they were given, before we assign
// any UID of our own, so that every process shows every message under one
// UID, in ascending order.

// candidate is a found file on its way to becoming a message.
type candidate struct {
	foundFile
	key     string
	flags   Flags
	unknown string
	canon   bool
	uid     uint32
	t       int64
	size    int64
	ms      uint64
}

func (m *Mailbox) candidate(f foundFile) candidate {
	key, info := splitName([]byte(f.name))
	c := candidate{foundFile: f, key: string(key)}
	c.flags, c.unknown, c.canon = parseInfo(info)
	dir := "cur"
	if f.inNew {
		dir = "new"
	}
	c.size, c.t = fileFacts(filepath.Join(m.dir, dir, f.name), c.key)
	return c
}

// lockSyncedLocked takes the folder's flock and brings us in step with the
// UID list (see above). found are files already listed that may be among
// those another process numbered.
func (m *Mailbox) lockSyncedLocked(found []foundFile) (unlock func(), err error) {
	for attempt := 0; ; attempt++ {
		unlock, err = m.lockUIDList()
		if err != nil {
			return nil, fmt.Errorf("maildir: %s: %w", m.name, err)
		}
		_, err = m.syncUIDListLocked()
		if errors.Is(err, errUIDValidityChanged) && attempt == 0 {
			unlock()
			if err := m.reloadLocked(); err != nil {
				return nil, err
			}
			continue
		}
		if err == nil {
			err = m.placePendingLocked(found)
		}
		if err != nil {
			unlock()
			return nil, fmt.Errorf("maildir: %s: %w", m.name, err)
		}
		return unlock, nil
	}
}

// placePendingLocked adds the files of pending UID lines (UIDs other
// processes gave) that are greater than every UID we show. A line whose file
// cannot be found is dead: if the file turns up later, it gets a new UID.
func (m *Mailbox) placePendingLocked(found []foundFile) error {
	if len(m.pending) == 0 {
		return nil
	}
	last := m.lastUIDLocked()
	want := make(map[string]bool)
	for key, l := range m.pending {
		if _, known := m.byKey[key]; known || l.uid <= last {
			delete(m.pending, key)
			continue
		}
		want[key] = true
	}
	if len(want) == 0 {
		return nil
	}
	var hits []foundFile
	take := func(f foundFile) {
		key, _ := splitName([]byte(f.name))
		if want[string(key)] {
			delete(want, string(key))
			hits = append(hits, f)
		}
	}
	for _, f := range found {
		take(f)
	}
	// A file listed in new/ has most likely been moved to cur/ by the
	// process that numbered it.
	kept := hits[:0]
	for _, f := range hits {
		if !f.inNew {
			kept = append(kept, f)
			continue
		}
		if _, err := os.Lstat(filepath.Join(m.dir, "new", f.name)); err != nil {
			key, _ := splitName([]byte(f.name))
			want[string(key)] = true
			continue
		}
		kept = append(kept, f)
	}
	hits = kept
	for key := range want {
		if _, err := os.Lstat(filepath.Join(m.dir, "cur", key+":2,")); err == nil {
			take(foundFile{name: key + ":2,"})
		}
	}
	// Renamed since (flags) or still in new/: look for the rest, twice, as
	// a rename can hide a file from one listing.
	for try := 0; try < 2 && len(want) > 0; try++ {
		for _, sub := range []string{"new", "cur"} {
			err := m.list(filepath.Join(m.dir, sub), func(name []byte) {
				key, _ := splitName(name)
				if want[string(key)] {
					take(foundFile{name: string(name), inNew: sub == "new"})
				}
			})
			if err != nil {
				return err
			}
		}
	}
	for key := range want {
		delete(m.pending, key)
		m.dead++
	}
	cands := make([]candidate, 0, len(hits))
	for _, f := range hits {
		c := m.candidate(f)
		l := m.pending[c.key]
		c.uid, c.t, c.ms = l.uid, l.t, l.ms
		if c.ms == 0 { // numbered by an older writer: no modseq recorded
			m.modseqTop++
			c.ms = m.modseqTop
		}
		cands = append(cands, c)
	}
	slices.SortFunc(cands, func(a, b candidate) int { return int64cmp(int64(a.uid), int64(b.uid)) })
	return m.admitLocked(cands)
}

// addFilesLocked gives UIDs to files we did not know, moves those in new/
// to cur/, and adds them. The UID list is fsynced before anyone sees them.
func (m *Mailbox) addFilesLocked(found []foundFile) error {
	unlock, err := m.lockSyncedLocked(found)
	if err != nil {
		return err
	}
	defer unlock()
	cands := make([]candidate, 0, len(found))
	for _, f := range found {
		key, _ := splitName([]byte(f.name))
		if _, known := m.byKey[string(key)]; !known {
			cands = append(cands, m.candidate(f))
		}
	}
	// In delivery order, which the name tells; a base name seen twice
	// (in new/ and cur/, while another process moved it) is kept once, from cur/.
	slices.SortStableFunc(cands, func(a, b candidate) int {
		if c := compareKeys(a.key, b.key); c != 0 {
			return c
		}
		switch {
		case a.inNew == b.inNew:
			return 0
		case a.inNew:
			return 1
		}
		return -1
	})
	cands = slices.CompactFunc(cands, func(a, b candidate) bool { return a.key == b.key })
	lines := make([]ulLine, len(cands))
	for i := range cands {
		c := &cands[i]
		c.uid = m.uidNext
		m.uidNext++
		c.ms = m.modseqTop + 1 + uint64(i)
		lines[i] = ulLine{uid: c.uid, t: c.t, key: c.key, ms: c.ms}
		if c.canon || c.inNew { // a file of new/ gets the canonical name
			lines[i].info, lines[i].hasInfo = infoLetters(canonicalFileName(c.key, c.flags, c.unknown), len(c.key))
		}
	}
	if err := m.appendUIDListLocked(lines); err != nil {
		return fmt.Errorf("maildir: %s: %w", m.name, err)
	}
	m.modseqTop += uint64(len(lines))
	if err := m.admitLocked(cands); err != nil {
		return fmt.Errorf("maildir: %s: %w", m.name, err)
	}
	return nil
}

// admitLocked adds candidates whose UIDs are set (ascending, greater than
// every UID we show); files in new/ move to cur/ first. A move that fails
// (other than for a file gone) stops it: that candidate and the rest are not
// added.
func (m *Mailbox) admitLocked(cands []candidate) (failed error) {
	curPath, newPath := filepath.Join(m.dir, "cur"), filepath.Join(m.dir, "new")
	moved, lost := false, false
	var used Flags
	var mv *dirMover
	for i := range cands {
		c := &cands[i]
		used |= c.flags
		o := oddName{unknown: c.unknown}
		if c.inNew {
			if mv == nil {
				mv = openDirMover(m.u.s.fs, newPath, curPath, len(cands)-i > 4)
				defer mv.close()
			}
			err := mv.rename(c.name, canonicalFileName(c.key, c.flags, c.unknown))
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				// It stays in new/; these UIDs are dead, the next
				// scan numbers it again.
				m.dead += len(cands) - i
				failed = err
				break
			}
			if err != nil {
				// Another process moved (or removed) it first; our next
				// scan of cur/ finds it where it went.
				lost = true
				m.dead++
				continue
			}
			moved = true
		} else if !c.canon {
			o.exact, o.suffix = true, c.name[len(c.key):]
		}
		m.addMessageLocked(Message{UID: c.uid, Size: c.size, Date: time.Unix(c.t, 0), Flags: c.flags, ModSeq: c.ms}, c.key, o, nil)
	}
	if moved {
		m.new.ownChange(newPath)
		m.cur.ownChange(curPath)
	}
	if lost {
		m.cur.valid = false
		m.sawOthers()
	}
	if failed != nil {
		m.new.valid = false
	}
	m.checkKeywordsLocked(used)
	return failed
}

// compareKeys orders base names by delivery: the usual names begin
// "<seconds>.M<microseconds>P<pid>Q<counter>", whose numbers are not padded,
// so "1.M99" comes before "1.M100" although it sorts after it as text. Names
// of another form compare by the seconds they start with, then as text.
func compareKeys(a, b string) int {
	na, nb := keyNumbers(a), keyNumbers(b)
	for i := range na {
		if na[i] != nb[i] {
			if na[i] < nb[i] {
				return -1
			}
			return 1
		}
	}
	return strings.Compare(a, b)
}

// keyNumbers returns the seconds, microseconds, pid and counter a name
// starts with (0 for each that is missing). Counters count within one
// process, so the pid comes before them.
func keyNumbers(s string) [4]uint64 {
	var out [4]uint64
	num := func() uint64 {
		var n uint64
		for len(s) > 0 && s[0] >= '0' && s[0] <= '9' && n < 1<<59 {
			n = n*10 + uint64(s[0]-'0')
			s = s[1:]
		}
		return n
	}
	out[0] = num()
	if !strings.HasPrefix(s, ".M") {
		return out
	}
	s = s[2:]
	out[1] = num()
	if !strings.HasPrefix(s, "P") {
		return out
	}
	s = s[1:]
	out[2] = num()
	if !strings.HasPrefix(s, "Q") {
		return out
	}
	s = s[1:]
	out[3] = num()
	return out
}
