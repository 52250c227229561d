package imapd

import (
	"slices"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

// CONTEXT=SORT (RFC 5267 §4): a SORT RETURN (UPDATE) stays live like a SEARCH one
// (searchupdate.go), but its result is kept in sort order and every update says where: each
// REMOVEFROM names a run of messages adjacent in the client's list and the position of the first,
// each ADDTO a run adjacent in the new result, inserted at its position there. The updates of one
// poll are written in position order, each counted in the list as the ones before it left it, so
// a client that applies them in turn holds the server's result. The sort keys (dates, size,
// addresses, subject) never change for a message, and ties keep sequence order, which expunges do
// not disturb: the messages that stay keep their relative order, and only runs need saying.

var _ imapserver.SessionSortUpdate = (*session)(nil)

// SortUpdate keeps the sort of command tag live.
func (s *session) SortUpdate(tag string, kind imapserver.NumKind, keys []imap.SortCriterion, criteria *imap.SearchCriteria, _ []uint32) error {
	sel := s.sel
	if err := sel.tagInUse(tag); err != nil {
		return err
	}
	if len(sel.updates) >= maxLiveUpdates {
		return imapserver.ErrNoUpdate
	}
	u := &updateSearch{tag: tag, kind: kind, criteria: criteria, keys: slices.Clone(keys)}
	u.modseq, u.uidNext = sel.mbox.HighestModSeq(), sel.mbox.UIDNext()
	uids, err := s.Sort(imapserver.NumKindUID, u.keys, criteria, &imap.SearchOptions{})
	if err != nil {
		return err
	}
	u.uids = uids
	sel.updates = append(sel.updates, u)
	return nil
}

// removeExpungedSorted writes the REMOVEFROM updates of a live sort for the expunges about to be
// reported, numbered as their EXPUNGE responses give them.
func removeExpungedSorted(w *imapserver.UpdateWriter, u *updateSearch, pending map[uint32]uint32) error {
	kept, err := writeRemovals(w, u, func(uid uint32) (uint32, bool) {
		seq, ok := pending[uid]
		return numOf(u.kind, uid, seq), ok
	})
	u.uids = kept
	return err
}

// writeRemovals writes REMOVEFROM for the runs of u.uids that gone picks (with the number to give
// each) and returns the UIDs left.
func writeRemovals(w *imapserver.UpdateWriter, u *updateSearch, gone func(uid uint32) (uint32, bool)) ([]uint32, error) {
	kept := make([]uint32, 0, len(u.uids))
	var run []uint32
	pos := uint32(0) // where the run starts in the client's list, earlier runs removed
	flush := func() error {
		err := w.WriteSearchUpdate(u.tag, u.kind, false, pos, run)
		run = run[:0]
		return err
	}
	for _, uid := range u.uids {
		if n, ok := gone(uid); ok {
			if n == 0 { // gone from the client's list already
				continue
			}
			if len(run) == 0 {
				pos = uint32(len(kept)) + 1
			}
			run = append(run, n)
			continue
		}
		if len(run) > 0 {
			if err := flush(); err != nil {
				return kept, err
			}
		}
		kept = append(kept, uid)
	}
	if len(run) > 0 {
		return kept, flush()
	}
	return kept, nil
}

// rerunSorted sorts a live sort's messages again and reports the difference.
func (s *session) rerunSorted(sel *selection, w *imapserver.UpdateWriter, u *updateSearch, pending map[uint32]uint32, allowExpunge bool) error {
	now, err := s.Sort(imapserver.NumKindUID, u.keys, u.criteria, &imap.SearchOptions{})
	if err != nil {
		return err
	}
	if !allowExpunge {
		now = keepPending(u.uids, now, pending)
	}
	inNow := make(map[uint32]bool, len(now))
	for _, uid := range now {
		inNow[uid] = true
	}
	inOld := make(map[uint32]bool, len(u.uids))
	var changed []uint32
	for _, uid := range u.uids {
		inOld[uid] = true
		if !inNow[uid] {
			changed = append(changed, uid)
		}
	}
	for _, uid := range now {
		if !inOld[uid] {
			changed = append(changed, uid)
		}
	}
	if len(changed) == 0 {
		return nil
	}
	seqOf, err := sel.seqNums(changed)
	if err != nil {
		return err
	}
	// A message the client has not been told of yet is left for the next poll.
	now = slices.DeleteFunc(now, func(uid uint32) bool {
		if !inOld[uid] && seqOf[uid] == 0 {
			u.stale = true
			return true
		}
		return false
	})
	kept, err := writeRemovals(w, u, func(uid uint32) (uint32, bool) {
		return numOf(u.kind, uid, seqOf[uid]), !inNow[uid]
	})
	u.uids = kept
	if err != nil {
		return err
	}
	if err := writeAdditions(w, u, now, inOld, seqOf); err != nil {
		return err
	}
	u.uids = now
	return nil
}

// writeAdditions writes ADDTO for the runs of now (the new result in sort order) not in the
// client's list, each at its position in now.
func writeAdditions(w *imapserver.UpdateWriter, u *updateSearch, now []uint32, inOld map[uint32]bool, seqOf map[uint32]uint32) error {
	var run []uint32
	pos := uint32(0)
	for i := 0; i <= len(now); i++ {
		if i < len(now) && !inOld[now[i]] {
			if len(run) == 0 {
				pos = uint32(i) + 1
			}
			run = append(run, numOf(u.kind, now[i], seqOf[now[i]]))
			continue
		}
		if len(run) > 0 {
			if err := w.WriteSearchUpdate(u.tag, u.kind, true, pos, run); err != nil {
				return err
			}
			run = run[:0]
		}
	}
	return nil
}

// keepPending puts back into now (a new result in sort order) the messages of old (the client's)
// whose expunge is not reported yet: each after the message it followed in old, as sorting them
// again would have placed them.
func keepPending(old, now []uint32, pending map[uint32]uint32) []uint32 {
	inNow := make(map[uint32]bool, len(now))
	for _, uid := range now {
		inNow[uid] = true
	}
	after := make(map[uint32][]uint32) // the message kept messages follow (0: the start) → them
	anchor, n := uint32(0), 0
	for _, uid := range old {
		switch _, isPending := pending[uid]; {
		case inNow[uid]:
			anchor = uid
		case isPending:
			after[anchor] = append(after[anchor], uid)
			n++
		}
	}
	if n == 0 {
		return now
	}
	out := make([]uint32, 0, len(now)+n)
	out = append(out, after[0]...)
	for _, uid := range now {
		out = append(out, uid)
		out = append(out, after[uid]...)
	}
	return out
}
