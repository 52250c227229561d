package imapd

import (
	"cmp"
	"errors"
	"slices"
	"strings"
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
	sent     int64 // the sent date of RFC 5256 SORT DATE: the Date field, else the internal date
	keys     *msgKeys
}

func (it *sortItem) sentDate() int64 { return it.sent }

func newSortItem(m *message, k *msgKeys) sortItem {
	it := sortItem{seq: m.seq, uid: m.uid, size: m.size, arrival: m.date, keys: k, sent: k.sent}
	if !k.hasDate {
		it.sent = m.date.Unix()
	}
	return it
}

// num is the message's number in the answer.
func (it *sortItem) num(kind imapserver.NumKind) uint32 {
	if kind == imapserver.NumKindUID {
		return it.uid
	}
	return it.seq
}

// matchingItems runs a SEARCH and returns the messages that match, in sequence order, with their
// sort keys.
func (s *session) matchingItems(op string, criteria *imap.SearchCriteria) ([]*sortItem, error) {
	sel := s.sel
	sel.entry.sync()
	sel.entry.cache.touch()
	p := compileSearch(criteria, sel.numContext(nil), sel.entry.resolveFlag)
	validity := sel.mbox.UIDValidity()
	kc := &sel.entry.keys
	visited := 0
	var (
		store []sortItem // the items, allocated a batch at a time
		items []*sortItem
	)
	results := make([]bool, fetchBatch)
	errs := make([]error, fetchBatch)
	keys := make([]*msgKeys, fetchBatch)
	var misses []int
	err := sel.each(nil, fetchBatch, func(batch []*message) error {
		visited += len(batch)
		eval := func(i int, m *message) {
			keys[i] = nil
			results[i], errs[i] = p.matches(m)
		}
		if p.cost > costState {
			parallel(batch, eval)
		} else {
			for i, m := range batch {
				eval(i, m)
			}
		}
		misses = misses[:0]
		kc.mu.Lock()
		for i, m := range batch {
			if errs[i] == nil && results[i] {
				if keys[i] = kc.lookupLocked(validity, m.uid); keys[i] == nil {
					misses = append(misses, i)
				}
			}
		}
		kc.mu.Unlock()
		if len(misses) > 0 {
			missed := make([]*message, len(misses))
			for j, i := range misses {
				missed[j] = batch[i]
			}
			parallel(missed, func(j int, m *message) {
				i := misses[j]
				h, err := m.cachedHeader()
				if err != nil {
					errs[i] = err
					return
				}
				keys[i] = keysOf(h)
				kc.put(validity, m.uid, keys[i])
			})
		}
		if store == nil {
			store = make([]sortItem, 0, fetchBatch)
		}
		for i, m := range batch {
			m.close()
			if errors.Is(errs[i], maildir.ErrNoSuchMessage) {
				continue
			}
			if errs[i] != nil {
				return s.mailError(op, errs[i])
			}
			if results[i] {
				if len(store) == cap(store) {
					store = make([]sortItem, 0, fetchBatch)
				}
				store = append(store, newSortItem(m, keys[i]))
				items = append(items, &store[len(store)-1])
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if kc.len() > visited {
		s.sel.retainKeys(validity) // messages were expunged: drop their keys
	}
	return items, nil
}

// Sort answers SORT and UID SORT.
func (s *session) Sort(kind imapserver.NumKind, keys []imap.SortCriterion, criteria *imap.SearchCriteria, options *imap.SearchOptions) ([]uint32, error) {
	items, err := s.matchingItems("sort", criteria)
	if err != nil {
		return nil, err
	}
	sortItems(items, keys)
	nums := make([]uint32, len(items))
	for i, it := range items {
		nums[i] = it.num(kind)
	}
	if options.ReturnSave {
		uidSet := imap.UIDSet{}
		for _, it := range items {
			uidSet.AddNum(imap.UID(it.uid))
		}
		s.sel.searchRes = uidSet
	}
	return nums, nil
}

// sortItems orders items by keys, ties by sequence number. The first key's value is copied into a
// flat row per message, so most comparisons touch no pointer.
func sortItems(items []*sortItem, keys []imap.SortCriterion) {
	type row struct {
		s   string
		n   int64
		seq uint32
		it  *sortItem
	}
	rows := make([]row, len(items))
	first, rest := keys[0], keys[1:]
	for i, it := range items {
		rows[i] = row{seq: it.seq, it: it}
		rows[i].s, rows[i].n = keyValue(it, first.Key)
	}
	slices.SortFunc(rows, func(a, b row) int {
		c := cmp.Compare(a.n, b.n)
		if c == 0 {
			c = strings.Compare(a.s, b.s)
		}
		if first.Reverse {
			c = -c
		}
		if c != 0 {
			return c
		}
		for _, k := range rest {
			c := compareKey(a.it, b.it, k.Key)
			if k.Reverse {
				c = -c
			}
			if c != 0 {
				return c
			}
		}
		return cmp.Compare(a.seq, b.seq)
	})
	for i := range rows {
		items[i] = rows[i].it
	}
}

// keyValue is an item's value for a key: a string or a number.
func keyValue(it *sortItem, key imap.SortKey) (string, int64) {
	switch key {
	case imap.SortKeyArrival:
		return "", it.arrival.UnixNano()
	case imap.SortKeyDate:
		return "", it.sentDate()
	case imap.SortKeySize:
		return "", it.size
	case imap.SortKeySubject:
		return it.keys.subject, 0
	case imap.SortKeyFrom:
		return it.keys.from, 0
	case imap.SortKeyTo:
		return it.keys.to, 0
	case imap.SortKeyCc:
		return it.keys.cc, 0
	case imap.SortKeyDisplayFrom:
		return it.keys.dispFrom, 0
	case imap.SortKeyDisplayTo:
		return it.keys.dispTo, 0
	}
	return "", 0
}

func compareKey(a, b *sortItem, key imap.SortKey) int {
	as, an := keyValue(a, key)
	bs, bn := keyValue(b, key)
	if c := cmp.Compare(an, bn); c != 0 {
		return c
	}
	return strings.Compare(as, bs)
}

var (
	_ imapserver.SessionSort   = (*session)(nil)
	_ imapserver.SessionThread = (*session)(nil)
)

// addSortCaps adds the capabilities of sort.go and thread.go.
func addSortCaps(caps imap.CapSet) {
	for _, c := range []imap.Cap{imap.CapSort, imap.CapSortDisplay, imap.CapESort, "THREAD=ORDEREDSUBJECT", "THREAD=REFERENCES", "CONTEXT=SEARCH", "CONTEXT=SORT"} {
		caps[c] = struct{}{}
	}
}
