package imapserver

import (
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/internal/imapwire"
)

// CONDSTORE and QRESYNC (RFC 7162), a Postie addition to the fork. The
// commands' parsers (select.go, fetch.go, store.go, search.go, status.go,
// enable.go) call the helpers here; a Session that implements
// SessionCondStore supplies modseqs and the QRESYNC resynchronisation.
//
// CONDSTORE is enabled for a connection by ENABLE CONDSTORE or QRESYNC, or by
// the first CONDSTORE-enabling command (SELECT/EXAMINE (CONDSTORE), FETCH
// MODSEQ or CHANGEDSINCE, STORE UNCHANGEDSINCE, SEARCH MODSEQ, STATUS
// HIGHESTMODSEQ); when that happens with a mailbox selected, the server
// sends OK [HIGHESTMODSEQ n] first (RFC 7162 §3.1). Once enabled, FETCH
// responses that carry FLAGS carry MODSEQ too, unsolicited ones included.
// Once QRESYNC is enabled, expunges are announced as VANISHED, never EXPUNGE.

// condStoreCaps are advertised when the server's Options.Caps have them.
var condStoreCaps = []imap.Cap{imap.CapCondStore, imap.CapQResync}

// SessionCondStore is a Session with CONDSTORE and QRESYNC.
type SessionCondStore interface {
	Session

	// HighestModSeq is the selected mailbox's HIGHESTMODSEQ.
	HighestModSeq() (uint64, error)

	// QResync answers SELECT/EXAMINE's QRESYNC parameter, after the
	// mailbox's data and before the tagged OK: VANISHED (EARLIER) for the
	// UIDs expunged since (w.WriteVanished), then a FETCH (UID, FLAGS,
	// MODSEQ) per message changed since. It is called only when the
	// UIDVALIDITY the client gave is the mailbox's.
	QResync(w *FetchWriter, params *imap.SelectQResync) error
}

// condStore reports whether CONDSTORE is enabled on the connection.
func (c *Conn) condStore() bool {
	c.mutex.Lock()
	defer c.mutex.Unlock()
	return c.enabled.Has(imap.CapCondStore)
}

// qresync reports whether QRESYNC is enabled on the connection.
func (c *Conn) qresync() bool {
	c.mutex.Lock()
	defer c.mutex.Unlock()
	return c.enabled.Has(imap.CapQResync)
}

// advertised reports whether the server offers cap.
func (c *Conn) advertised(cap imap.Cap) bool {
	return c.server.options.caps().Has(cap)
}

// errNoCondStore refuses CONDSTORE syntax where the server does not offer it.
var errNoCondStore = newClientBugError("CONDSTORE is not supported")

// enableCondStore runs a CONDSTORE-enabling command's enabling: the first
// time, in the selected state, it sends OK [HIGHESTMODSEQ n].
func (c *Conn) enableCondStore() error {
	if !c.advertised(imap.CapCondStore) {
		return errNoCondStore
	}
	c.mutex.Lock()
	first := !c.enabled.Has(imap.CapCondStore)
	c.enabled[imap.CapCondStore] = struct{}{}
	c.mutex.Unlock()
	if !first || c.state != imap.ConnStateSelected {
		return nil
	}
	sess, ok := c.session.(SessionCondStore)
	if !ok {
		return nil
	}
	ms, err := sess.HighestModSeq()
	if err != nil {
		return err
	}
	return c.writeHighestModSeq(ms)
}

func (c *Conn) writeHighestModSeq(ms uint64) error {
	enc := newResponseEncoder(c)
	defer enc.end()
	enc.Atom("*").SP().Atom("OK").SP()
	enc.Special('[').Atom("HIGHESTMODSEQ").SP().ModSeq(ms).Special(']')
	enc.SP().Text("Highest")
	return enc.CRLF()
}

// readSelectParams reads SELECT/EXAMINE's parameter list (after its SP):
// CONDSTORE and QRESYNC (RFC 7162 §3.1.2, §3.2.5).
func readSelectParams(dec *imapwire.Decoder, options *imap.SelectOptions) error {
	return dec.ExpectList(func() error {
		var name string
		if !dec.ExpectAtom(&name) {
			return dec.Err()
		}
		switch strings.ToUpper(name) {
		case "CONDSTORE":
			options.CondStore = true
		case "QRESYNC":
			if options.QResync != nil {
				return newClientBugError("QRESYNC given twice")
			}
			q := &imap.SelectQResync{}
			if !dec.ExpectSP() {
				return dec.Err()
			}
			if err := readQResyncParam(dec, q); err != nil {
				return err
			}
			options.QResync = q
		default:
			return newClientBugError("Unknown SELECT parameter")
		}
		return nil
	})
}

// readQResyncParam reads "(" uidvalidity SP mod-sequence-value [SP
// known-uids] [SP seq-match-data] ")".
func readQResyncParam(dec *imapwire.Decoder, q *imap.SelectQResync) error {
	if !dec.ExpectSpecial('(') || !dec.ExpectNumber(&q.UIDValidity) || !dec.ExpectSP() || !dec.ExpectModSeq(&q.ModSeq) {
		return dec.Err()
	}
	if q.UIDValidity == 0 || q.ModSeq == 0 {
		return newClientBugError("QRESYNC needs a non-zero UIDVALIDITY and mod-sequence")
	}
	if dec.Special(')') {
		return nil
	}
	if !dec.ExpectSP() {
		return dec.Err()
	}
	if !dec.Special('(') {
		var known imap.UIDSet
		if !dec.ExpectUIDSet(&known) {
			return dec.Err()
		}
		if imap.IsSearchRes(known) {
			return newClientBugError("$ is not a known-uids set")
		}
		q.KnownUIDs = known
		if dec.Special(')') {
			return nil
		}
		if !dec.ExpectSP() || !dec.ExpectSpecial('(') {
			return dec.Err()
		}
	}
	var seqs imap.NumSet
	var uids imap.UIDSet
	if !dec.ExpectNumSet(imapwire.NumKindSeq, &seqs) || !dec.ExpectSP() || !dec.ExpectUIDSet(&uids) || !dec.ExpectSpecial(')') {
		return dec.Err()
	}
	s, ok := seqs.(imap.SeqSet)
	if !ok || imap.IsSearchRes(uids) {
		return newClientBugError("Invalid seq-match-data")
	}
	q.SeqMatchSeqs, q.SeqMatchUIDs = s, uids
	if !dec.ExpectSpecial(')') {
		return dec.Err()
	}
	return nil
}

// readFetchModifiers reads FETCH's modifier list (after its SP):
// CHANGEDSINCE and VANISHED (RFC 7162 §3.1.4, §3.2.6).
func readFetchModifiers(dec *imapwire.Decoder, options *imap.FetchOptions) (changedSince bool, err error) {
	err = dec.ExpectList(func() error {
		var name string
		if !dec.ExpectAtom(&name) {
			return dec.Err()
		}
		switch strings.ToUpper(name) {
		case "CHANGEDSINCE":
			if !dec.ExpectSP() || !dec.ExpectModSeq(&options.ChangedSince) {
				return dec.Err()
			}
			changedSince = true
		case "VANISHED":
			options.Vanished = true
		default:
			return newClientBugError("Unknown FETCH modifier")
		}
		return nil
	})
	return changedSince, err
}

// checkFetchModifiers enables CONDSTORE for FETCH MODSEQ/CHANGEDSINCE and
// checks VANISHED's conditions (UID FETCH, CHANGEDSINCE, QRESYNC enabled).
func (c *Conn) checkFetchModifiers(numKind NumKind, options *imap.FetchOptions, changedSince bool) error {
	if options.Vanished && (numKind != NumKindUID || !changedSince || !c.qresync()) {
		return newClientBugError("VANISHED needs UID FETCH, CHANGEDSINCE and ENABLE QRESYNC")
	}
	if changedSince {
		options.ModSeq = true // RFC 7162 §3.1.4.1
	}
	if options.ModSeq {
		if err := c.enableCondStore(); err != nil {
			return err
		}
	}
	if options.Flags && c.condStore() {
		options.ModSeq = true
	}
	if c.qresync() {
		options.UID = true // RFC 7162 §3.2.4: every FETCH response carries the UID
	}
	return nil
}

// readStoreModifiers reads STORE's optional modifier list (UNCHANGEDSINCE),
// which comes before the item, and the SP after it.
func readStoreModifiers(dec *imapwire.Decoder, options *imap.StoreOptions) error {
	isList, err := dec.List(func() error {
		var name string
		if !dec.ExpectAtom(&name) {
			return dec.Err()
		}
		if !strings.EqualFold(name, "UNCHANGEDSINCE") {
			return newClientBugError("Unknown STORE modifier")
		}
		if !dec.ExpectSP() || !dec.ExpectModSeq(&options.UnchangedSince) {
			return dec.Err()
		}
		options.HasUnchangedSince = true
		return nil
	})
	if err != nil {
		return err
	}
	if isList && !dec.ExpectSP() {
		return dec.Err()
	}
	return nil
}

// readSearchModSeq reads the MODSEQ search key's arguments (RFC 7162
// §3.1.5): [entry-name SP entry-type-req SP] mod-sequence-valzer.
func readSearchModSeq(dec *imapwire.Decoder, criteria *imap.SearchCriteria) error {
	if !dec.ExpectSP() {
		return dec.Err()
	}
	var ms imap.SearchCriteriaModSeq
	var entry string
	if dec.Quoted(&entry) {
		var typ string
		if !dec.ExpectSP() || !dec.ExpectAtom(&typ) || !dec.ExpectSP() {
			return dec.Err()
		}
		switch t := imap.SearchCriteriaMetadataType(strings.ToLower(typ)); t {
		case imap.SearchCriteriaMetadataAll, imap.SearchCriteriaMetadataPrivate, imap.SearchCriteriaMetadataShared:
			ms.MetadataName, ms.MetadataType = entry, t
		default:
			return newClientBugError("Invalid MODSEQ entry type")
		}
	}
	if !dec.ExpectModSeq(&ms.ModSeq) {
		return dec.Err()
	}
	if criteria.ModSeq != nil && criteria.ModSeq.ModSeq > ms.ModSeq {
		ms.ModSeq = criteria.ModSeq.ModSeq // both must hold
	}
	criteria.ModSeq = &ms
	return nil
}

// searchHasModSeq reports whether a MODSEQ key occurs in criteria.
func searchHasModSeq(criteria *imap.SearchCriteria) bool {
	if criteria.ModSeq != nil {
		return true
	}
	for i := range criteria.Not {
		if searchHasModSeq(&criteria.Not[i]) {
			return true
		}
	}
	for i := range criteria.Or {
		if searchHasModSeq(&criteria.Or[i][0]) || searchHasModSeq(&criteria.Or[i][1]) {
			return true
		}
	}
	return false
}

// WriteModSeq writes the message's MODSEQ.
func (w *FetchResponseWriter) WriteModSeq(ms uint64) {
	w.writeItemSep()
	w.enc.Atom("MODSEQ").SP().Special('(').ModSeq(ms).Special(')')
}

// WriteVanished writes VANISHED (with EARLIER: for a QRESYNC SELECT or UID
// FETCH ... VANISHED) for uids; nothing when uids is empty.
func (w *FetchWriter) WriteVanished(uids imap.UIDSet, earlier bool) error {
	if len(uids) == 0 {
		return nil
	}
	return w.conn.writeVanished(uids, earlier)
}

func (c *Conn) writeVanished(uids imap.UIDSet, earlier bool) error {
	enc := newResponseEncoder(c)
	defer enc.end()
	enc.Atom("*").SP().Atom("VANISHED")
	if earlier {
		enc.SP().Atom("(EARLIER)")
	}
	enc.SP().NumSet(uids)
	return enc.CRLF()
}

// WriteExpunges announces expunged messages: VANISHED with their UIDs once
// QRESYNC is enabled, else EXPUNGE with their sequence numbers (in order).
func (w *UpdateWriter) WriteExpunges(seqNums []uint32, uids []imap.UID) error {
	if !w.allowExpunge {
		return w.WriteExpunge(0) // the refusal
	}
	if w.conn.qresync() && len(uids) == len(seqNums) {
		var set imap.UIDSet
		for _, uid := range uids {
			set.AddNum(uid)
		}
		return w.conn.writeVanished(set, false)
	}
	for _, seq := range seqNums {
		if err := w.conn.writeExpunge(seq); err != nil {
			return err
		}
	}
	return nil
}

// SetModSeqLookup gives the session tracker the current modseq of a message
// by UID (ok false: no longer there). A queued flag update older than the
// message's current state is then left out: the client has had, or will
// have, the newer state (a FETCH answer of its own, or a later update), and
// seeing the older one after it would take its flags back and its MODSEQ
// down. So is one of a message expunged since: its expunge follows.
func (t *SessionTracker) SetModSeqLookup(fn func(uid imap.UID) (modSeq uint64, ok bool)) {
	t.mutex.Lock()
	t.modSeq = fn
	t.mutex.Unlock()
}

// staleFetch reports whether a queued flag update is older than its
// message's current state, by the session's SetModSeqLookup fn (read once
// per Poll, under the tracker's mutex).
func staleFetch(fn func(uid imap.UID) (uint64, bool), f *trackerUpdateFetch) bool {
	if fn == nil || f.modSeq == 0 || f.uid == 0 {
		return false
	}
	cur, ok := fn(f.uid)
	return !ok || cur > f.modSeq // gone: its expunge follows
}

// WriteMessageFlagsModSeq writes a FETCH response with FLAGS, and MODSEQ when
// CONDSTORE is enabled.
func (w *UpdateWriter) WriteMessageFlagsModSeq(seqNum uint32, uid imap.UID, flags []imap.Flag, ms uint64) error {
	respWriter := (&FetchWriter{conn: w.conn}).CreateMessage(seqNum)
	if uid != 0 {
		respWriter.WriteUID(uid)
	}
	respWriter.WriteFlags(flags)
	if ms != 0 && w.conn.condStore() {
		respWriter.WriteModSeq(ms)
	}
	return respWriter.Close()
}
