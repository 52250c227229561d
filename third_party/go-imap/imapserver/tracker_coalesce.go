package imapserver

import "github.com/emersion/go-imap/v2"

// coalesceUpdates reorders the updates one poll sends so that a client hears of new messages once,
// after the expunges: the EXISTS updates (the tracker queues one per new message) become a single
// EXISTS with the final count, sent at the end, or earlier where a FETCH names a message the client
// has not been told of yet. An expunge of a message the client was never told of is not sent. So a
// NOOP after three deliveries answers one EXISTS, and a MOVE into the selected mailbox answers
// EXPUNGE before EXISTS, as Dovecot does (imaptest checks both).
//
// known is the number of messages the client knows before these updates; the count after them is
// returned. Updates that do not add up (an expunge beyond the mailbox) are returned as they came.
func coalesceUpdates(updates []trackerUpdate, known uint32) ([]trackerUpdate, uint32) {
	out := make([]trackerUpdate, 0, len(updates))
	count, total := known, known // what the client knows; what the mailbox has
	flush := func() {
		if total > count {
			out = append(out, trackerUpdate{numMessages: total})
			count = total
		}
	}
	for _, u := range updates {
		switch {
		case u.numMessages != 0:
			if u.numMessages < total {
				return updates, recount(updates, known)
			}
			total = u.numMessages
		case u.expunge != 0:
			if u.expunge > total {
				return updates, recount(updates, known)
			}
			total--
			if u.expunge <= count {
				out = append(out, u)
				count--
			}
		case u.fetch != nil:
			if u.fetch.seqNum > count {
				flush()
			}
			out = append(out, u)
		default:
			out = append(out, u)
		}
	}
	flush()
	return out, count
}

// recount is the client's count after updates sent as they are.
func recount(updates []trackerUpdate, known uint32) uint32 {
	for _, u := range updates {
		switch {
		case u.numMessages != 0:
			known = u.numMessages
		case u.expunge != 0 && known > 0:
			known--
		}
	}
	return known
}

// sessionHooks let a session add what belongs to it rather than to the mailbox to its unsolicited
// updates (\Recent, RFC 3501 §2.3.2).
type sessionHooks struct {
	flagsOf   func(uid imap.UID, flags []imap.Flag) []imap.Flag
	afterPoll func(w *UpdateWriter) error
}

// SetFlagsHook makes the session's unsolicited FETCH FLAGS pass through fn, which returns the flags
// to send (a new slice when it changes them: the given one is shared with other sessions).
func (t *SessionTracker) SetFlagsHook(fn func(uid imap.UID, flags []imap.Flag) []imap.Flag) {
	t.mutex.Lock()
	t.hooks.flagsOf = fn
	t.mutex.Unlock()
}

// SetAfterPoll makes every Poll, IDLE's included, end with fn: a session sends its own updates
// there (RECENT after the EXISTS that brought the new messages).
func (t *SessionTracker) SetAfterPoll(fn func(w *UpdateWriter) error) {
	t.mutex.Lock()
	t.hooks.afterPoll = fn
	t.mutex.Unlock()
}

func (h sessionHooks) flags(updates []trackerUpdate) {
	if h.flagsOf == nil {
		return
	}
	for i := range updates {
		if f := updates[i].fetch; f != nil {
			c := *f // shared with the other sessions' queues
			c.flags = h.flagsOf(f.uid, f.flags)
			updates[i].fetch = &c
		}
	}
}

func (h sessionHooks) after(w *UpdateWriter) error {
	if h.afterPoll == nil {
		return nil
	}
	return h.afterPoll(w)
}
