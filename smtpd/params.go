package smtpd

import (
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-smtp"

	"postie/envelope"
)

// Bounds of the DSN parameters (RFC 3461 §4.2 and §4.4): their values end
// up in DSN header fields, so they are kept short and free of controls.
const (
	maxEnvIDLen = 100
	maxORcptLen = 500
)

var (
	errRequireTLSPlain = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 10},
		Message: "REQUIRETLS needs a TLS session (RFC 8689)"}
	errBadEnvID  = &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 4}, Message: "Malformed ENVID parameter value"}
	errBadORcpt  = &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 4}, Message: "Malformed ORCPT parameter value"}
	errBadNotify = &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 4}, Message: "Malformed NOTIFY parameter value"}
)

// mailParams takes MAIL's parameters that travel with the message:
// REQUIRETLS, only on a TLS session (go-smtp advertises it only there but
// would take it anywhere; RFC 8689 §4.1), and the DSN extension's RET and
// ENVID, which go-smtp has already parsed and xtext-decoded.
func (s *session) mailParams(opts *smtp.MailOptions) (envelope.Params, *smtp.SMTPError) {
	var p envelope.Params
	if opts == nil {
		return p, nil
	}
	if opts.RequireTLS {
		if s.tlsDesc == "" {
			return p, errRequireTLSPlain
		}
		p.RequireTLS = true
	}
	p.Ret = string(opts.Return)
	if opts.EnvelopeID != "" {
		if len(opts.EnvelopeID) > maxEnvIDLen || hasControl(opts.EnvelopeID) {
			return p, errBadEnvID
		}
		p.EnvID = opts.EnvelopeID
	}
	return p, nil
}

// rcptParams takes RCPT's NOTIFY and ORCPT, as go-smtp parsed them.
func rcptParams(opts *smtp.RcptOptions) (envelope.RcptParams, *smtp.SMTPError) {
	var p envelope.RcptParams
	if opts == nil {
		return p, nil
	}
	if len(opts.Notify) > 0 {
		vals := make([]string, len(opts.Notify))
		for i, v := range opts.Notify {
			vals[i] = string(v)
		}
		n, err := envelope.ParseNotify(strings.Join(vals, ","))
		if err != nil {
			return p, errBadNotify
		}
		p.Notify = n
	}
	if a := opts.OriginalRecipient; a != "" {
		if len(a) > maxORcptLen || hasControl(a) || strings.Contains(a, " ") || !utf8.ValidString(a) {
			return p, errBadORcpt
		}
		p.ORcptType, p.ORcpt = "rfc822", a
		if opts.OriginalRecipientType == smtp.DSNAddressTypeUTF8 {
			p.ORcptType = "utf-8"
		}
	}
	return p, nil
}
