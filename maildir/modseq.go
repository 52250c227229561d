package maildir

import "slices"

// CONDSTORE and QRESYNC (RFC 7162) need a modification sequence: a number
// per folder that grows with every change (a message added, its flags or
// keywords changed, a message expunged), the modseq of each message's last
// change, and the UIDs expunged with the modseq of their expunge.
//
// They are kept in the UID list (see uidlist.go): every process that changes
// a folder takes its flock, reads what others appended (syncUIDListLocked),
// hands out modseqs above the greatest the file holds, and appends lines
// that record them, fsynced, before anyone is told of the change. So
// modseqs are durable before they are shown, unique across processes, and
// survive restarts. A change made behind our back (a file renamed or
// removed by another tool, or while no Postie ran) is found by the next
// scan of cur/ (or the next load), and recorded then with a new modseq.
//
// The invariant that lets a client resynchronise: a change becomes visible
// with a modseq greater than any HIGHESTMODSEQ shown before it. Lines of
// other processes are read in file order, which is modseq order; an expunge
// another process recorded but our scan has not seen yet (goneSeen) gets a
// new modseq if ours has moved past it meanwhile.
//
// Expunged UIDs are remembered up to maxVanished (in memory and in the
// file); the floor is the greatest modseq of an expunge forgotten since.
// Asked for expunges since a modseq below the floor, Vanished says that its
// answer is not complete (the caller then compares UID sets, RFC 7162
// §3.2.5.2 and §3.2.6).

// maxVanished is how many expunged UIDs a folder remembers for VANISHED.
const maxVanished = 20000

// vanishedUID is an expunged UID and the modseq of its expunge.
type vanishedUID struct {
	uid uint32
	ms  uint64
}

// HighestModSeq is the folder's HIGHESTMODSEQ: the modseq of the latest
// change this process has applied (at least 1).
func (m *Mailbox) HighestModSeq() uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return max(m.modseq, 1)
}

// Vanished returns the UIDs expunged with a modseq greater than since,
// ascending. complete is false when since is below what the folder
// remembers: UIDs expunged before may be missing from the answer.
func (m *Mailbox) Vanished(since uint64) (uids []uint32, complete bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	i, _ := slices.BinarySearchFunc(m.vanished, since+1, func(v vanishedUID, ms uint64) int {
		return int64cmp(int64(v.ms), int64(ms))
	})
	for _, v := range m.vanished[i:] {
		uids = append(uids, v.uid)
	}
	slices.Sort(uids)
	return slices.Compact(uids), since >= m.floor
}

// noteVanishedLocked remembers an expunge (ms ascending over calls).
func (m *Mailbox) noteVanishedLocked(uid uint32, ms uint64) {
	m.vanished = append(m.vanished, vanishedUID{uid: uid, ms: ms})
	m.modseq = max(m.modseq, ms)
	if n := len(m.vanished) - maxVanished; n > maxVanished/8 {
		m.floor = max(m.floor, m.vanished[n-1].ms)
		m.vanished = slices.Delete(m.vanished, 0, n)
	}
}

// infoLetters is a file name's info letters (after "2,") for a UID line's F
// field; ok is false for a name whose info a line cannot carry.
func infoLetters(name string, keyLen int) (string, bool) {
	info := name[keyLen:]
	if len(info) < 3 || info[:3] != ":2," {
		return "", false
	}
	info = info[3:]
	for i := 0; i < len(info); i++ {
		c := info[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return "", false
		}
	}
	return info, true
}

// stateLineLocked is the UID line recording message i's current state at
// modseq ms.
func (m *Mailbox) stateLineLocked(i int, ms uint64) ulLine {
	l := ulLine{uid: m.msgs[i].UID, t: m.msgs[i].Date.Unix(), key: m.keys[i], ms: ms}
	l.info, l.hasInfo = infoLetters(m.fileNameLocked(i), len(m.keys[i]))
	return l
}

// stampLocked records the current state of the messages at idx under new
// modseqs (flock held, synced), then sets their ModSeq. On error nothing
// changed.
func (m *Mailbox) stampLocked(idx []int) error {
	if len(idx) == 0 {
		return nil
	}
	lines := make([]ulLine, len(idx))
	for k, i := range idx {
		lines[k] = m.stateLineLocked(i, m.modseqTop+1+uint64(k))
	}
	if err := m.appendUIDListLocked(lines); err != nil {
		return err
	}
	m.modseqTop += uint64(len(idx))
	m.dead += len(idx) // each supersedes an earlier line of its message
	for k, i := range idx {
		m.msgs[i].ModSeq = lines[k].ms
	}
	m.modseq = max(m.modseq, m.modseqTop)
	return nil
}

// recordGoneLocked records the expunge of the messages with these UIDs
// (their files are gone) and removes them, telling the watchers. An
// expunge another process recorded keeps its modseq when that is still
// above shown (HIGHESTMODSEQ before the caller's operation began). On
// error nothing is removed: a later scan finds the files missing and tries
// again.
func (m *Mailbox) recordGoneLocked(uids []uint32, origin any, shown uint64) error {
	unlock, err := m.lockSyncedLocked(nil)
	if err != nil {
		return err
	}
	defer unlock()
	idx := m.indicesLocked(uids)
	if len(idx) == 0 {
		return nil
	}
	ms := make([]uint64, len(idx))
	var lines []ulLine
	top := m.modseqTop
	for k, i := range idx {
		uid := m.msgs[i].UID
		if seen, ok := m.goneSeen[uid]; ok && seen > shown {
			ms[k] = seen
			continue
		}
		top++
		ms[k] = top
		lines = append(lines, ulLine{uid: uid, t: m.msgs[i].Date.Unix(), key: m.keys[i], ms: top, gone: true})
	}
	if err := m.appendUIDListLocked(lines); err != nil {
		return err
	}
	m.modseqTop = top
	m.dead += len(lines)           // kept by a rewrite only while remembered
	order := make([]int, len(idx)) // vanished in modseq order
	for k := range order {
		order[k] = k
	}
	slices.SortFunc(order, func(a, b int) int { return int64cmp(int64(ms[a]), int64(ms[b])) })
	for _, k := range order {
		uid := m.msgs[idx[k]].UID
		delete(m.goneSeen, uid)
		m.noteVanishedLocked(uid, ms[k])
	}
	m.removeLocked(idx, origin)
	return nil
}

// applyLineLocked applies another process's line for a message we hold
// (same UID and base name): its new flags and modseq.
func (m *Mailbox) applyLineLocked(l ulLine) {
	i, ok := m.indexLocked(l.uid)
	if !ok || l.ms <= m.msgs[i].ModSeq {
		return
	}
	msg := &m.msgs[i]
	msg.ModSeq = l.ms
	m.modseq = max(m.modseq, l.ms)
	m.dead++
	if l.hasInfo {
		f, unknown, _ := parseInfo([]byte("2," + l.info))
		msg.Flags = f
		m.setOddLocked(msg.UID, oddName{unknown: unknown})
		m.checkKeywordsLocked(f)
	}
	m.emit(Change{Kind: FlagsChanged, Seq: uint32(i + 1), Message: *msg})
}

// syncGoneLocked takes in another process's expunge line. A message we
// still hold waits for our scan to miss its file (goneSeen); indexes must
// not move during a sync.
func (m *Mailbox) syncGoneLocked(l ulLine) {
	if _, ok := m.indexLocked(l.uid); ok {
		if m.goneSeen == nil {
			m.goneSeen = make(map[uint32]uint64)
		}
		m.goneSeen[l.uid] = l.ms
		return
	}
	if p, ok := m.pending[l.key]; ok && p.uid == l.uid {
		delete(m.pending, l.key)
	}
	if l.uid < m.uidNext && l.ms > m.modseq {
		m.noteVanishedLocked(l.uid, l.ms)
	}
}

// lostUIDs lists the UIDs whose latest line is neither an expunge record
// nor matched by a file: messages expunged while no modseq was recorded
// (by another tool, an older writer, or a crash between the removal and
// its record). Each base name's latest line only.
func (l *loader) lostUIDs() []vanishedUID {
	var lost []vanishedUID
	for j := range l.lines {
		ln := &l.lines[j]
		if !ln.present && !ln.gone && l.idx[ln.key] == int32(j) {
			lost = append(lost, vanishedUID{uid: ln.uid})
		}
	}
	return lost
}

// recordLoadedLocked records, at load (flock held), what changed while
// nobody recorded it: messages whose file's flags differ from their latest
// line, and lost UIDs (expunged). They get new modseqs.
func (m *Mailbox) recordLoadedLocked(lines []loadLine, lost []vanishedUID) error {
	var idx []int
	for i := range lines {
		if ln := &lines[i]; ln.present && ln.stale {
			if j, ok := m.indexLocked(ln.uid); ok {
				idx = append(idx, j)
			}
		}
	}
	slices.Sort(idx)
	idx = slices.Compact(idx)
	if err := m.stampLocked(idx); err != nil {
		return err
	}
	slices.SortFunc(lost, func(a, b vanishedUID) int { return int64cmp(int64(a.uid), int64(b.uid)) })
	lines2 := make([]ulLine, 0, len(lost))
	for k := range lost {
		if _, held := m.indexLocked(lost[k].uid); held {
			continue // the UID was given again (a damaged list)
		}
		lost[k].ms = m.modseqTop + 1 + uint64(len(lines2))
		lines2 = append(lines2, ulLine{uid: lost[k].uid, key: "x", ms: lost[k].ms, gone: true})
	}
	if err := m.appendUIDListLocked(lines2); err != nil {
		return err
	}
	m.modseqTop += uint64(len(lines2))
	for _, v := range lost {
		if v.ms != 0 {
			m.noteVanishedLocked(v.uid, v.ms)
		}
	}
	m.modseq = m.modseqTop
	return nil
}

// infoIs reports whether a listed name's info part (nil: none) holds the
// letters a line recorded.
func infoIs(info []byte, letters string) bool {
	if info == nil {
		return letters == ""
	}
	return len(info) >= 2 && info[0] == '2' && info[1] == ',' && string(info[2:]) == letters
}
