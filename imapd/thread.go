package imapd

import (
	"cmp"
	"slices"
	"strconv"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

// THREAD (RFC 5256 §4): ORDEREDSUBJECT and REFERENCES, over the messages SEARCH would find, from
// the same per-message keys as SORT.
//
// Sent dates compare as RFC 5256 §2.2 says for SORT DATE: the Date field, else the internal date;
// equal dates keep sequence number order.

// Thread answers THREAD and UID THREAD.
func (s *session) Thread(kind imapserver.NumKind, alg imap.ThreadAlgorithm, criteria *imap.SearchCriteria) ([]imap.ThreadData, error) {
	items, err := s.matchingItems("thread", criteria)
	if err != nil {
		return nil, err
	}
	switch alg {
	case imap.ThreadOrderedSubject:
		return threadOrderedSubject(items, kind), nil
	case imap.ThreadReferences:
		return threadReferences(items, kind), nil
	}
	return nil, &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Unknown THREAD algorithm"}
}

// dateOrder compares two messages by sent date, then sequence number.
func dateOrder(a, b *sortItem) int {
	if c := cmp.Compare(a.sentDate(), b.sentDate()); c != 0 {
		return c
	}
	return cmp.Compare(a.seq, b.seq)
}

// threadOrderedSubject is RFC 5256's ORDEREDSUBJECT: messages grouped by base subject; in each
// group the oldest is the parent of the others, in date order; groups in the order of their first
// message's date.
func threadOrderedSubject(items []*sortItem, kind imapserver.NumKind) []imap.ThreadData {
	slices.SortFunc(items, func(a, b *sortItem) int {
		if c := cmp.Compare(a.keys.subject, b.keys.subject); c != 0 {
			return c
		}
		return dateOrder(a, b)
	})
	type group struct {
		first *sortItem
		t     imap.ThreadData
	}
	var groups []group
	for i := 0; i < len(items); {
		j := i + 1
		for j < len(items) && items[j].keys.subject == items[i].keys.subject {
			j++
		}
		g := group{first: items[i], t: imap.ThreadData{Chain: []uint32{items[i].num(kind)}}}
		for _, it := range items[i+1 : j] {
			g.t.SubThreads = append(g.t.SubThreads, imap.ThreadData{Chain: []uint32{it.num(kind)}})
		}
		groups = append(groups, g)
		i = j
	}
	slices.SortFunc(groups, func(a, b group) int { return dateOrder(a.first, b.first) })
	out := make([]imap.ThreadData, len(groups))
	for i := range groups {
		out[i] = groups[i].t
	}
	return out
}

// container is a node of the REFERENCES algorithm: a message, or a dummy (item nil) standing for a
// message that is referred to but not in the set.
type container struct {
	item     *sortItem
	parent   *container
	children []*container
}

// maxThreadDepth bounds how deep a thread grows: a link that would put a message deeper is
// refused as a loop would be, so that a mailbox of crafted references costs neither quadratic time
// nor deep recursion.
const maxThreadDepth = 2048

// isAncestorOf reports whether c is p or one of p's ancestors (or p is maxThreadDepth deep).
func (c *container) isAncestorOf(p *container) bool {
	for depth := 0; p != nil; p, depth = p.parent, depth+1 {
		if p == c || depth >= maxThreadDepth {
			return true
		}
	}
	return false
}

func (c *container) addChild(child *container) {
	child.parent = c
	c.children = append(c.children, child)
}

func (c *container) unlink() {
	p := c.parent
	if p == nil {
		return
	}
	p.children = slices.DeleteFunc(p.children, func(x *container) bool { return x == c })
	c.parent = nil
}

// link makes parent the parent of child unless child has one or it would make a loop.
func link(parent, child *container) {
	if child.parent == nil && !child.isAncestorOf(parent) {
		parent.addChild(child)
	}
}

// first is the message a container sorts and is named by: itself, or a dummy's first child.
func (c *container) first() *sortItem {
	for c.item == nil {
		if len(c.children) == 0 {
			return nil
		}
		c = c.children[0]
	}
	return c.item
}

// threadReferences is RFC 5256's REFERENCES algorithm (§4, steps 1 to 6).
func threadReferences(items []*sortItem, kind imapserver.NumKind) []imap.ThreadData {
	// (1) link messages by their references; items are in sequence order.
	ids := make(map[string]*container, len(items))
	all := make([]*container, 0, len(items))
	get := func(id string) *container {
		c := ids[id]
		if c == nil {
			c = &container{}
			ids[id] = c
			all = append(all, c)
		}
		return c
	}
	for _, it := range items {
		id := it.keys.msgID
		if c := ids[id]; id == "" || c != nil && c.item != nil {
			id = "\x00" + strconv.FormatUint(uint64(it.seq), 10) // missing or duplicate: unique
		}
		c := get(id)
		c.item = it
		var prev *container
		for _, ref := range it.keys.refs {
			r := get(ref)
			if prev != nil {
				link(prev, r)
			}
			prev = r
		}
		c.unlink() // (1B) the last reference is the parent, whatever an earlier message said
		if prev != nil && !c.isAncestorOf(prev) {
			prev.addChild(c)
		}
	}
	// (2) the root set; (3) prune dummies.
	var roots []*container
	for _, c := range all {
		if c.parent == nil {
			roots = append(roots, c)
		}
	}
	roots = prune(roots, true)
	// (4) sort the root set by date (a dummy by its first child's, its children sorted first).
	for _, c := range roots {
		if c.item == nil {
			sortSiblings(c.children)
		}
	}
	sortSiblings(roots)
	// (5) merge the roots that share a base subject.
	roots = mergeBySubject(roots)
	// (6) sort every set of siblings, the deepest first.
	sortTree(roots)
	out := make([]imap.ThreadData, len(roots))
	for i, c := range roots {
		out[i] = threadData(c, kind)
	}
	return out
}

// prune removes dummies (RFC 5256 §4 step 3): one without children goes; one with children is
// replaced by them, except at the root when it has more than one.
func prune(list []*container, atRoot bool) []*container {
	out := make([]*container, 0, len(list))
	for _, c := range list {
		c.children = prune(c.children, false)
		switch {
		case c.item != nil:
			out = append(out, c)
		case len(c.children) == 0:
		case !atRoot || len(c.children) == 1:
			for _, ch := range c.children {
				ch.parent = c.parent
			}
			out = append(out, c.children...)
		default:
			out = append(out, c)
		}
	}
	return out
}

// sortSiblings orders containers by the sent date of their first message, then its sequence
// number (both copied out first: the comparisons then touch no pointer).
func sortSiblings(list []*container) {
	if len(list) < 2 {
		return
	}
	type row struct {
		date int64
		seq  uint32
		c    *container
	}
	rows := make([]row, len(list))
	for i, c := range list {
		rows[i].c = c
		if it := c.first(); it != nil {
			rows[i].date, rows[i].seq = it.sent, it.seq
		}
	}
	slices.SortFunc(rows, func(a, b row) int {
		if c := cmp.Compare(a.date, b.date); c != 0 {
			return c
		}
		return cmp.Compare(a.seq, b.seq)
	})
	for i := range rows {
		list[i] = rows[i].c
	}
}

func sortTree(list []*container) {
	for _, c := range list {
		sortTree(c.children)
	}
	sortSiblings(list)
}

// mergeBySubject is RFC 5256 §4 step 5: roots whose thread subject is the same join one thread.
func mergeBySubject(roots []*container) []*container {
	subject := func(c *container) string {
		if it := c.first(); it != nil {
			return it.keys.subject
		}
		return ""
	}
	isReply := func(c *container) bool { return c.item != nil && c.item.keys.reply }
	table := make(map[string]*container)
	for _, c := range roots { // (5B)
		subj := subject(c)
		if subj == "" {
			continue
		}
		old := table[subj]
		if old == nil || old.item != nil && (c.item == nil || isReply(old) && !isReply(c)) {
			table[subj] = c
		}
	}
	made := []*container{}
	for _, c := range roots { // (5C)
		subj := subject(c)
		old := table[subj]
		if subj == "" || old == c || c.parent != nil { // (c.parent: merged already, as a table entry)
			continue
		}
		switch {
		case old.item == nil && c.item == nil:
			for _, ch := range c.children {
				old.addChild(ch)
			}
			c.children = nil
		case old.item == nil:
			old.addChild(c)
		case isReply(c) && !isReply(old):
			old.addChild(c)
		default:
			d := &container{}
			d.addChild(old)
			d.addChild(c)
			table[subj] = d
			made = append(made, d)
		}
	}
	// What is left at the top: roots not merged into another, and the new dummies. (Step 6
	// orders them.)
	out := make([]*container, 0, len(roots))
	for _, c := range append(roots, made...) {
		if c.parent == nil && (c.item != nil || len(c.children) > 0) {
			out = append(out, c)
		}
	}
	return out
}

func threadData(c *container, kind imapserver.NumKind) imap.ThreadData {
	var t imap.ThreadData
	if c.item != nil {
		t.Chain = []uint32{c.item.num(kind)}
	}
	for _, ch := range c.children {
		t.SubThreads = append(t.SubThreads, threadData(ch, kind))
	}
	return t
}
