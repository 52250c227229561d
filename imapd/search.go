package imapd

import (
	"errors"
	"net/mail"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"postie/imapd/mimeparse"
	"postie/maildir"
	"postie/searchidx"
)

// RFC 9051 §6.4.4 SEARCH, evaluated per message. Criteria are compiled once per command: sequence and
// UID sets are made static ("*" and "$" resolved), flags become bit masks, strings are case-folded.
// Each message is then tested cheapest first: numbers and flags from the mailbox state, then header
// fields (from the cache), then the text of the message file, read once for all TEXT/BODY terms.

// cost levels of a criterion.
const (
	costState  = iota // sequence numbers, UIDs, flags, sizes, internal dates
	costHeader        // header fields, sent dates
	costText          // TEXT and BODY: the whole file
)

type headerTerm struct {
	name  string
	value []byte // case-folded; empty means "the field exists"
}

// query is one compiled level of search criteria: all of its conditions must hold.
type query struct {
	never       bool // a condition no message can meet (KEYWORD never defined)
	seqs        []imap.SeqSet
	uids        []imap.UIDSet
	since       time.Time
	before      time.Time
	sentSince   time.Time
	sentBefore  time.Time
	larger      int64
	smaller     int64
	flags       uint64 // all must be set
	notFlags    uint64 // none may be set
	headers     []headerTerm
	texts       []int // indexes into program.needles
	not         []*query
	or          [][2]*query
	cost        int
	ownHeaders  bool
	ownText     bool
	needFullHdr bool   // a header term outside the cached fields
	modseq      uint64 // MODSEQ n: the message's modseq must be at least n (condstore.go)
}

// program is a compiled SEARCH.
type program struct {
	root    *query
	needles []mimeparse.Needle
	cost    int
}

// numContext resolves the dynamic parts of sequence and UID sets for one session.
type numContext struct {
	maxSeq    uint32      // the client's highest sequence number
	maxUID    uint32      // the UID of the last message
	searchRes imap.UIDSet // the saved result ($)
}

// staticSeqSet resolves "*" in a client sequence set. The result is rebuilt sorted and merged, as the
// set's binary search needs.
func (nc *numContext) staticSeqSet(s imap.SeqSet) imap.SeqSet {
	out := imap.SeqSet{}
	for _, r := range s {
		start, stop := orMax(r.Start, nc.maxSeq), orMax(r.Stop, nc.maxSeq)
		if start != 0 && stop != 0 { // "*" of an empty view names nothing
			out.AddRange(min(start, stop), max(start, stop))
		}
	}
	return out
}

// staticUIDSet resolves "*" and "$" in a UID set. RFC 9051 §6.4.8: "n:*" always includes the last
// message, even when n is above its UID.
func (nc *numContext) staticUIDSet(s imap.UIDSet) imap.UIDSet {
	if imap.IsSearchRes(s) {
		return nc.searchRes
	}
	out := imap.UIDSet{}
	for _, r := range s {
		start, stop := orMax(uint32(r.Start), nc.maxUID), orMax(uint32(r.Stop), nc.maxUID)
		if start != 0 && stop != 0 {
			out.AddRange(imap.UID(min(start, stop)), imap.UID(max(start, stop)))
		}
	}
	return out
}

func orMax(n, max uint32) uint32 {
	if n == 0 {
		return max
	}
	return n
}

// flagResolver maps an IMAP flag to its bit in the mailbox (\Recent to flagRecent, which a session
// sets on its recent messages); ok is false for a keyword the mailbox has never defined.
type flagResolver func(imap.Flag) (bit uint64, ok bool)

func compileSearch(c *imap.SearchCriteria, nc *numContext, flags flagResolver) *program {
	p := &program{}
	p.root = p.compile(c, nc, flags)
	p.cost = p.root.cost
	return p
}

func (p *program) compile(c *imap.SearchCriteria, nc *numContext, flags flagResolver) *query {
	q := &query{
		since: c.Since, before: c.Before, sentSince: c.SentSince, sentBefore: c.SentBefore,
		larger: c.Larger, smaller: c.Smaller,
	}
	if c.ModSeq != nil {
		q.modseq = c.ModSeq.ModSeq
	}
	for _, s := range c.SeqNum {
		q.seqs = append(q.seqs, nc.staticSeqSet(s))
	}
	for _, s := range c.UID {
		q.uids = append(q.uids, nc.staticUIDSet(s))
	}
	for _, f := range c.Flag {
		if bit, ok := flags(f); ok {
			q.flags |= bit
		} else {
			q.never = true
		}
	}
	for _, f := range c.NotFlag {
		if bit, ok := flags(f); ok {
			q.notFlags |= bit
		}
	}
	for _, h := range c.Header {
		q.headers = append(q.headers, headerTerm{name: h.Key, value: mimeparse.Fold([]byte(h.Value))})
		q.ownHeaders = true
		if !isCachedField(h.Key) {
			q.needFullHdr = true
		}
	}
	if !q.sentSince.IsZero() || !q.sentBefore.IsZero() {
		q.ownHeaders = true
	}
	for _, s := range c.Text {
		q.texts = append(q.texts, len(p.needles))
		p.needles = append(p.needles, mimeparse.Needle{Folded: mimeparse.Fold([]byte(s)), WithHeader: true})
	}
	for _, s := range c.Body {
		q.texts = append(q.texts, len(p.needles))
		p.needles = append(p.needles, mimeparse.Needle{Folded: mimeparse.Fold([]byte(s))})
	}
	q.ownText = len(q.texts) > 0
	switch {
	case q.ownText:
		q.cost = costText
	case q.ownHeaders:
		q.cost = costHeader
	}
	for i := range c.Not {
		sub := p.compile(&c.Not[i], nc, flags)
		q.not = append(q.not, sub)
		q.cost = max(q.cost, sub.cost)
	}
	for i := range c.Or {
		a, b := p.compile(&c.Or[i][0], nc, flags), p.compile(&c.Or[i][1], nc, flags)
		q.or = append(q.or, [2]*query{a, b})
		q.cost = max(q.cost, a.cost, b.cost)
	}
	return q
}

// evalMsg is what the evaluator needs of one message; the file-backed parts load lazily.
type evalMsg interface {
	seqNum() uint32
	uidNum() uint32
	state() (size int64, date time.Time, flags uint64)
	cachedHeader() (mimeparse.Header, error) // the cached fields
	fullHeader() (mimeparse.Header, error)
	// textFound reports, for each needle, whether the message's text contains it.
	textFound(needles []mimeparse.Needle) ([]bool, error)
	modSeq() uint64 // MODSEQ (condstore.go)
}

type evaluation struct {
	p     *program
	m     evalMsg
	found []bool
	err   error
}

// matches runs the program on one message.
func (p *program) matches(m evalMsg) (bool, error) {
	ev := &evaluation{p: p, m: m}
	ok := ev.match(p.root)
	return ok && ev.err == nil, ev.err
}

func (ev *evaluation) match(q *query) bool {
	if q.never || !ev.matchState(q) {
		return false
	}
	for level := costState; level <= q.cost; level++ {
		if level == costHeader && q.ownHeaders && !ev.matchHeaders(q) {
			return false
		}
		if level == costText && q.ownText && !ev.matchText(q) {
			return false
		}
		for _, sub := range q.not {
			if sub.cost == level && ev.match(sub) {
				return false
			}
		}
		for _, pair := range q.or {
			if max(pair[0].cost, pair[1].cost) == level && !ev.match(pair[0]) && !ev.match(pair[1]) {
				return false
			}
		}
		if ev.err != nil {
			return false
		}
	}
	return true
}

func (ev *evaluation) matchState(q *query) bool {
	seq, uid := ev.m.seqNum(), ev.m.uidNum()
	for i := range q.seqs {
		if seq == 0 || !q.seqs[i].Contains(seq) {
			return false
		}
	}
	for _, s := range q.uids {
		if !s.Contains(imap.UID(uid)) {
			return false
		}
	}
	size, date, flags := ev.m.state()
	if flags&q.flags != q.flags || flags&q.notFlags != 0 {
		return false
	}
	if q.modseq > 0 && ev.m.modSeq() < q.modseq {
		return false
	}
	if q.larger > 0 && size <= q.larger || q.smaller > 0 && size >= q.smaller {
		return false
	}
	if !q.since.IsZero() || !q.before.IsZero() {
		if !inDateRange(dayOf(date), q.since, q.before) {
			return false
		}
	}
	return true
}

// dayOf returns t's calendar date (in t's own zone) as midnight UTC, the form the parser gives dates in.
func dayOf(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

func inDateRange(day, since, before time.Time) bool {
	since, before = dayOf(since), dayOf(before)
	return (since.IsZero() || !day.Before(since)) && (before.IsZero() || day.Before(before))
}

func (ev *evaluation) matchHeaders(q *query) bool {
	var h mimeparse.Header
	var err error
	if q.needFullHdr {
		h, err = ev.m.fullHeader()
	} else {
		h, err = ev.m.cachedHeader()
	}
	if err != nil {
		ev.err = err
		return false
	}
	if !q.sentSince.IsZero() || !q.sentBefore.IsZero() {
		day := sentDay(h, ev.m)
		if !inDateRange(day, q.sentSince, q.sentBefore) {
			return false
		}
	}
	for _, t := range q.headers {
		if !mimeparse.HeaderContains(h, t.name, t.value) {
			return false
		}
	}
	return true
}

// sentDay is the date of the Date: field, or of the internal date when there is none that parses
// (Dovecot does the same).
func sentDay(h mimeparse.Header, m evalMsg) time.Time {
	if t, err := mail.ParseDate(h.Get("Date")); err == nil {
		return dayOf(t)
	}
	_, date, _ := m.state()
	return dayOf(date)
}

func (ev *evaluation) matchText(q *query) bool {
	if ev.found == nil {
		ev.found, ev.err = ev.m.textFound(ev.p.needles)
		if ev.err != nil {
			return false
		}
	}
	for _, i := range q.texts {
		if !ev.found[i] {
			return false
		}
	}
	return true
}

// Search answers SEARCH and UID SEARCH, with ESEARCH (MIN, MAX, COUNT, ALL) and SEARCHRES (SAVE, $).
func (s *session) Search(kind imapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (*imap.SearchData, error) {
	sel := s.sel
	sel.entry.sync()
	sel.entry.cache.touch()
	p := compileSearch(criteria, sel.numContext(nil), sel.entry.resolveFlag)
	var indexed []*searchidx.Result
	if len(p.needles) > 0 {
		if idx := s.textIndex(); idx != nil {
			indexed = queryIndex(idx, p)
		}
	}
	var (
		data   imap.SearchData
		seqSet imap.SeqSet
		uidSet imap.UIDSet
	)
	results := make([]bool, fetchBatch)
	errs := make([]error, fetchBatch)
	var ms searchModSeq
	err := sel.each(nil, fetchBatch, func(batch []*message) error {
		eval := func(i int, m *message) {
			if indexed != nil {
				results[i], errs[i] = p.matches(indexedMsg{m, indexed})
			} else {
				results[i], errs[i] = p.matches(m)
			}
			m.close()
		}
		if p.cost > costState {
			parallel(batch, eval) // header and text terms read files: several at a time
		} else {
			for i, m := range batch {
				eval(i, m)
			}
		}
		for i, m := range batch {
			if errors.Is(errs[i], maildir.ErrNoSuchMessage) {
				continue
			}
			if errs[i] != nil {
				return s.mailError("search", errs[i])
			}
			if !results[i] {
				continue
			}
			uidSet.AddNum(imap.UID(m.uid))
			num := m.uid
			if kind == imapserver.NumKindSeq {
				seqSet.AddNum(m.seq)
				num = m.seq
			}
			if data.Min == 0 || num < data.Min {
				data.Min = num
			}
			data.Max = max(data.Max, num)
			data.Count++
			ms.note(num, m.modseq)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if kind == imapserver.NumKindSeq {
		data.All = seqSet
	} else {
		data.All = uidSet
	}
	if options.ReturnSave {
		sel.searchRes = savedResult(uidSet, options, &data)
	}
	if searchUsesModSeq(criteria) {
		data.ModSeq = ms.result(options, &data)
	}
	return &data, nil
}

// savedResult is what SAVE keeps (RFC 5182 §2.4): with only MIN and/or MAX asked for, just those.
func savedResult(all imap.UIDSet, o *imap.SearchOptions, d *imap.SearchData) imap.UIDSet {
	if o.ReturnAll || o.ReturnCount || !(o.ReturnMin || o.ReturnMax) || d.Count == 0 {
		if all == nil {
			return imap.UIDSet{}
		}
		return all
	}
	lo, hi := uidBounds(all)
	var out imap.UIDSet
	if o.ReturnMin {
		out.AddNum(imap.UID(lo))
	}
	if o.ReturnMax {
		out.AddNum(imap.UID(hi))
	}
	return out
}
