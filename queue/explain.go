package queue

import (
	"strings"

	"postie/deliverability"
	"postie/suppress"
)

// explainAttrs is the log attribute explaining a remote reply that a
// receiver documents as a deliverability refusal (package
// deliverability), or nothing.
func explainAttrs(reply string) []any {
	if e := explainLine(reply); e != "" {
		return []any{"explanation", e}
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

// explainBlock is the explanation of a remote reply for the human part of
// a DSN: indented lines of at most about 76 characters, "" if none.
func explainBlock(reply string) string {
	e, ok := deliverability.Explain(reply)
	if !ok {
		return ""
	}
	var b strings.Builder
	b.WriteString(wrap("  What this means: "+e.Cause, "    "))
	fix := "  What to do: the mail administrator should " + e.Fix
	if e.URL != "" {
		fix += " See " + e.URL
	}
	b.WriteString(wrap(fix, "    "))
	return b.String()
}

// wrap breaks text at spaces into CRLF-ended lines of about 76
// characters, the lines after the first starting with indent.
func wrap(text, indent string) string {
	var b strings.Builder
	line := ""
	for _, w := range strings.Fields(text) {
		switch {
		case line == "":
			line = w
			if b.Len() == 0 && strings.HasPrefix(text, " ") {
				line = text[:len(text)-len(strings.TrimLeft(text, " "))] + w
			}
		case len(line)+1+len(w) > 76:
			b.WriteString(line + "\r\n")
			line = indent + w
		default:
			line += " " + w
		}
	}
	if line != "" {
		b.WriteString(line + "\r\n")
	}
	return b.String()
}
