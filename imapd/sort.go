package imapd

import (
	"cmp"
	"errors"
	"slices"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"postie/maildir"
)

// SORT (RFC 5256 §3, DISPLAYFROM/DISPLAYTO of RFC 5957) and its ESORT form (RFC 5267; go-imap
// writes the RETURN answers). The messages are those SEARCH would find; each key compares the
// message's sort keys (sortkeys.go), and messages equal on every key keep sequence number order.

// sortItem is one message that matched, with what sorting and threading compare.
type sortItem struct {
	seq, uid uint32
	size     int64
	arrival  time.Time
	keys     *msgKeys
}

// sentDate is the sent date of RFC 5256 SORT DATE: the Date field, else the internal date.
func (it *sortItem) sentDate() int64 {
	if it.keys.hasDate {
		return it.keys.sent
	}
	return it.arrival.Unix()
}

// num is the message's number in the answer.
func (it *sortItem) num(kind imapserver.NumKind) uint32 {
	if kind == imapserver.NumKindUID {
		return it.uid
	}
	return it.seq
}

// matchingItems runs a SEARCH and returns the messages that match, in sequence order, with their
// sort keys, and their UIDs as a set (for SAVE).
func (s *session) matchingItems(op string, criteria *imap.SearchCriteria) ([]*sortItem, imap.UIDSet, error) {
	sel := s.sel
	sel.entry.sync()
	sel.entry.cache.touch()
	p := compileSearch(criteria, sel.numContext(nil), sel.entry.resolveFlag)
	validity := sel.mbox.UIDValidity()
	kc := &sel.entry.keys
	visited := 0
	var (
		items  []*sortItem
		uidSet imap.UIDSet
	)
	results := make([]bool, fetchBatch)
	errs := make([]error, fetchBatch)
	keys := make([]*msgKeys, fetchBatch)
	err := sel.each(nil, fetchBatch, func(batch []*message) error {
		visited += len(batch)
		evalParallel := func(i int, m *message) {
			defer m.close()
			keys[i] = nil
			results[i], errs[i] = p.matches(m)
			if errs[i] != nil || !results[i] {
				return
			}
			if keys[i] = kc.get(validity, m.uid); keys[i] != nil {
				return
			}
			h, err := m.cachedHeader()
			if err != nil {
				errs[i] = err
				return
			}
			keys[i] = keysOf(h)
			kc.put(validity, m.uid, keys[i])
		}
		parallel(batch, evalParallel)
		for i, m := range batch {
			if errors.Is(errs[i], maildir.ErrNoSuchMessage) {
				continue
			}
			if errs[i] != nil {
				return s.mailError(op, errs[i])
			}
			if results[i] {
				items = append(items, &sortItem{seq: m.seq, uid: m.uid, size: m.size, arrival: m.date, keys: keys[i]})
				uidSet.AddNum(imap.UID(m.uid))
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	if kc.len() > visited {
		s.sel.retainKeys(validity) // messages were expunged: drop their keys
	}
	return items, uidSet, nil
}

// Sort answers SORT and UID SORT.
func (s *session) Sort(kind imapserver.NumKind, keys []imap.SortCriterion, criteria *imap.SearchCriteria, options *imap.SearchOptions) ([]uint32, error) {
	items, uidSet, err := s.matchingItems("sort", criteria)
	if err != nil {
		return nil, err
	}
	sortItems(items, keys)
	nums := make([]uint32, len(items))
	for i, it := range items {
		nums[i] = it.num(kind)
	}
	if options.ReturnSave {
		if uidSet == nil {
			uidSet = imap.UIDSet{}
		}
		s.sel.searchRes = uidSet
	}
	return nums, nil
}

// sortItems orders items by keys, ties by sequence number.
func sortItems(items []*sortItem, keys []imap.SortCriterion) {
	slices.SortFunc(items, func(a, b *sortItem) int {
		for _, k := range keys {
			c := compareKey(a, b, k.Key)
			if k.Reverse {
				c = -c
			}
			if c != 0 {
				return c
			}
		}
		return cmp.Compare(a.seq, b.seq)
	})
}

func compareKey(a, b *sortItem, key imap.SortKey) int {
	switch key {
	case imap.SortKeyArrival:
		return a.arrival.Compare(b.arrival)
	case imap.SortKeyDate:
		return cmp.Compare(a.sentDate(), b.sentDate())
	case imap.SortKeySize:
		return cmp.Compare(a.size, b.size)
	case imap.SortKeySubject:
		return cmp.Compare(a.keys.subject, b.keys.subject)
	case imap.SortKeyFrom:
		return cmp.Compare(a.keys.from, b.keys.from)
	case imap.SortKeyTo:
		return cmp.Compare(a.keys.to, b.keys.to)
	case imap.SortKeyCc:
		return cmp.Compare(a.keys.cc, b.keys.cc)
	case imap.SortKeyDisplayFrom:
		return cmp.Compare(a.keys.dispFrom, b.keys.dispFrom)
	case imap.SortKeyDisplayTo:
		return cmp.Compare(a.keys.dispTo, b.keys.dispTo)
	}
	return 0
}

var (
	_ imapserver.SessionSort   = (*session)(nil)
	_ imapserver.SessionThread = (*session)(nil)
)

// addSortCaps adds the capabilities of sort.go and thread.go.
func addSortCaps(caps imap.CapSet) {
	for _, c := range []imap.Cap{imap.CapSort, imap.CapSortDisplay, imap.CapESort, "THREAD=ORDEREDSUBJECT", "THREAD=REFERENCES"} {
		caps[c] = struct{}{}
	}
}
