package maildir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Refresh brings the mailbox up to date with the disk. It stats cur/ and
// new/ and reads again only a directory whose mtime changed or is too recent
// to be trusted (less than 2 s old). Files in new/ get UIDs and move to
// cur/; vanished files become Expunged changes; renamed infos become
// FlagsChanged. With nothing changed it costs two stats.
func (m *Mailbox) Refresh() error {
	m.mu.RLock()
	fresh := m.freshLocked()
	m.mu.RUnlock()
	if fresh {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.refreshLocked()
}

// freshLocked reports whether neither directory needs reading (read lock).
func (m *Mailbox) freshLocked() bool {
	if m.deleted {
		return false
	}
	now := time.Now().UnixNano()
	curSt, err := statDir(filepath.Join(m.dir, "cur"))
	if err != nil || !m.cur.trusted(curSt, now, now < m.othersUntil) {
		return false
	}
	newSt, err := statDir(filepath.Join(m.dir, "new"))
	return err == nil && m.new.trusted(newSt, now, true)
}

// foundFile is a file whose base name we do not hold yet.
type foundFile struct {
	name  string
	inNew bool
}

// refreshLocked is Refresh with m.mu held. Every operation that changes the
// folder calls it first, so it acts on what is on disk.
func (m *Mailbox) refreshLocked() error {
	if m.deleted {
		return fmt.Errorf("%w: %s", ErrNoSuchMailbox, m.name)
	}
	curPath, newPath := filepath.Join(m.dir, "cur"), filepath.Join(m.dir, "new")
	began := time.Now().UnixNano()
	curSt, err := statDir(curPath)
	if errors.Is(err, os.ErrNotExist) {
		m.goneLocked()
		return fmt.Errorf("%w: %s", ErrNoSuchMailbox, m.name)
	}
	if err != nil {
		return fmt.Errorf("maildir: refresh %s: %w", m.name, err)
	}
	newSt, err := statDir(newPath)
	if err != nil {
		return fmt.Errorf("maildir: refresh %s: %w", m.name, err)
	}
	scanCur := !m.cur.trusted(curSt, began, began < m.othersUntil)
	scanNew := !m.new.trusted(newSt, began, true)
	if !scanCur && !scanNew {
		return nil
	}
	var found []foundFile
	// new/ before cur/: a file another process moves from new/ to cur/
	// meanwhile is then seen twice (and the cur/ one kept), never missed.
	if scanNew {
		err := m.list(newPath, func(name []byte) {
			if name[0] != '.' {
				found = append(found, foundFile{name: string(name), inNew: true})
			}
		})
		if err != nil {
			return fmt.Errorf("maildir: refresh %s: %w", m.name, err)
		}
		m.new.setScanned(newSt, began)
	}
	if scanCur {
		if err := m.scanCurLocked(curSt, began, &found); err != nil {
			return fmt.Errorf("maildir: refresh %s: %w", m.name, err)
		}
	}
	if len(found) > 0 {
		return m.addFilesLocked(found)
	}
	return nil
}

// flagChange is a message whose file another writer renamed.
type flagChange struct {
	i     int
	uid   uint32
	flags Flags
	odd   oddName
}

// scanCurLocked lists cur/ and compares it with what we hold: renamed files
// are flag changes, missing ones are expunged, unknown ones are appended to
// found.
func (m *Mailbox) scanCurLocked(st dirStat, began int64, found *[]foundFile) error {
	curPath := filepath.Join(m.dir, "cur")
	if cap(m.seen) < len(m.msgs) {
		m.seen = make([]bool, len(m.msgs), len(m.msgs)+len(m.msgs)/4)
	}
	seen := m.seen[:len(m.msgs)]
	clear(seen)
	foundBefore := len(*found)
	var changes []flagChange
	look := func(name []byte) {
		if name[0] == '.' {
			return
		}
		key, info := splitName(name)
		uid, ok := m.byKey[string(key)]
		if !ok {
			*found = append(*found, foundFile{name: string(name)})
			return
		}
		i, _ := m.indexLocked(uid)
		if seen[i] {
			return // two files with one base name: keep the first
		}
		seen[i] = true
		f, unknown, canon := parseInfo(info)
		if canon && unknown == "" && f == m.msgs[i].Flags && (len(m.odd) == 0 || !m.hasOdd(uid)) {
			return
		}
		if string(name) == m.fileNameLocked(i) {
			return
		}
		changes = append(changes, flagChange{i: i, flags: f, odd: oddFor(name, len(key), unknown, canon)})
	}
	if err := m.list(curPath, look); err != nil {
		return err
	}
	m.cur.setScanned(st, began)
	missing := 0
	for _, s := range seen {
		if !s {
			missing++
		}
	}
	if missing > 0 {
		// A rename racing with our listing can hide a file from it: look
		// once more before calling anything expunged.
		if err := m.list(curPath, func(name []byte) {
			key, _ := splitName(name)
			if uid, ok := m.byKey[string(key)]; ok {
				if i, _ := m.indexLocked(uid); !seen[i] {
					look(name)
				}
			}
		}); err != nil {
			return err
		}
	}
	var gone []uint32
	for i, s := range seen {
		if !s {
			gone = append(gone, m.msgs[i].UID)
		}
	}
	if len(changes) > 0 || len(gone) > 0 || len(*found) > foundBefore {
		m.sawOthers()
	}
	if len(changes) == 0 && len(gone) == 0 {
		return nil
	}
	for k := range changes {
		changes[k].uid = m.msgs[changes[k].i].UID
	}
	return m.recordScanLocked(changes, gone)
}

// recordScanLocked takes in what a scan of cur/ found other writers did:
// flag changes (renamed files) and expunges (missing files). Under the
// flock, what those writers recorded is read first; the rest gets new
// modseqs, recorded before it is applied.
func (m *Mailbox) recordScanLocked(changes []flagChange, gone []uint32) error {
	validity, shown := m.uidValidity, m.modseq
	unlock, err := m.lockSyncedLocked(nil)
	if err != nil {
		m.cur.valid = false
		return err
	}
	defer unlock()
	if m.uidValidity != validity {
		return nil // reloaded: the scan's findings are void
	}
	var idx []int
	var undo []flagChange // old states
	var used Flags
	for _, c := range changes {
		i, ok := m.indexLocked(c.uid)
		if !ok {
			continue
		}
		msg := &m.msgs[i]
		if msg.Flags == c.flags && m.odd[msg.UID] == c.odd {
			continue // recorded by the writer, and applied by the sync
		}
		undo = append(undo, flagChange{i: i, flags: msg.Flags, odd: m.odd[msg.UID]})
		used |= c.flags
		msg.Flags = c.flags
		m.setOddLocked(msg.UID, c.odd)
		idx = append(idx, i)
	}
	slices.Sort(idx)
	if err := m.stampLocked(idx); err != nil {
		for _, u := range undo {
			m.msgs[u.i].Flags = u.flags
			m.setOddLocked(m.msgs[u.i].UID, u.odd)
		}
		m.cur.valid = false
		return err
	}
	for _, i := range idx {
		m.emit(Change{Kind: FlagsChanged, Seq: uint32(i + 1), Message: m.msgs[i]})
	}
	m.checkKeywordsLocked(used)
	if err := m.recordGoneLocked(gone, nil, shown); err != nil {
		m.cur.valid = false
		return err
	}
	return nil
}

// sawOthers notes evidence that another process writes this folder's cur/:
// for a while, our own changes there no longer spare a listing.
func (m *Mailbox) sawOthers() {
	m.othersUntil = time.Now().Add(othersMemory).UnixNano()
}

// othersMemory is how long one sign of another writer keeps cur/ strict.
const othersMemory = 10 * time.Minute

// goneLocked marks the mailbox as deleted (by another process or by
// DeleteMailbox): every later operation fails with ErrNoSuchMailbox.
func (m *Mailbox) goneLocked() {
	m.deleted = true
}

func (m *Mailbox) hasOdd(uid uint32) bool {
	_, ok := m.odd[uid]
	return ok
}

// reloadLocked starts over after another process reset the folder's UID
// list: every message is expunged and added again with its new UID.
func (m *Mailbox) reloadLocked() error {
	m.u.log().Warn("maildir: UIDVALIDITY changed on disk; reloading", "mailbox", m.name)
	all := make([]int, len(m.msgs))
	for i := range all {
		all[i] = i
	}
	m.removeLocked(all, nil)
	watchers := m.watchers
	m.watchers = nil
	m.uidValidity, m.uidNext, m.size, m.dead = 0, 0, 0, 0
	m.msgs, m.keys, m.byKey, m.odd, m.pending = nil, nil, nil, nil, nil
	m.ul, m.cur, m.new = ulState{}, dirStamp{}, dirStamp{strict: true}
	err := m.loadLocked()
	m.watchers = watchers
	for i := range m.msgs {
		m.emit(Change{Kind: Added, Seq: uint32(i + 1), Message: m.msgs[i]})
	}
	return err
}
