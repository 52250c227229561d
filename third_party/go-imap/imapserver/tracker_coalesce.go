package imapserver

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
