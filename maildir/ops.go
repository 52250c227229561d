package maildir

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"postie/safeio"
	"time"
)

// Append stores a message in the folder's cur/ with flags, internal date
// date (now if zero; also set as the file's mtime) and a new UID, durably:
// the file is written and fsynced in tmp/, its UID line fsynced, then it is
// renamed into cur/ and cur/ fsynced. The bytes are stored as given (IMAP
// clients send CRLF), so the size is the literal's size. With a quota set
// (SetQuota) an APPEND over it fails with ErrQuotaExceeded.
func (m *Mailbox) Append(r io.Reader, flags Flags, date time.Time, origin any) (uint32, error) {
	if date.IsZero() {
		date = time.Now()
	}
	date = time.Unix(date.Unix(), 0)
	flags &= allFlags
	u := m.u
	tmp, size, err := u.s.writeTmp(u.dir, r, date)
	if err != nil {
		return 0, fmt.Errorf("maildir: append: %w", err)
	}
	if err := u.checkQuota(size); err != nil {
		os.Remove(tmp)
		return 0, err
	}
	key := u.s.newKey(time.Now(), size)

	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.refreshLocked(); err != nil {
		os.Remove(tmp)
		return 0, err
	}
	name := canonicalFileName(key, flags, "")
	placed := filepath.Join(m.dir, "cur", name)
	uids, err := m.reserveUIDsLocked([]ulLine{{t: date.Unix(), key: key}}, func(lines []ulLine) ([]bool, error) {
		err := u.quotaTx(func() (int64, int64, error) {
			if err := os.Rename(tmp, placed); err != nil {
				return 0, 0, err
			}
			return size, 1, nil
		})
		return []bool{err == nil}, err
	})
	switch {
	case err != nil && len(uids) == 1 && uids[0] != 0:
		// Placed but not durably (the directory fsync failed): take it
		// back, so that the client's retry after our NO cannot store the
		// message twice. Its UID line stays dead; the UID is never reused.
		u.unplace(placed, size)
	case err == nil:
		m.addMessageLocked(Message{UID: uids[0], Size: size, Date: date, Flags: flags}, key, oddName{}, origin)
		m.cur.ownChange(filepath.Join(m.dir, "cur"))
	default:
		os.Remove(tmp)
	}
	if err != nil {
		return 0, fmt.Errorf("maildir: append to %s: %w", m.name, err)
	}
	return uids[0], nil
}

// reserveUIDsLocked gives UIDs to lines (keys and dates set), persists them,
// then runs place to put the files into cur/ and fsyncs cur/, all under the
// folder's flock. place reports which files it placed. The UIDs of placed
// files are returned (0 for the others, whose lines are dead), also with an
// error: those files are in cur/, though perhaps not durably.
func (m *Mailbox) reserveUIDsLocked(lines []ulLine, place func([]ulLine) ([]bool, error)) ([]uint32, error) {
	unlock, err := m.lockSyncedLocked(nil)
	if err != nil {
		return nil, err
	}
	defer unlock()
	for i := range lines {
		lines[i].uid = m.uidNext
		m.uidNext++
	}
	if err := m.appendUIDListLocked(lines); err != nil {
		return nil, err
	}
	placed, err := place(lines)
	uids := make([]uint32, len(lines))
	some := false
	for i, ok := range placed {
		if ok {
			uids[i] = lines[i].uid
			some = true
		} else {
			m.dead++
		}
	}
	if some {
		if serr := safeio.SyncDir(filepath.Join(m.dir, "cur")); err == nil {
			err = serr
		}
	}
	return uids, err
}

// SetFlags changes the flags of the messages with the given UIDs (renaming
// their files) and returns the new state of those that changed. Unknown
// info letters in their names are kept.
func (m *Mailbox) SetFlags(uids []uint32, op FlagOp, flags Flags, origin any) ([]Message, error) {
	flags &= allFlags
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.refreshLocked(); err != nil {
		return nil, err
	}
	curPath := filepath.Join(m.dir, "cur")
	mv := openDirMover(curPath, curPath, len(uids) > 4)
	defer mv.close()
	var out []Message
	for pass := 0; pass < 2 && len(uids) > 0; pass++ {
		var missing []uint32
		renamed := false
		for _, uid := range uids {
			i, ok := m.indexLocked(uid)
			if !ok {
				continue
			}
			msg := &m.msgs[i]
			nf := op.apply(msg.Flags, flags)
			if nf == msg.Flags {
				continue
			}
			var unknown string
			if len(m.odd) > 0 {
				unknown = m.odd[uid].unknown
			}
			oldName := m.fileNameLocked(i)
			newName := canonicalFileName(m.keys[i], nf, unknown)
			if err := mv.rename(oldName, newName); err != nil {
				if errors.Is(err, os.ErrNotExist) {
					missing = append(missing, uid)
					continue
				}
				return out, fmt.Errorf("maildir: set flags in %s: %w", m.name, err)
			}
			renamed = true
			msg.Flags = nf
			m.setOddLocked(uid, oddName{unknown: unknown})
			m.emit(Change{Kind: FlagsChanged, Seq: uint32(i + 1), Message: *msg, Origin: origin})
			out = append(out, *msg)
		}
		if renamed {
			m.cur.ownChange(curPath)
		}
		// A file another writer renamed or removed: learn where it went,
		// then try those again.
		uids = missing
		if len(missing) > 0 {
			m.cur.valid = false
			if err := m.refreshLocked(); err != nil {
				return out, err
			}
		}
	}
	return out, nil
}

// Expunge removes the messages with the given UIDs and returns the UIDs
// removed.
func (m *Mailbox) Expunge(uids []uint32, origin any) ([]uint32, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.refreshLocked(); err != nil {
		return nil, err
	}
	curPath := filepath.Join(m.dir, "cur")
	var done []uint32
	for pass := 0; pass < 2 && len(uids) > 0; pass++ {
		idx := m.indicesLocked(uids)
		var removed []int
		var missing []uint32
		var opErr error
		err := m.u.quotaTx(func() (bytes, count int64, err error) {
			for _, i := range idx {
				err := os.Remove(filepath.Join(curPath, m.fileNameLocked(i)))
				if errors.Is(err, os.ErrNotExist) {
					missing = append(missing, m.msgs[i].UID)
					continue
				}
				if err != nil {
					opErr = err
					break
				}
				removed = append(removed, i)
				bytes -= m.msgs[i].Size
				count--
			}
			return bytes, count, nil
		})
		if err == nil {
			err = opErr
		}
		if len(removed) > 0 {
			if serr := safeio.SyncDir(curPath); err == nil {
				err = serr
			}
			for _, i := range removed {
				done = append(done, m.msgs[i].UID)
			}
			m.removeLocked(removed, origin)
			m.cur.ownChange(curPath)
		}
		if err != nil {
			return done, fmt.Errorf("maildir: expunge in %s: %w", m.name, err)
		}
		uids = missing
		if len(missing) > 0 {
			m.cur.valid = false
			if err := m.refreshLocked(); err != nil {
				return done, err
			}
		}
	}
	m.maybeCompactLocked()
	return done, nil
}

// CopyTo copies the messages with the given UIDs into dst (hard links when
// possible, else copies fsynced in tmp/), keeping flags and internal dates.
// It returns the source UIDs copied and their new UIDs in dst, pairwise, in
// ascending source order.
func (m *Mailbox) CopyTo(dst *Mailbox, uids []uint32, origin any) (srcUIDs, dstUIDs []uint32, err error) {
	return m.transfer(dst, uids, origin, false)
}

// MoveTo moves the messages with the given UIDs into dst (rename, with both
// directories fsynced): they get new UIDs in dst and are expunged here.
func (m *Mailbox) MoveTo(dst *Mailbox, uids []uint32, origin any) (srcUIDs, dstUIDs []uint32, err error) {
	return m.transfer(dst, uids, origin, true)
}

// lockPair locks two mailboxes in a fixed order (once if they are one).
func lockPair(a, b *Mailbox) (unlock func()) {
	if a == b {
		a.mu.Lock()
		return a.mu.Unlock
	}
	first, second := a, b
	if b.id < a.id {
		first, second = b, a
	}
	first.mu.Lock()
	second.mu.Lock()
	return func() {
		second.mu.Unlock()
		first.mu.Unlock()
	}
}

// moving is one message of a copy or move.
type moving struct {
	srcIdx int
	msg    Message // with dst's keyword indexes
	from   string  // current file name in src cur/
	to     string  // new file name in dst cur/
}

func (m *Mailbox) transfer(dst *Mailbox, uids []uint32, origin any, move bool) (srcUIDs, dstUIDs []uint32, err error) {
	op := "copy"
	if move {
		op = "move"
	}
	unlock := lockPair(m, dst)
	defer unlock()
	if err := m.refreshLocked(); err != nil {
		return nil, nil, err
	}
	if dst != m {
		if err := dst.refreshLocked(); err != nil {
			return nil, nil, err
		}
	}
	idx := m.indicesLocked(uids)
	if len(idx) == 0 {
		return nil, nil, nil
	}
	items := make([]moving, len(idx))
	lines := make([]ulLine, len(idx))
	now := time.Now()
	var total int64
	for k, i := range idx {
		msg := m.msgs[i]
		msg.Flags = dst.translateFlagsLocked(m, msg.Flags)
		key := m.u.s.newKey(now, msg.Size)
		var unknown string
		if len(m.odd) > 0 {
			unknown = m.odd[msg.UID].unknown
		}
		items[k] = moving{srcIdx: i, msg: msg, from: m.fileNameLocked(i), to: canonicalFileName(key, msg.Flags, unknown)}
		lines[k] = ulLine{t: msg.Date.Unix(), key: key}
		total += msg.Size
	}
	crossUser := dst.u != m.u
	if !move || crossUser {
		if err := dst.u.checkQuota(total); err != nil {
			return nil, nil, err
		}
	}
	srcCur, dstCur := filepath.Join(m.dir, "cur"), filepath.Join(dst.dir, "cur")
	var placed []bool
	newUIDs, err := dst.reserveUIDsLocked(lines, func([]ulLine) ([]bool, error) {
		var err error
		place := func() (int64, int64, error) {
			placed, err = m.placeAll(items, srcCur, dstCur, move)
			var b, c int64
			for k, ok := range placed {
				if ok {
					b += items[k].msg.Size
					c++
				}
			}
			return b, c, nil
		}
		if move && !crossUser {
			place()
			return placed, err
		}
		if qerr := dst.u.quotaTx(place); err == nil {
			err = qerr
		}
		return placed, err
	})
	if err != nil {
		err = fmt.Errorf("maildir: %s %s → %s: %w", op, m.name, dst.name, err)
	}
	var moved []int
	var freed int64
	for k, it := range items {
		if k >= len(newUIDs) || newUIDs[k] == 0 {
			continue
		}
		it.msg.UID = newUIDs[k]
		srcUIDs = append(srcUIDs, m.msgs[it.srcIdx].UID)
		dstUIDs = append(dstUIDs, newUIDs[k])
		moved = append(moved, it.srcIdx)
		freed += it.msg.Size
		var unknown string
		if len(m.odd) > 0 {
			unknown = m.odd[m.msgs[it.srcIdx].UID].unknown
		}
		dst.addMessageLocked(it.msg, lines[k].key, oddName{unknown: unknown}, origin)
	}
	dst.cur.ownChange(dstCur)
	if move && len(moved) > 0 {
		if err := safeio.SyncDir(srcCur); err != nil {
			m.u.log().Warn("maildir: move", "mailbox", m.name, "err", err)
		}
		m.removeLocked(moved, origin)
		m.cur.ownChange(srcCur)
		if crossUser {
			_ = m.u.quotaTx(func() (int64, int64, error) { return -freed, -int64(len(moved)), nil })
		}
		m.maybeCompactLocked()
	}
	if len(moved) < len(items) && err == nil { // some files had vanished: learn what happened
		m.cur.valid = false
		err = m.refreshLocked()
	}
	return srcUIDs, dstUIDs, err
}

// placeAll links, copies or renames each item's file from srcCur into
// dstCur. A file that vanished is skipped; another failure stops.
func (m *Mailbox) placeAll(items []moving, srcCur, dstCur string, move bool) ([]bool, error) {
	placed := make([]bool, len(items))
	for k, it := range items {
		from, to := filepath.Join(srcCur, it.from), filepath.Join(dstCur, it.to)
		var err error
		if move {
			err = os.Rename(from, to)
		} else if err = os.Link(from, to); err != nil && !errors.Is(err, os.ErrNotExist) {
			err = m.copyFile(from, to, it.msg.Date)
		}
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return placed, err
		}
		placed[k] = true
	}
	return placed, nil
}

// copyFile copies a message where hard links are not possible: through
// tmp/, fsynced, then renamed into place.
func (m *Mailbox) copyFile(from, to string, date time.Time) error {
	f, err := os.Open(from)
	if err != nil {
		return err
	}
	defer f.Close()
	tmp, _, err := m.u.s.writeTmp(m.u.dir, f, date)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, to); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
