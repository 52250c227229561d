package smtpd

import (
	"errors"

	"github.com/emersion/go-smtp"
)

// Metrics counts what a Server accepts and refuses (package metrics
// implements it; Options.Metrics nil counts nothing). Its methods are
// called from many sessions at once and must not block.
type Metrics interface {
	// MessageAccepted is called once per message answered 250 at the end
	// of DATA (some recipients may have failed there; see verdict).
	MessageAccepted(role string)
	// Refused is called once per refused MAIL, RCPT or message: stage is
	// "mail", "rcpt" or "data", reason one of the short names of
	// refusalReason.
	Refused(role, stage, reason string)
}

// count tells Options.Metrics the outcome of a MAIL, RCPT or DATA: reply
// is what the client was sent (any 2xx at "data" is a message accepted).
func (s *session) count(stage string, reply error) {
	m := s.srv.opts.Metrics
	if m == nil || reply == nil {
		return
	}
	r := replyFor(reply)
	role := s.srv.opts.Role.String()
	if r.Code >= 200 && r.Code < 300 {
		if stage == "data" {
			m.MessageAccepted(role)
		}
		return
	}
	m.Refused(role, stage, refusalReason(stage, r))
}

// reasons names this package's own replies for the metrics.
var reasons = map[*smtp.SMTPError]string{
	errAuthRequired: "auth_required", errTLSRequired: "tls_required",
	errRelayDenied: "relay_denied", errNullSender: "null_sender", errNotYourSender: "sender_not_owned",
	errBadSender: "syntax", errBadRcpt: "syntax",
	errRateIP: "rate_limit", errRateUser: "rate_limit",
	errNoRecipients: "no_recipients", errHeaderBad: "bad_header", errHeaderTooLarge: "too_large",
	errFromCount: "from_not_owned", errFromNotYours: "from_not_owned",
	errReadTimeout: "timeout", errReadBroken: "incomplete", errTempLocal: "local_error",
	errLineTooLong: "line_too_long",
	errBadEnvID:    "syntax", errBadORcpt: "syntax", errBadNotify: "syntax", errRequireTLSPlain: "tls_required",
}

// refusalReason is a short, bounded name for why reply refused something:
// ours by name, the callees' (the router, the checks) by status code.
func refusalReason(stage string, reply *smtp.SMTPError) string {
	if n, ok := reasons[reply]; ok {
		return n
	}
	if errors.Is(reply, smtp.ErrDataTooLarge) || reply.EnhancedCode == (smtp.EnhancedCode{5, 3, 4}) {
		return "too_large"
	}
	switch e := reply.EnhancedCode; {
	case e[1] == 1 && e[2] == 1:
		return "unknown_recipient" // X.1.1
	case e[1] == 2 && e[2] == 2:
		return "over_quota" // X.2.2
	case e == smtp.EnhancedCode{5, 7, 1} && stage == "rcpt":
		return "blocked" // a DNS block list
	case e[0] == 5 && e[1] == 7:
		return "policy" // DMARC, our own domain forged, rspamd
	case reply.Code >= 400 && reply.Code < 500:
		return "temporary"
	}
	return "other"
}

// Connections reports how many connections the server holds now, across
// its listeners (for the metrics).
func (s *Server) Connections() int { return s.tracker.Len() }
