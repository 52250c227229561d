package imapd

import (
	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"postie/maildir"
)

// CONDSTORE and QRESYNC (RFC 7162) over maildir's modseqs (maildir/modseq.go): every message has the
// modseq of its last change, the mailbox its HIGHESTMODSEQ, and maildir remembers expunged UIDs with the
// modseq of their expunge. The protocol is the go-imap fork's (imapserver/condstore.go); this file
// answers it: FETCH (CHANGEDSINCE n [VANISHED]), STORE (UNCHANGEDSINCE n) with [MODIFIED set], SEARCH
// MODSEQ, and the QRESYNC parameter of SELECT/EXAMINE. When maildir no longer remembers the expunges
// since a client's modseq (it keeps the last 20,000), VANISHED (EARLIER) names every UID of the
// client's known-uids (or of 1:UIDNEXT-1) that is not in the mailbox: exact, if longer.

var _ imapserver.SessionCondStore = (*session)(nil)

// HighestModSeq is the selected mailbox's HIGHESTMODSEQ.
func (s *session) HighestModSeq() (uint64, error) {
	if s.sel == nil {
		return 0, nil
	}
	return s.sel.mbox.HighestModSeq(), nil
}

// condStoreOn reports whether the client has enabled CONDSTORE (FETCH responses with FLAGS then carry
// MODSEQ).
func (s *session) condStoreOn() bool {
	return s.conn != nil && s.conn.EnabledCaps().Has(imap.CapCondStore)
}

// qresyncOn reports whether the client has enabled QRESYNC (every FETCH response then carries the UID).
func (s *session) qresyncOn() bool {
	return s.conn != nil && s.conn.EnabledCaps().Has(imap.CapQResync)
}

// QResync answers SELECT/EXAMINE ... (QRESYNC (uidvalidity modseq [known-uids [seq-match]]))
// (RFC 7162 §3.2.5): VANISHED (EARLIER) for the known UIDs expunged since modseq, then a FETCH for each
// known message changed since. Sequence-match data is not needed: the answer is exact without it.
func (s *session) QResync(w *imapserver.FetchWriter, q *imap.SelectQResync) error {
	sel := s.sel
	var known imap.UIDSet
	if q.KnownUIDs != nil {
		known = sel.numContext(nil).staticUIDSet(q.KnownUIDs)
	}
	if err := w.WriteVanished(s.vanished(known, q.ModSeq), true); err != nil {
		return err
	}
	var set imap.NumSet
	if known != nil {
		set = known
	}
	return s.fetch(w, set, &imap.FetchOptions{UID: true, Flags: true, ModSeq: true, ChangedSince: q.ModSeq}, false)
}

// vanished lists the UIDs of set (nil: all) expunged since modseq.
func (s *session) vanished(set imap.UIDSet, since uint64) imap.UIDSet {
	mbox := s.sel.mbox
	uids, complete := mbox.Vanished(since)
	var out imap.UIDSet
	if complete {
		for _, uid := range uids {
			if set == nil || set.Contains(imap.UID(uid)) {
				out.AddNum(imap.UID(uid))
			}
		}
		return out
	}
	next := mbox.UIDNext()
	if set == nil {
		if next <= 1 {
			return nil
		}
		set = imap.UIDSet{{Start: 1, Stop: imap.UID(next - 1)}}
	}
	mbox.View(func(msgs []maildir.Message) { out = missingUIDs(set, msgs, next) })
	return out
}

// missingUIDs is the UIDs of set below next that no message has.
func missingUIDs(set imap.UIDSet, msgs []maildir.Message, next uint32) imap.UIDSet {
	var out imap.UIDSet
	for _, r := range set {
		lo, hi := uint32(r.Start), uint32(r.Stop)
		if lo > hi {
			lo, hi = hi, lo
		}
		if hi == 0 || hi >= next { // "*" or beyond: up to the last UID given
			hi = next - 1
		}
		if lo == 0 || lo > hi {
			continue
		}
		i := searchUID(msgs, lo)
		for u := lo; u <= hi; {
			if i < len(msgs) && msgs[i].UID == u {
				i++
				u++
				continue
			}
			end := hi // a gap up to the next message (or hi)
			if i < len(msgs) && msgs[i].UID <= hi {
				end = msgs[i].UID - 1
			}
			out.AddRange(imap.UID(u), imap.UID(end))
			if end == hi {
				break
			}
			u = end + 1
		}
	}
	return out
}

func searchUID(msgs []maildir.Message, uid uint32) int {
	lo, hi := 0, len(msgs)
	for lo < hi {
		h := int(uint(lo+hi) >> 1)
		if msgs[h].UID < uid {
			lo = h + 1
		} else {
			hi = h
		}
	}
	return lo
}

// fetchVanished answers the VANISHED modifier of UID FETCH (RFC 7162 §3.2.6) before the FETCH
// responses.
func (s *session) fetchVanished(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	if !options.Vanished {
		return nil
	}
	set, ok := numSet.(imap.UIDSet)
	if !ok {
		return nil
	}
	return w.WriteVanished(s.vanished(s.sel.numContext(nil).staticUIDSet(set), options.ChangedSince), true)
}

// changedSince keeps the messages of batch changed after since (all when since is 0).
func changedSince(batch []*message, since uint64) []*message {
	if since == 0 {
		return batch
	}
	out := batch[:0]
	for _, m := range batch {
		if m.modseq > since {
			out = append(out, m)
		} else {
			m.close()
		}
	}
	return out
}

// storeAnswer sends STORE's FETCH responses and its result: with UNCHANGEDSINCE, the messages that
// failed the test get no FETCH and are named in OK [MODIFIED set] (sequence numbers, or UIDs for UID
// STORE); a .SILENT conditional STORE still reports the new MODSEQ of what it changed (RFC 4551 §3.2).
func (s *session) storeAnswer(w *imapserver.FetchWriter, numSet imap.NumSet, uids []uint32, changed []maildir.Message, modified []uint32, silent bool, options *imap.StoreOptions) error {
	conditional := options != nil && options.HasUnchangedSince
	condStore := conditional || s.condStoreOn()
	var fetchUIDs []uint32
	switch {
	case !silent:
		fetchUIDs = without(uids, modified)
	case conditional:
		for _, m := range changed {
			fetchUIDs = append(fetchUIDs, m.UID)
		}
	}
	if len(fetchUIDs) > 0 {
		_, byUID := numSet.(imap.UIDSet)
		opts := &imap.FetchOptions{UID: !silent || byUID || s.qresyncOn(), Flags: !silent, ModSeq: condStore}
		if err := s.fetch(w, imap.UIDSetNum(toUIDs(fetchUIDs)...), opts, false); err != nil {
			return err
		}
	}
	if len(modified) == 0 {
		return nil
	}
	var set imap.NumSet = uidSetOf(modified)
	if _, byUID := numSet.(imap.UIDSet); !byUID {
		var seqs imap.SeqSet
		err := s.sel.each(set, fetchBatch, func(batch []*message) error {
			for _, m := range batch {
				seqs.AddNum(m.seq)
			}
			return nil
		})
		if err != nil {
			return err
		}
		set = seqs
	}
	return &imap.Error{Type: imap.StatusResponseTypeOK, Code: imap.ResponseCode("MODIFIED " + set.String()), Text: "Conditional STORE failed"}
}

// without returns uids minus drop (drop sorted ascending).
func without(uids, drop []uint32) []uint32 {
	if len(drop) == 0 {
		return uids
	}
	out := make([]uint32, 0, len(uids))
	for _, u := range uids {
		if i := searchUint32(drop, u); i >= len(drop) || drop[i] != u {
			out = append(out, u)
		}
	}
	return out
}

func searchUint32(s []uint32, v uint32) int {
	lo, hi := 0, len(s)
	for lo < hi {
		h := int(uint(lo+hi) >> 1)
		if s[h] < v {
			lo = h + 1
		} else {
			hi = h
		}
	}
	return lo
}

// modSeq is a searched message's modseq (evalMsg; indexedMsg has it by embedding).
func (m *message) modSeq() uint64 { return m.modseq }

// searchModSeq gathers SEARCH's MODSEQ result (RFC 7162 §3.1.5, RFC 4731 §3.2): the highest modseq of
// the messages returned, that is of all matches, or of the MIN and/or MAX message when only those are.
type searchModSeq struct {
	all, min, max    uint64
	minNum, maxNum   uint32
	haveMin, haveMax bool
}

func (r *searchModSeq) note(num uint32, ms uint64) {
	r.all = max(r.all, ms)
	if !r.haveMin || num < r.minNum {
		r.minNum, r.min, r.haveMin = num, ms, true
	}
	if !r.haveMax || num > r.maxNum {
		r.maxNum, r.max, r.haveMax = num, ms, true
	}
}

func (r *searchModSeq) result(o *imap.SearchOptions, d *imap.SearchData) uint64 {
	if d.Count == 0 {
		return 0
	}
	if o.ReturnAll || o.ReturnCount || !(o.ReturnMin || o.ReturnMax) {
		return r.all
	}
	var ms uint64
	if o.ReturnMin {
		ms = r.min
	}
	if o.ReturnMax {
		ms = max(ms, r.max)
	}
	return ms
}

// searchUsesModSeq reports whether a MODSEQ key occurs in c.
func searchUsesModSeq(c *imap.SearchCriteria) bool {
	if c.ModSeq != nil {
		return true
	}
	for i := range c.Not {
		if searchUsesModSeq(&c.Not[i]) {
			return true
		}
	}
	for i := range c.Or {
		if searchUsesModSeq(&c.Or[i][0]) || searchUsesModSeq(&c.Or[i][1]) {
			return true
		}
	}
	return false
}

// currentModSeq is the modseq of the selected mailbox's message uid now (the session tracker leaves
// out queued flag updates older than that).
func (sel *selection) currentModSeq(uid imap.UID) (uint64, bool) {
	var ms uint64
	ok := false
	sel.mbox.View(func(msgs []maildir.Message) {
		if i := searchUID(msgs, uint32(uid)); i < len(msgs) && msgs[i].UID == uint32(uid) {
			ms, ok = msgs[i].ModSeq, true
		}
	})
	return ms, ok
}
