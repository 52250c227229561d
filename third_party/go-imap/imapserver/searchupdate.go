package imapserver

import (
	"errors"
	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/internal/imapwire"
)

// CONTEXT=SEARCH (RFC 5267 §4): SEARCH RETURN (UPDATE ...) keeps a search live; the session then
// reports changes to its result as ESEARCH ADDTO and REMOVEFROM updates, until CANCELUPDATE or
// until the mailbox is closed.

// SessionSearchUpdate is a session that supports SEARCH RETURN (UPDATE) and CANCELUPDATE.
type SessionSearchUpdate interface {
	Session

	// SearchUpdate starts keeping the search of command tag live; result is what Search returned
	// for it (its All).
	SearchUpdate(tag string, kind NumKind, criteria *imap.SearchCriteria, result imap.NumSet) error
	// CancelUpdate ends the live searches of the given command tags.
	CancelUpdate(tags []string) error
}

// SessionSortUpdate is a session that supports SORT RETURN (UPDATE) (CONTEXT=SORT, RFC 5267 §4):
// its updates give each ADDTO the position in the sorted result at which its messages, contiguous
// there and in sort order, are inserted, after the updates written before it have been applied.
type SessionSortUpdate interface {
	SessionSearchUpdate

	// SortUpdate starts keeping the sort of command tag live; result is what Sort returned for it.
	SortUpdate(tag string, kind NumKind, keys []imap.SortCriterion, criteria *imap.SearchCriteria, result []uint32) error
}

// WriteSearchUpdate writes "* ESEARCH (TAG tag) [UID] ADDTO|REMOVEFROM (position nums)": nums were
// added to (or removed from) the result of the live search tag, position is where in the result
// the first of them is (1-based).
func (w *UpdateWriter) WriteSearchUpdate(tag string, kind NumKind, add bool, position uint32, nums []uint32) error {
	if len(nums) == 0 {
		return nil
	}
	enc := newResponseEncoder(w.conn)
	defer enc.end()
	enc.Atom("*").SP().Atom("ESEARCH").SP().Special('(').Atom("TAG").SP().String(tag).Special(')')
	if kind == NumKindUID {
		enc.SP().Atom("UID")
	}
	name := "REMOVEFROM"
	if add {
		name = "ADDTO"
	}
	enc.SP().Atom(name).SP().Special('(').Number(position).SP().Atom(orderedNumList(nums)).Special(')')
	return enc.CRLF()
}

// PendingExpunges returns the expunges this session has not been told about yet, in the order
// they will be reported: each message's sequence number as its EXPUNGE response will give it, and
// its UID (0 where the tracker was not told).
func (t *SessionTracker) PendingExpunges() (seqNums []uint32, uids []imap.UID) {
	t.mutex.Lock()
	defer t.mutex.Unlock()
	for _, u := range t.queue {
		if u.expunge != 0 {
			seqNums = append(seqNums, u.expunge)
			uids = append(uids, u.expungeUID)
		}
	}
	return seqNums, uids
}

func (c *Conn) handleCancelUpdate(dec *imapwire.Decoder) error {
	var tags []string
	if !dec.ExpectSP() {
		return dec.Err()
	}
	for {
		var tag string
		if !dec.ExpectString(&tag) {
			return dec.Err()
		}
		tags = append(tags, tag)
		if !dec.SPBefore('"') { // tags are quoted; a space before CRLF is allowed
			break
		}
	}
	if !dec.ExpectCRLF() {
		return dec.Err()
	}
	if err := c.checkState(imap.ConnStateSelected); err != nil {
		return err
	}
	session, ok := c.session.(SessionSearchUpdate)
	if !ok {
		return newClientBugError("CANCELUPDATE is not supported")
	}
	return session.CancelUpdate(tags)
}

// ErrNoUpdate is what SearchUpdate or SortUpdate return when the session
// will not keep one more search live (it has too many): the result is sent
// as usual, then "* NO [NOUPDATE "tag"]" (RFC 5267 section 4.2), and the
// command completes OK.
var ErrNoUpdate = errors.New("imapserver: too many live searches")

// liveOrNot runs register when update is asked for, and tells ErrNoUpdate
// (noUpdate) from a real failure (err).
func liveOrNot(update bool, register func() error) (noUpdate bool, err error) {
	if !update {
		return false, nil
	}
	if err := register(); errors.Is(err, ErrNoUpdate) {
		return true, nil
	} else if err != nil {
		return false, err
	}
	return false, nil
}

// writeNoUpdate says that the search of tag is not kept live.
func (c *Conn) writeNoUpdate(tag string) error {
	enc := newResponseEncoder(c)
	defer enc.end()
	enc.Atom("*").SP().Atom("NO").SP().Special('[').Atom("NOUPDATE").SP().Quoted(tag).Special(']').SP().Text("Too many live searches")
	return enc.CRLF()
}
