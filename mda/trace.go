package mda

import (
	"strings"
	"time"

	"postie/envelope"
	"postie/internal/textsafe"
)

// traceHeaders builds the fields the router prepends to each copy: Return-Path
// and Delivered-To (RFC 9228) for a local mailbox (deliveredTo != ""), and
// always a Received: field (RFC 5321 §4.4). For mail from outside the
// Received: field names the client's verified reverse DNS name, or says
// "unknown" (RFC 5321 §4.4 TCP-info: the name, then the address literal).
func traceHeaders(env *envelope.Envelope, hostname, deliveredTo, forRcpt string) string {
	var b strings.Builder
	if deliveredTo != "" {
		b.WriteString("Return-Path: <" + clean(env.From) + ">\r\n")
		b.WriteString("Delivered-To: " + clean(deliveredTo) + "\r\n")
	}
	b.WriteString("Received: ")
	if env.Helo != "" || env.RemoteAddr != "" {
		b.WriteString("from " + clean(orDefault(env.Helo, "unknown")))
		switch {
		case env.RemoteAddr != "" && env.Inbound:
			// From outside, the client's forward-confirmed name, or
			// "unknown" (Postfix's word) when it has none.
			b.WriteString(" (" + clean(orDefault(env.ClientName, "unknown")) + " [" + clean(env.RemoteAddr) + "])")
		case env.RemoteAddr != "":
			b.WriteString(" ([" + clean(env.RemoteAddr) + "])")
		}
		b.WriteString("\r\n\t")
	}
	proto := orDefault(env.Protocol, "LOCAL")
	b.WriteString("by " + clean(hostname) + " (Postie) with " + clean(proto))
	if env.ID != "" {
		b.WriteString(" id " + clean(env.ID))
	}
	if env.TLS != "" {
		b.WriteString("\r\n\t(" + clean(env.TLS) + ")")
	}
	if env.AuthUser != "" {
		b.WriteString("\r\n\t(authenticated as " + clean(env.AuthUser) + ")")
	}
	if forRcpt != "" {
		b.WriteString("\r\n\tfor <" + clean(forRcpt) + ">")
	}
	when := env.Received
	if when.IsZero() {
		when = time.Now()
	}
	b.WriteString("; " + when.Format(time.RFC1123Z) + "\r\n")
	return b.String()
}

// clean keeps client-supplied text from breaking the header: no control
// characters (CR and LF above all), no parentheses or angle brackets that
// would confuse the comment and path syntax, and a sane length.
func clean(s string) string { return textsafe.Clean(s, 200, "()<>") }

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
