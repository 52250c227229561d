package maildir

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Append stores a message in the folder's cur/ with flags, internal date
// date (now if zero; also set as the file's mtime) and a new UID, durably:
// the file is written and fsynced in tmp/, its UID line fsynced, then it is
// renamed into cur/ and cur/ fsynced. The bytes are stored as given (IMAP
// clients send CRLF), so the size is the literal's size. With a quota set
// (SetQuota) an APPEND over it fails with ErrQuotaExceeded. On any error
// nothing is left: no file, no UID shown, the quota accounting unchanged.
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
	defer u.s.fs.Remove(tmp) // gone once placed; else taken back
	if err := u.checkQuota(size); err != nil {
		return 0, err
	}
	key := u.s.newKey(time.Now(), size)

	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.refreshLocked(); err != nil {
		return 0, err
	}
	placed := filepath.Join(m.dir, "cur", canonicalFileName(key, flags, ""))
	lines := []ulLine{{t: date.Unix(), key: key}}
	lines[0].info, lines[0].hasInfo = infoLetters(filepath.Base(placed), len(key))
	uids, err := m.reserveUIDsLocked(lines, placement{
		place: func() ([]bool, error) {
			err := u.quotaTx(func() (int64, int64, error) {
				if err := u.s.fs.Rename(tmp, placed); err != nil {
					return 0, 0, err
				}
				return size, 1, nil
			})
			return []bool{err == nil}, err
		},
		// Placed but not durably: taken back, so that the client's retry
		// after our NO cannot store the message twice. Its UID line stays
		// dead; the UID is never reused.
		undo: func([]bool) { u.unplace(placed, size) },
	})
	if err != nil {
		return 0, fmt.Errorf("maildir: append to %s: %w", m.name, err)
	}
	m.addMessageLocked(Message{UID: uids[0], Size: size, Date: date, Flags: flags, ModSeq: lines[0].ms}, key, oddName{}, origin)
	m.cur.ownChange(filepath.Join(m.dir, "cur"))
	return uids[0], nil
}

// placement is how reserveUIDsLocked puts files into the folder's cur/.
type placement struct {
	// place puts the files in and reports which it placed (a file that
	// vanished meanwhile is skipped); an error stops it.
	place func() ([]bool, error)
	// after, if set, runs once the placed files are durable (a move
	// fsyncs its source directory there).
	after func() error
	// undo takes the placed files back when a later step failed.
	undo func(placed []bool)
}

// reserveUIDsLocked gives UIDs to lines (keys and dates set) and persists
// them, then places the files into cur/ and fsyncs cur/ (then p.after), all
// under the folder's flock. It returns the UIDs of the placed files (0 for
// the others, whose lines are dead). On error nothing stays placed (p.undo
// took it back) and every line is dead: no UID is shown.
func (m *Mailbox) reserveUIDsLocked(lines []ulLine, p placement) ([]uint32, error) {
	unlock, err := m.lockSyncedLocked(nil)
	if err != nil {
		return nil, err
	}
	defer unlock()
	for i := range lines {
		lines[i].uid = m.uidNext
		m.uidNext++
		lines[i].ms = m.modseqTop + 1 + uint64(i)
	}
	if err := m.appendUIDListLocked(lines); err != nil {
		return nil, err
	}
	m.modseqTop += uint64(len(lines)) // durable now: never handed out again
	placed, err := p.place()
	uids := make([]uint32, len(lines))
	some := false
	for i, ok := range placed {
		if ok {
			uids[i] = lines[i].uid
			some = true
		}
	}
	if some && err == nil {
		err = m.u.s.fs.SyncDir(filepath.Join(m.dir, "cur"))
	}
	if err == nil && p.after != nil {
		err = p.after()
	}
	if err != nil {
		if some {
			p.undo(placed)
		}
		m.dead += len(lines)
		return nil, err
	}
	for _, id := range uids {
		if id == 0 {
			m.dead++
		}
	}
	return uids, nil
}

// SetFlags changes the flags of the messages with the given UIDs (renaming
// their files) and returns the new state of those that changed. Unknown
// info letters in their names are kept. When a rename fails, those of its
// pass are taken back: the flags stay as they were.
func (m *Mailbox) SetFlags(uids []uint32, op FlagOp, flags Flags, origin any) ([]Message, error) {
	out, _, err := m.setFlags(uids, op, flags, math.MaxUint64, origin)
	return out, err
}

// SetFlagsUnchangedSince is SetFlags for STORE (UNCHANGEDSINCE since)
// (RFC 7162 §3.1.3): the messages whose modseq is above since are left
// alone and returned as modified, ascending; the test and the change are
// one step, so no other change can come between.
func (m *Mailbox) SetFlagsUnchangedSince(uids []uint32, op FlagOp, flags Flags, since uint64, origin any) (changed []Message, modified []uint32, err error) {
	return m.setFlags(uids, op, flags, since, origin)
}

func (m *Mailbox) setFlags(uids []uint32, op FlagOp, flags Flags, since uint64, origin any) ([]Message, []uint32, error) {
	flags &= allFlags
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.refreshLocked(); err != nil {
		return nil, nil, err
	}
	// The flock is held from before the renames until their modseqs are
	// recorded, so another process reads each rename with its record.
	unlock, err := m.lockSyncedLocked(nil)
	if err != nil {
		return nil, nil, err
	}
	defer unlock()
	var modified []uint32
	if since != math.MaxUint64 {
		kept := make([]uint32, 0, len(uids))
		for _, uid := range uids {
			if i, ok := m.indexLocked(uid); ok && m.msgs[i].ModSeq > since {
				modified = append(modified, uid)
			} else {
				kept = append(kept, uid)
			}
		}
		uids = kept
		slices.Sort(modified)
		modified = slices.Compact(modified)
	}
	curPath := filepath.Join(m.dir, "cur")
	mv := openDirMover(m.u.s.fs, curPath, curPath, len(uids) > 4)
	defer mv.close()
	var out []Message
	for pass := 0; pass < 2 && len(uids) > 0; pass++ {
		done, missing, err := m.renameFlagsLocked(mv, uids, op, flags)
		if err == nil {
			idx := make([]int, len(done))
			for k, d := range done {
				idx[k] = d.i
			}
			err = m.stampLocked(idx)
		}
		if err != nil {
			err = errors.Join(err, m.undoFlagsLocked(curPath, done))
			return out, modified, fmt.Errorf("maildir: set flags in %s: %w", m.name, err)
		}
		for _, d := range done {
			m.emit(Change{Kind: FlagsChanged, Seq: uint32(d.i + 1), Message: m.msgs[d.i], Origin: origin})
			out = append(out, m.msgs[d.i])
		}
		if len(done) > 0 {
			m.cur.ownChange(curPath)
		}
		// A file another writer renamed or removed: learn where it went,
		// then try those again.
		uids = missing
		if len(missing) > 0 {
			m.cur.valid = false
			if err := m.refreshLocked(); err != nil {
				return out, modified, err
			}
		}
	}
	m.maybeCompactLocked() // each change appended a line
	return out, modified, nil
}

// flagRename is one message whose file SetFlags renamed.
type flagRename struct {
	i        int
	old      Flags
	oldOdd   oddName
	from, to string
}

// renameFlagsLocked renames the files of uids for their new flags and
// updates the messages. It stops at the first failure other than a file
// gone (those are missing).
func (m *Mailbox) renameFlagsLocked(mv *dirMover, uids []uint32, op FlagOp, flags Flags) (done []flagRename, missing []uint32, err error) {
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
		oldOdd := m.odd[uid]
		oldName := m.fileNameLocked(i)
		newName := canonicalFileName(m.keys[i], nf, oldOdd.unknown)
		if err := mv.rename(oldName, newName); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				missing = append(missing, uid)
				continue
			}
			return done, missing, err
		}
		done = append(done, flagRename{i: i, old: msg.Flags, oldOdd: oldOdd, from: oldName, to: newName})
		msg.Flags = nf
		m.setOddLocked(uid, oddName{unknown: oldOdd.unknown})
	}
	return done, missing, nil
}

// undoFlagsLocked takes back renames of renameFlagsLocked. It returns the
// failures, after which the files keep their new flags (the next Refresh
// learns them).
func (m *Mailbox) undoFlagsLocked(curPath string, done []flagRename) error {
	var errs []error
	for _, d := range slices.Backward(done) {
		if err := m.u.s.fs.Rename(filepath.Join(curPath, d.to), filepath.Join(curPath, d.from)); err != nil {
			m.u.log().Error("maildir: flags take-back", "mailbox", m.name, "err", err)
			errs = append(errs, fmt.Errorf("taking back the flags of UID %d: %w", m.msgs[d.i].UID, err))
			m.cur.valid = false // the next Refresh learns what the file says
			continue
		}
		m.msgs[d.i].Flags = d.old
		m.setOddLocked(m.msgs[d.i].UID, d.oldOdd)
	}
	if len(done) > 0 {
		m.cur.valid = false
	}
	return errors.Join(errs...)
}

// Expunge removes the messages with the given UIDs and returns the UIDs
// removed.
func (m *Mailbox) Expunge(uids []uint32, origin any) ([]uint32, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.refreshLocked(); err != nil {
		return nil, err
	}
	unlock, err := m.lockSyncedLocked(nil)
	if err != nil {
		return nil, err
	}
	defer unlock()
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
			if serr := m.u.s.fs.SyncDir(curPath); err == nil {
				err = serr
			}
			var gone []uint32
			for _, i := range removed {
				gone = append(gone, m.msgs[i].UID)
			}
			m.cur.ownChange(curPath)
			if rerr := m.recordGoneLocked(gone, origin, m.modseq); rerr != nil {
				// The files are gone but not the messages: the next scan
				// finds them missing and records them.
				m.cur.valid = false
				if err == nil {
					err = rerr
				}
			} else {
				done = append(done, gone...)
			}
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

// transfer is CopyTo (move false) and MoveTo: the messages are planned
// (new keys, flags in dst's keyword indexes), their UIDs in dst reserved,
// their files placed and made durable (or all taken back), then the two
// folders' states follow.
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
	t := m.planTransfer(dst, uids, move)
	if len(t.items) == 0 {
		return nil, nil, nil
	}
	if !move || t.crossUser {
		if err := dst.u.checkQuota(t.total); err != nil {
			return nil, nil, err
		}
	}
	newUIDs, err := dst.reserveUIDsLocked(t.lines, t.placement())
	if err != nil {
		dst.cur.valid, m.cur.valid = false, false // read again what the take-back left
		return nil, nil, fmt.Errorf("maildir: %s %s → %s: %w", op, m.name, dst.name, err)
	}
	srcUIDs, dstUIDs = t.commit(newUIDs, origin)
	if len(srcUIDs) < len(t.items) { // some files had vanished: learn what happened
		m.cur.valid = false
		err = m.refreshLocked()
	}
	return srcUIDs, dstUIDs, err
}

// moving is one message of a copy or move.
type moving struct {
	srcIdx int
	msg    Message // with dst's keyword indexes
	from   string  // current file name in src cur/
	to     string  // new file name in dst cur/
}

// transferPlan is a copy or move on its way, both folders locked.
type transferPlan struct {
	src, dst       *Mailbox
	move           bool
	crossUser      bool
	items          []moving
	lines          []ulLine // dst's UID lines, parallel to items
	total          int64    // bytes
	srcCur, dstCur string
}

// planTransfer gives each message present among uids a new base name in
// dst and its flags in dst's keyword indexes.
func (m *Mailbox) planTransfer(dst *Mailbox, uids []uint32, move bool) *transferPlan {
	t := &transferPlan{
		src: m, dst: dst, move: move, crossUser: dst.u != m.u,
		srcCur: filepath.Join(m.dir, "cur"), dstCur: filepath.Join(dst.dir, "cur"),
	}
	idx := m.indicesLocked(uids)
	t.items = make([]moving, len(idx))
	t.lines = make([]ulLine, len(idx))
	now := time.Now()
	for k, i := range idx {
		msg := m.msgs[i]
		msg.Flags = dst.translateFlagsLocked(m, msg.Flags)
		key := m.u.s.newKey(now, msg.Size)
		t.items[k] = moving{srcIdx: i, msg: msg, from: m.fileNameLocked(i), to: canonicalFileName(key, msg.Flags, m.unknownLocked(msg.UID))}
		t.lines[k] = ulLine{t: msg.Date.Unix(), key: key}
		t.lines[k].info, t.lines[k].hasInfo = infoLetters(t.items[k].to, len(key))
		t.total += msg.Size
	}
	return t
}

// unknownLocked is the unknown info letters kept in uid's file name.
func (m *Mailbox) unknownLocked(uid uint32) string {
	if len(m.odd) == 0 {
		return ""
	}
	return m.odd[uid].unknown
}

// placement places the files into dst's cur/ (accounted in dst's quota
// unless they move within one user), fsyncs the source directory of a
// move once they are durable, and takes them back on failure.
func (t *transferPlan) placement() placement {
	fs := t.src.u.s.fs
	accounted := !t.move || t.crossUser
	sizeOf := func(placed []bool) (b, c int64) {
		for k, ok := range placed {
			if ok {
				b += t.items[k].msg.Size
				c++
			}
		}
		return b, c
	}
	p := placement{
		place: func() ([]bool, error) {
			var placed []bool
			var err error
			place := func() (int64, int64, error) {
				placed, err = t.src.placeAll(t.items, t.srcCur, t.dstCur, t.move)
				b, c := sizeOf(placed)
				return b, c, nil
			}
			if !accounted {
				place()
				return placed, err
			}
			if qerr := t.dst.u.quotaTx(place); err == nil {
				err = qerr
			}
			return placed, err
		},
		undo: func(placed []bool) {
			takeBack := func() (int64, int64, error) {
				for k, ok := range placed {
					if !ok {
						continue
					}
					to := filepath.Join(t.dstCur, t.items[k].to)
					var err error
					if t.move {
						err = fs.Rename(to, filepath.Join(t.srcCur, t.items[k].from))
					} else {
						err = fs.Remove(to)
					}
					if err != nil {
						t.src.u.log().Error("maildir: take back", "mailbox", t.dst.name, "path", to, "err", err)
						placed[k] = false // stays: not accounted as gone
					}
				}
				b, c := sizeOf(placed)
				return -b, -c, nil
			}
			if accounted {
				_ = t.dst.u.quotaTx(takeBack)
			} else {
				takeBack()
			}
		},
	}
	if t.move {
		p.after = func() error { return fs.SyncDir(t.srcCur) }
	}
	return p
}

// commit adds the placed messages to dst and, for a move, removes them from
// the source. It returns the source UIDs and their new UIDs, pairwise.
func (t *transferPlan) commit(newUIDs []uint32, origin any) (srcUIDs, dstUIDs []uint32) {
	m, dst := t.src, t.dst
	var moved []int
	var freed int64
	for k, it := range t.items {
		if newUIDs[k] == 0 {
			continue
		}
		srcUID := m.msgs[it.srcIdx].UID
		it.msg.UID = newUIDs[k]
		it.msg.ModSeq = t.lines[k].ms
		srcUIDs = append(srcUIDs, srcUID)
		dstUIDs = append(dstUIDs, newUIDs[k])
		moved = append(moved, it.srcIdx)
		freed += it.msg.Size
		dst.addMessageLocked(it.msg, t.lines[k].key, oddName{unknown: m.unknownLocked(srcUID)}, origin)
	}
	dst.cur.ownChange(t.dstCur)
	if t.move && len(moved) > 0 {
		m.cur.ownChange(t.srcCur)
		if err := m.recordGoneLocked(srcUIDs, origin, m.modseq); err != nil {
			// Moved, not yet recorded here: the next scan finds them missing.
			m.u.log().Warn("maildir: modseq record", "mailbox", m.name, "err", err)
			m.cur.valid = false
		}
		if t.crossUser {
			_ = m.u.quotaTx(func() (int64, int64, error) { return -freed, -int64(len(moved)), nil })
		}
		m.maybeCompactLocked()
	}
	return srcUIDs, dstUIDs
}

// placeAll links, copies or renames each item's file from srcCur into
// dstCur. A file that vanished is skipped; another failure stops.
func (m *Mailbox) placeAll(items []moving, srcCur, dstCur string, move bool) ([]bool, error) {
	fs := m.u.s.fs
	placed := make([]bool, len(items))
	for k, it := range items {
		from, to := filepath.Join(srcCur, it.from), filepath.Join(dstCur, it.to)
		var err error
		if move {
			err = fs.Rename(from, to)
		} else if err = fs.Link(from, to); err != nil && !errors.Is(err, os.ErrNotExist) {
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
	if err := m.u.s.fs.Rename(tmp, to); err != nil {
		m.u.s.fs.Remove(tmp)
		return err
	}
	return nil
}
