package queue

import (
	"postie/deliverability"
	"postie/suppress"
)

// explainAttrs is the log attribute explaining a remote reply that a
// receiver documents as a deliverability refusal (package
// deliverability), or nothing.
func explainAttrs(reply string) []any {
	if e, ok := deliverability.Explain(reply); ok {
		return []any{"explanation", e.String()}
	}
	return nil
}

// explainLine is the explanation of a remote reply for people (the queue
// listing, the bounce to our sender), "" if none is known.
func explainLine(reply string) string {
	if e, ok := deliverability.Explain(reply); ok {
		return e.String()
	}
	return ""
}

// isHardBounce reports whether r just failed for good as an address that
// does not exist.
func isHardBounce(r *RcptState) bool {
	return (r.Status == StatusFailed || r.Status == StatusDropped) && suppress.IsHardBounce(r.DSNStatus, r.Reply)
}

// suppress tells the Suppressor about recipients that hard-bounced. It
// runs without Queue.mu: the list is written durably.
func (q *Queue) suppress(id string, dead []RcptState) {
	if q.opts.Suppressor == nil {
		return
	}
	for _, r := range dead {
		if err := q.opts.Suppressor.Add(r.Addr, r.Reply); err != nil {
			q.log.Error("queue: adding a hard-bounced recipient to the suppression list", "id", id, "rcpt", r.Addr, "err", err)
			continue
		}
		q.log.Info("queue: recipient suppressed after a hard bounce", "id", id, "rcpt", r.Addr, "status", r.DSNStatus)
	}
}
