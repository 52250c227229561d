package imapd

import (
	"log/slog"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"postie/maildir"
)

// \Recent (RFC 3501 §2.3.2), owed to IMAP4rev1 clients: a message is recent in exactly one session,
// the first to select its folder read-write after it arrived (or, if the folder is selected then,
// the first to notice it). maildir keeps the claim, shared by every process (Mailbox.ClaimRecent);
// a session keeps the UIDs it claimed. EXAMINE and STATUS count the unclaimed messages without
// claiming them. A session that enabled IMAP4rev2 claims as well but shows no \Recent (RFC 9051
// dropped it).
//
// In a session, a recent message carries flagRecent among its flags (selection.each), so that
// FETCH FLAGS, SEARCH RECENT, NEW and OLD need nothing else.

// flagRecent is \Recent's bit in a message's flags during a command; maildir stores no such bit.
const flagRecent uint64 = 1 << 63

// recentState is what a selection knows of \Recent.
type recentState struct {
	uids imap.UIDSet // recent in this session
	lo   uint32      // the lowest of them (0: none), for counting from the end
	next uint32      // UIDs below this have been decided
	show bool        // the session reports \Recent (not IMAP4rev2)
}

// selectRecent decides \Recent for a selection just made and returns how many of its messages are
// recent.
func (s *session) selectRecent(sel *selection) uint32 {
	sel.recent.show = !s.conn.EnabledCaps().Has(imap.CapIMAP4rev2)
	sel.recent.next = 1
	s.decideRecent(sel)
	if sel.recent.show {
		// Every poll, IDLE's too, ends with the RECENT of new mail claimed here, and other sessions'
		// flag changes reach this one with \Recent where it applies.
		sel.st.SetAfterPoll(func(w *imapserver.UpdateWriter) error { return s.pollRecent(sel, w) })
		sel.st.SetFlagsHook(func(uid imap.UID, flags []imap.Flag) []imap.Flag {
			return withRecent(flags, sel.recentBit(uint32(uid)))
		})
	} else {
		sel.st.SetAfterPoll(func(*imapserver.UpdateWriter) error { s.decideRecent(sel); return nil }) // claim, show none
	}
	return sel.recentCount()
}

// pollRecent decides \Recent for the messages that arrived since the last poll and, when some are
// recent here, sends the new RECENT count (after the tracker's EXISTS). It ends every poll of the
// selection's tracker (SetAfterPoll).
func (s *session) pollRecent(sel *selection, w *imapserver.UpdateWriter) error {
	if !s.decideRecent(sel) || !sel.recent.show {
		return nil
	}
	return w.WriteNumRecent(sel.recentCount())
}

// decideRecent claims (or, read-only, looks at) the folder's messages up to its UIDNEXT and reports
// whether any became recent in this session.
func (s *session) decideRecent(sel *selection) bool {
	r := &sel.recent
	upTo := sel.mbox.UIDNext()
	if r.next == 0 || upTo <= r.next { // (0: Select did not start it)
		return false
	}
	var from uint32
	var err error
	if sel.readOnly {
		from, err = sel.mbox.RecentFrom()
	} else {
		from, err = sel.mbox.ClaimRecent(upTo)
	}
	lo := max(from, r.next)
	r.next = upTo
	if err != nil {
		s.logf(slog.LevelWarn, "imap: recent", "mailbox", sel.entry.name, "err", err)
		return false
	}
	if lo >= upTo || !r.show {
		return false
	}
	r.uids.AddRange(imap.UID(lo), imap.UID(upTo-1))
	if r.lo == 0 {
		r.lo = lo
	}
	return true
}

// recentBit is flagRecent for a recent message of the selection, else 0.
func (sel *selection) recentBit(uid uint32) uint64 {
	if sel.recent.lo == 0 || uid < sel.recent.lo || !sel.recent.uids.Contains(imap.UID(uid)) {
		return 0
	}
	return flagRecent
}

// recentCount counts the selection's recent messages still in the folder.
func (sel *selection) recentCount() uint32 {
	if sel.recent.lo == 0 {
		return 0
	}
	var n uint32
	sel.mbox.View(func(msgs []maildir.Message) {
		for i := len(msgs) - 1; i >= 0 && msgs[i].UID >= sel.recent.lo; i-- {
			if sel.recentBit(msgs[i].UID) != 0 {
				n++
			}
		}
	})
	return n
}

// recentUnclaimed counts m's messages no session has claimed, for STATUS RECENT.
func recentUnclaimed(m *maildir.Mailbox) (uint32, error) {
	from, err := m.RecentFrom()
	if err != nil {
		return 0, err
	}
	var n uint32
	m.View(func(msgs []maildir.Message) {
		for i := len(msgs) - 1; i >= 0 && msgs[i].UID >= from; i-- {
			n++
		}
	})
	return n, nil
}

// withRecent is flags with \Recent added when bits has flagRecent.
func withRecent(flags []imap.Flag, bits uint64) []imap.Flag {
	if bits&flagRecent == 0 {
		return flags
	}
	return append(append(make([]imap.Flag, 0, len(flags)+1), flags...), `\Recent`)
}
