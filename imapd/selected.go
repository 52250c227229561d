package imapd

import (
	"errors"
	"sort"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"postie/maildir"
)

// \Recent (IMAP4rev1 only): see recent.go. A selection's recent messages carry flagRecent (each), so
// FETCH FLAGS, SEARCH RECENT, NEW and OLD see it.

func (s *session) Select(name string, options *imap.SelectOptions) (*imap.SelectData, error) {
	s.unselect()
	m, err := s.mail.Mailbox(name)
	if err != nil {
		return nil, s.mailError("select", err)
	}
	e := s.srv.boxes.get(m)
	if err := e.refresh(pollRefreshGap); err != nil {
		return nil, s.mailError("select", err)
	}
	e.sync()
	var n, firstUnseen uint32
	var st *imapserver.SessionTracker
	highest := m.HighestModSeq() // before the view: a change in between comes again, never goes missing
	m.View(func(msgs []maildir.Message) {
		// In one view with the tracker's session, so the count and the tracker agree.
		st = e.tracker.NewSession()
		n = uint32(len(msgs))
		for i := range msgs {
			if msgs[i].Flags&maildir.FlagSeen == 0 {
				firstUnseen = uint32(i) + 1
				break
			}
		}
	})
	s.sel = &selection{entry: e, mbox: m, st: st, readOnly: options.ReadOnly}
	st.SetModSeqLookup(s.sel.currentModSeq) // condstore.go
	flags := e.mailboxFlags()
	perm := append([]imap.Flag(nil), flags...)
	if len(flags) < len(systemFlags)+maildir.MaxKeywords {
		perm = append(perm, imap.FlagWildcard)
	}
	if options.ReadOnly {
		perm = nil // RFC 3501 §6.3.2: EXAMINE changes nothing
	}
	return &imap.SelectData{
		Flags:             flags,
		PermanentFlags:    perm,
		NumMessages:       n,
		NumRecent:         s.selectRecent(s.sel),
		FirstUnseenSeqNum: firstUnseen,
		UIDNext:           imap.UID(m.UIDNext()),
		UIDValidity:       m.UIDValidity(),
		HighestModSeq:     highest,
	}, nil
}

func (s *session) Unselect() error {
	s.unselect()
	return nil
}

func (s *session) unselect() {
	if s.sel != nil {
		s.sel.st.Close()
		s.sel = nil
	}
}

// Expunge removes the \Deleted messages (of uids, for UID EXPUNGE). The EXPUNGE responses reach this
// session through the tracker in the poll that follows, as they reach every other session. After
// EXAMINE it does nothing: go-imap calls it for CLOSE too, and CLOSE must then still succeed.
func (s *session) Expunge(_ *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
	sel := s.sel
	if sel.readOnly {
		return nil
	}
	defer s.busy()()
	var set imap.UIDSet
	if uids != nil {
		nc := sel.numContext(nil)
		set = nc.staticUIDSet(*uids)
	}
	var del []uint32
	sel.mbox.View(func(msgs []maildir.Message) {
		for i := range msgs {
			if msgs[i].Flags&maildir.FlagDeleted != 0 && (uids == nil || set.Contains(imap.UID(msgs[i].UID))) {
				del = append(del, msgs[i].UID)
			}
		}
	})
	if len(del) == 0 {
		return nil
	}
	if _, err := sel.mbox.Expunge(del, sel.st); err != nil && !errors.Is(err, maildir.ErrNoSuchMailbox) {
		// (A mailbox deleted meanwhile has nothing left to expunge, and CLOSE must still succeed.)
		return s.mailError("expunge", err)
	}
	return nil
}

// Store changes flags. Other sessions hear of it through the tracker; this one gets FETCH FLAGS
// answers here unless .SILENT (the tracker skips the session that made the change).
func (s *session) Store(w *imapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, options *imap.StoreOptions) error {
	sel := s.sel
	if sel.readOnly {
		return errReadOnly
	}
	defer s.busy()()
	names := make([]string, 0, len(flags.Flags))
	for _, f := range flags.Flags {
		names = append(names, string(f))
	}
	parse := sel.mbox.ParseFlags
	if flags.Op == imap.StoreFlagsDel {
		parse = sel.mbox.LookupFlags // removing an unknown keyword must not define it
	}
	bits, err := parse(names)
	if err != nil {
		return s.mailError("store", err)
	}
	// A new keyword must have a name, and the client must have it (FLAGS), before the changes are
	// reported.
	if err := s.syncFlagsNow(sel); err != nil {
		return err
	}
	uids, err := sel.targetUIDs(numSet)
	if err != nil || len(uids) == 0 {
		return err
	}
	op := map[imap.StoreFlagsOp]maildir.FlagOp{
		imap.StoreFlagsSet: maildir.FlagsSet, imap.StoreFlagsAdd: maildir.FlagsAdd, imap.StoreFlagsDel: maildir.FlagsRemove,
	}[flags.Op]
	training := s.prepareStoreTraining(sel, flags.Op, names, uids)
	var changed []maildir.Message
	var modified []uint32
	if options != nil && options.HasUnchangedSince {
		changed, modified, err = sel.mbox.SetFlagsUnchangedSince(uids, op, bits, options.UnchangedSince, sel.st)
	} else {
		changed, err = sel.mbox.SetFlags(uids, op, bits, sel.st)
	}
	if err != nil {
		return s.mailError("store", err)
	}
	training.queue(s, sel.mbox, changed)
	return s.storeAnswer(w, numSet, uids, changed, modified, flags.Silent, options)
}

func toUIDs(uids []uint32) []imap.UID {
	out := make([]imap.UID, len(uids))
	for i, u := range uids {
		out[i] = imap.UID(u)
	}
	return out
}

func uidSetOf(uids []uint32) imap.UIDSet {
	var s imap.UIDSet
	for _, u := range uids {
		s.AddNum(imap.UID(u))
	}
	return s
}

// targetUIDs lists the UIDs a command's set names.
func (sel *selection) targetUIDs(numSet imap.NumSet) ([]uint32, error) {
	var uids []uint32
	err := sel.each(numSet, 4096, func(batch []*message) error {
		for _, m := range batch {
			uids = append(uids, m.uid)
		}
		return nil
	})
	return uids, err
}

func (s *session) destination(name string) (*maildir.Mailbox, error) {
	m, err := s.mail.Mailbox(name)
	if errors.Is(err, maildir.ErrNoSuchMailbox) {
		return nil, errTryCreate
	}
	if err != nil {
		return nil, s.mailError("open", err)
	}
	return m, nil
}

// Copy copies messages (UIDPLUS COPYUID, RFC 4315); a missing destination gets TRYCREATE.
func (s *session) Copy(numSet imap.NumSet, dest string) (*imap.CopyData, error) {
	defer s.busy()()
	dst, err := s.destination(dest)
	if err != nil {
		return nil, err
	}
	uids, err := s.sel.targetUIDs(numSet)
	if err != nil || len(uids) == 0 {
		return nil, err
	}
	src, dstUIDs, err := s.sel.mbox.CopyTo(dst, uids, nil)
	if err != nil {
		return nil, s.mailError("copy", err)
	}
	if len(src) == 0 {
		return nil, nil
	}
	s.trainTransfer(s.sel.mbox, dst, dstUIDs)
	return &imap.CopyData{UIDValidity: dst.UIDValidity(), SourceUIDs: uidSetOf(src), DestUIDs: uidSetOf(dstUIDs)}, nil
}

// Move moves messages (RFC 6851): COPYUID first, then the expunges, which the tracker delivers in
// the poll after the command, with this session's sequence numbers.
func (s *session) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	if s.sel.readOnly {
		return errReadOnly
	}
	defer s.busy()()
	dst, err := s.destination(dest)
	if err != nil {
		return err
	}
	uids, err := s.sel.targetUIDs(numSet)
	if err != nil || len(uids) == 0 {
		return err
	}
	src, dstUIDs, err := s.sel.mbox.MoveTo(dst, uids, s.sel.st)
	if err != nil {
		return s.mailError("move", err)
	}
	if len(src) == 0 {
		return nil
	}
	s.trainTransfer(s.sel.mbox, dst, dstUIDs)
	return w.WriteCopyData(&imap.CopyData{UIDValidity: dst.UIDValidity(), SourceUIDs: uidSetOf(src), DestUIDs: uidSetOf(dstUIDs)})
}

// Append stores a message durably before the OK (APPENDUID, RFC 4315), with the client's date and
// flags; a missing mailbox gets TRYCREATE, a full quota OVERQUOTA.
func (s *session) Append(mailbox string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	defer s.busy()()
	dst, err := s.destination(mailbox)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(options.Flags))
	for _, f := range options.Flags {
		names = append(names, string(f))
	}
	bits, err := dst.ParseFlags(names)
	if err != nil {
		return nil, s.mailError("append", err)
	}
	src, err := appendSource(r, options)
	if err != nil {
		return nil, s.mailError("append", err)
	}
	uid, err := dst.Append(src, bits, options.Time, nil)
	if err != nil {
		return nil, s.mailError("append", err)
	}
	s.trainAppend(dst, uid, names)
	return &imap.AppendData{UID: imap.UID(uid), UIDValidity: dst.UIDValidity()}, nil
}

// numContext reads what resolving "*" and "$" needs: the client's highest sequence number and the
// last UID. msgs may be given when the caller already holds a view.
func (sel *selection) numContext(msgs []maildir.Message) *numContext {
	nc := &numContext{searchRes: sel.searchRes}
	fill := func(msgs []maildir.Message) {
		if len(msgs) > 0 {
			nc.maxUID = msgs[len(msgs)-1].UID
		}
		for i := len(msgs); i > 0; i-- {
			if seq := sel.st.EncodeSeqNum(uint32(i)); seq != 0 {
				nc.maxSeq = seq
				break
			}
		}
	}
	if msgs != nil {
		fill(msgs)
	} else {
		sel.mbox.View(fill)
	}
	return nc
}

// source gives the messages of this selection access to files and the cache.
func (sel *selection) source() *msgSource { return mailboxSource(sel.mbox, sel.entry.cache) }

// mailboxSource gives messages of mb access to its files and to cache (nil: none).
func mailboxSource(mb *maildir.Mailbox, cache *boxCache) *msgSource {
	return &msgSource{
		open: func(uid uint32) (msgFile, error) {
			f, err := mb.OpenMessage(uid)
			if err != nil {
				return nil, err
			}
			return storeFile{f}, nil
		},
		cache:    cache,
		validity: mb.UIDValidity(),
	}
}

// storeFile is a message file of the store; its size costs an fstat, asked for only when the size
// the store gives (from the file name) may not be the file's.
type storeFile struct{ *maildir.MessageFile }

func (f storeFile) Size() int64 {
	n, err := f.MessageFile.Size()
	if err != nil {
		return 0 // the reads fail the same way; the literal is padded and the failure logged
	}
	return n
}

// each calls fn with the messages that set names (nil: all), in ascending order and in batches of at
// most n, each with the client's sequence number. Messages the client has not been told about yet
// (no EXISTS) are left out. The mailbox lock is held only while a batch is gathered, never during fn.
func (sel *selection) each(set imap.NumSet, n int, fn func([]*message) error) error {
	var seqs imap.SeqSet
	var uids imap.UIDSet
	var nc *numContext
	src := sel.source()
	var start uint32 // resume after this UID
	sel.mbox.View(func(msgs []maildir.Message) {
		nc = sel.numContext(msgs)
		switch set := set.(type) {
		case nil:
		case imap.SeqSet:
			seqs = nc.staticSeqSet(set)
		case imap.UIDSet:
			uids = nc.staticUIDSet(set) // SEARCHRES ($) arrives as a UIDSet, for FETCH too
			if uids == nil {
				uids = imap.UIDSet{}
			}
		}
		if seqs != nil && len(seqs) == 0 {
			seqs = nil
			uids = imap.UIDSet{} // names nothing
		}
		// Skip ahead to the first candidate.
		first := 0
		switch {
		case len(uids) > 0:
			lo, _ := uidBounds(uids)
			first = sort.Search(len(msgs), func(i int) bool { return msgs[i].UID >= lo })
		case len(seqs) > 0:
			if i := sel.st.DecodeSeqNum(minSeq(seqs)); i > 0 {
				first = int(i) - 1
			}
		}
		if first > 0 && first <= len(msgs) {
			start = msgs[first-1].UID
		}
	})
	if uids != nil && len(uids) == 0 {
		return nil
	}
	var lastUID, lastSeq uint32
	if uids != nil {
		_, lastUID = uidBounds(uids)
	}
	if seqs != nil {
		lastSeq = maxSeq(seqs)
	}
	for {
		var batch []*message
		var store []message // the batch's messages, in one allocation
		done := true
		sel.mbox.View(func(msgs []maildir.Message) {
			i := sort.Search(len(msgs), func(i int) bool { return msgs[i].UID > start })
			for ; i < len(msgs); i++ {
				msg := &msgs[i]
				seq := sel.st.EncodeSeqNum(uint32(i) + 1)
				if seq == 0 {
					continue
				}
				if seqs != nil && !seqs.Contains(seq) || uids != nil && !uids.Contains(imap.UID(msg.UID)) {
					if uids != nil && msg.UID > lastUID || seqs != nil && seq > lastSeq {
						break
					}
					continue
				}
				if store == nil {
					store = make([]message, 0, min(n, len(msgs)-i))
					batch = make([]*message, 0, cap(store))
				}
				store = append(store, message{src: src, seq: seq, uid: msg.UID, size: msg.Size, date: msg.Date, flags: uint64(msg.Flags) | sel.recentBit(msg.UID), modseq: msg.ModSeq})
				batch = append(batch, &store[len(store)-1])
				if len(batch) == n {
					done = i+1 == len(msgs)
					break
				}
			}
		})
		if len(batch) > 0 {
			start = batch[len(batch)-1].uid
			if err := fn(batch); err != nil {
				return err
			}
		}
		if done || len(batch) < n {
			return nil
		}
	}
}

func minSeq(s imap.SeqSet) uint32 {
	m := s[0].Start
	for _, r := range s {
		m = min(m, r.Start)
	}
	return m
}

func maxSeq(s imap.SeqSet) uint32 {
	var m uint32
	for _, r := range s {
		m = max(m, r.Stop)
	}
	return m
}

func uidBounds(s imap.UIDSet) (lo, hi uint32) {
	lo = uint32(s[0].Start)
	for _, r := range s {
		lo, hi = min(lo, uint32(r.Start)), max(hi, uint32(r.Stop))
	}
	return lo, hi
}
