package imapd

import (
	"slices"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

// CONTEXT=SEARCH (RFC 5267 §4): a SEARCH RETURN (UPDATE) stays live until CANCELUPDATE or the end
// of the selection. At each poll (after every command, and while idling) the session tells the
// client how the results changed:
//   - before the EXPUNGE responses, REMOVEFROM for expunged messages in a result, with the sequence
//     number their own EXPUNGE response gives (as Dovecot does);
//   - after the other updates (EXISTS, FETCH), when the mailbox changed since the search last ran
//     (its HIGHESTMODSEQ or UIDNEXT moved), the search runs again: REMOVEFROM for messages that
//     no longer match, ADDTO for new matches, numbered as the client now knows them.
// While expunges are held back (during FETCH, STORE, SEARCH), messages expunged meanwhile stay in
// the results until their EXPUNGE goes out. A live SORT (CONTEXT=SORT) keeps its result in sort
// order and numbers its updates by position there (sortupdate.go).

// updateSearch is one live search.
type updateSearch struct {
	tag      string
	kind     imapserver.NumKind
	criteria *imap.SearchCriteria
	keys     []imap.SortCriterion // a live SORT's keys; nil for a SEARCH
	uids     []uint32             // the result as the client has it: ascending, or in sort order
	modseq   uint64               // the mailbox state it was computed at
	uidNext  uint32
	stale    bool // the last run left out messages the client did not know yet
}

var _ imapserver.SessionSearchUpdate = (*session)(nil)

// maxLiveUpdates bounds the live searches and sorts of one selection: each
// keeps its result and runs again after every change to the mailbox. One
// more gets its answer and NOUPDATE (RFC 5267 section 4.2).
const maxLiveUpdates = 16

// SearchUpdate keeps the search of command tag live.
func (s *session) SearchUpdate(tag string, kind imapserver.NumKind, criteria *imap.SearchCriteria, _ imap.NumSet) error {
	sel := s.sel
	if err := sel.tagInUse(tag); err != nil {
		return err
	}
	if len(sel.updates) >= maxLiveUpdates {
		return imapserver.ErrNoUpdate
	}
	u := &updateSearch{tag: tag, kind: kind, criteria: criteria}
	u.modseq, u.uidNext = sel.mbox.HighestModSeq(), sel.mbox.UIDNext()
	uids, err := s.resultUIDs(criteria)
	if err != nil {
		return err
	}
	u.uids = uids
	sel.updates = append(sel.updates, u)
	return nil
}

// tagInUse refuses the tag of a live search or sort for another (RFC 5267 §4.3: BAD).
func (sel *selection) tagInUse(tag string) error {
	for _, o := range sel.updates {
		if o.tag == tag {
			return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Tag reuse: " + tag + " is a live search"}
		}
	}
	return nil
}

// CancelUpdate ends live searches.
func (s *session) CancelUpdate(tags []string) error {
	for _, tag := range tags {
		n := len(s.sel.updates)
		s.sel.updates = slices.DeleteFunc(s.sel.updates, func(o *updateSearch) bool { return o.tag == tag })
		if len(s.sel.updates) == n {
			return &imap.Error{Type: imap.StatusResponseTypeNo, Text: "No live search has the tag " + tag}
		}
	}
	return nil
}

// resultUIDs runs a search and returns the UIDs it finds.
func (s *session) resultUIDs(criteria *imap.SearchCriteria) ([]uint32, error) {
	data, err := s.Search(imapserver.NumKindUID, criteria, &imap.SearchOptions{ReturnAll: true})
	if err != nil {
		return nil, err
	}
	set, _ := data.All.(imap.UIDSet)
	nums, _ := set.Nums()
	out := make([]uint32, len(nums))
	for i, n := range nums {
		out[i] = uint32(n)
	}
	return out, nil
}

// pollUpdates is the tracker's poll with the live searches' updates around it.
func (s *session) pollUpdates(sel *selection, w *imapserver.UpdateWriter, allowExpunge bool) error {
	if len(sel.updates) == 0 {
		return sel.st.Poll(w, allowExpunge)
	}
	seqs, uids := sel.st.PendingExpunges()
	pending := make(map[uint32]uint32, len(uids)) // UID → the sequence number its EXPUNGE gives
	for i, u := range uids {
		if u != 0 {
			pending[uint32(u)] = seqs[i]
		}
	}
	if allowExpunge && len(pending) > 0 {
		for _, u := range sel.updates {
			if u.keys != nil {
				if err := removeExpungedSorted(w, u, pending); err != nil {
					return err
				}
				continue
			}
			var nums []uint32
			pos := uint32(0)
			for i, uid := range u.uids {
				if seq, ok := pending[uid]; ok {
					if pos == 0 {
						pos = uint32(i) + 1
					}
					nums = append(nums, numOf(u.kind, uid, seq))
				}
			}
			if err := w.WriteSearchUpdate(u.tag, u.kind, false, pos, nums); err != nil {
				return err
			}
			u.uids = slices.DeleteFunc(u.uids, func(uid uint32) bool { _, ok := pending[uid]; return ok })
		}
	}
	if err := sel.st.Poll(w, allowExpunge); err != nil {
		return err
	}
	modseq, uidNext := sel.mbox.HighestModSeq(), sel.mbox.UIDNext()
	for _, u := range sel.updates {
		if u.modseq == modseq && u.uidNext == uidNext {
			continue
		}
		rerun := s.rerun
		if u.keys != nil {
			rerun = s.rerunSorted
		}
		if err := rerun(sel, w, u, pending, allowExpunge); err != nil {
			return err
		}
		u.modseq, u.uidNext = modseq, uidNext
		if u.stale {
			u.uidNext, u.stale = 0, false // run again at the next poll
		}
	}
	return nil
}

func numOf(kind imapserver.NumKind, uid, seq uint32) uint32 {
	if kind == imapserver.NumKindUID {
		return uid
	}
	return seq
}

// rerun runs a live search again and reports the difference.
func (s *session) rerun(sel *selection, w *imapserver.UpdateWriter, u *updateSearch, pending map[uint32]uint32, allowExpunge bool) error {
	now, err := s.resultUIDs(u.criteria)
	if err != nil {
		return err
	}
	if !allowExpunge { // expunged but not yet reported: still in the client's result
		found := now // ascending, searched before the appends
		for _, uid := range u.uids {
			if _, ok := pending[uid]; !ok {
				continue
			}
			if _, in := slices.BinarySearch(found, uid); !in {
				now = append(now, uid)
			}
		}
		slices.Sort(now)
	}
	removed, removedAt := diff(u.uids, now)
	added, addedAt := diff(now, u.uids)
	seqOf, err := sel.seqNums(append(slices.Clone(removed), added...))
	if err != nil {
		return err
	}
	nums := func(uids []uint32) []uint32 {
		out := make([]uint32, 0, len(uids))
		for _, uid := range uids {
			if n := numOf(u.kind, uid, seqOf[uid]); n != 0 {
				out = append(out, n)
			}
		}
		return out
	}
	if err := w.WriteSearchUpdate(u.tag, u.kind, false, removedAt, nums(removed)); err != nil {
		return err
	}
	if err := w.WriteSearchUpdate(u.tag, u.kind, true, addedAt, nums(added)); err != nil {
		return err
	}
	u.uids = now
	return nil
}

// diff returns the elements of a (ascending) not in b, and the 1-based position in a of the first.
func diff(a, b []uint32) (out []uint32, pos uint32) {
	for i, x := range a {
		if _, found := slices.BinarySearch(b, x); !found {
			if out == nil {
				pos = uint32(i) + 1
			}
			out = append(out, x)
		}
	}
	return out, pos
}

// seqNums maps UIDs to the client's sequence numbers (0: unknown to the client).
func (sel *selection) seqNums(uids []uint32) (map[uint32]uint32, error) {
	out := make(map[uint32]uint32, len(uids))
	if len(uids) == 0 {
		return out, nil
	}
	var set imap.UIDSet
	for _, u := range uids {
		set.AddNum(imap.UID(u))
	}
	err := sel.each(set, fetchBatch, func(batch []*message) error {
		for _, m := range batch {
			out[m.uid] = m.seq
		}
		return nil
	})
	return out, err
}
