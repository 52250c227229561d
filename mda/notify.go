package mda

import (
	"context"

	"postie/envelope"
)

// bounceLate tells the sender, through the queue, what SMTP's one reply to
// DATA (or the LDA's one exit code) cannot:
//
//   - recipients that failed while others got the message: a failure reply
//     would make the sender resend the copies already stored, so the
//     failures are recorded in the queue, which bounces them, and count as
//     handled; a recipient whose NOTIFY leaves out FAILURE (NEVER) is
//     handled without a bounce. All-or-nothing failures are left to the
//     caller's reply.
//   - recipients stored here whose NOTIFY asks for SUCCESS (RFC 3461): the
//     queue sends a "delivered" notice. (Forwarded copies carry their
//     NOTIFY on, for the queue and the next hop to answer.)
//
// Nothing is sent for the null sender.
func (m *Router) bounceLate(ctx context.Context, env *envelope.Envelope, dests []destination, errs []error, msg *spooled) {
	if env.From == "" || allFailed(errs) {
		return
	}
	var to []string
	var params []envelope.RcptParams
	var results []error
	anyFailed, handled := false, false
	for i, err := range errs {
		p := env.RcptParam(i)
		switch {
		case err != nil && !p.Notify.Failure():
			handled = true // no bounce wanted; see the loop below
		case err != nil:
			anyFailed = true
			to, params, results = append(to, env.To[i]), append(params, p), append(results, err)
		case p.Notify.Success() && len(dests[i].users) > 0 && len(dests[i].remote) == 0:
			to, params, results = append(to, env.To[i]), append(params, p), append(results, nil)
		}
	}
	clearFailures := func() {
		for i := range errs {
			errs[i] = nil
		}
	}
	if len(to) == 0 {
		if handled {
			m.log.Info("mda: late failures not bounced, as NOTIFY asked", "id", env.ID)
			clearFailures()
		}
		return
	}
	if m.opts.Forwarder == nil {
		m.log.Error("mda: no queue for late failures or success notices", "id", env.ID, "to", to)
		return
	}
	body, err := msg.reader()
	if err == nil {
		notice := *env
		notice.To, notice.RcptParams = to, params
		var id string
		if id, err = m.opts.Forwarder.EnqueueFailed(ctx, &notice, body, results); err == nil {
			m.log.Info("mda: late failures or success notices queued", "id", env.ID, "queue_id", id, "to", to)
			clearFailures()
			return
		}
	}
	if anyFailed {
		m.log.Error("mda: recording late failures for a bounce", "id", env.ID, "to", to, "err", err)
	} else {
		m.log.Error("mda: queuing success notices", "id", env.ID, "to", to, "err", err)
	}
}

// forwardParams are the DSN parameters of remote target r of env.To[i]:
// the recipient's own, and for an alias's target (another address) the
// alias as ORCPT when the sender gave none, so notices name the address
// the sender used (RFC 3461 §6.2.7.1).
func forwardParams(env *envelope.Envelope, i int, r string) envelope.RcptParams {
	p := env.RcptParam(i)
	if p.ORcpt == "" && p != (envelope.RcptParams{}) && envelope.Key(r) != envelope.Key(env.To[i]) {
		p.ORcptType, p.ORcpt = "rfc822", env.To[i]
	}
	return p
}
