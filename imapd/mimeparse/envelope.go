package mimeparse

import (
	"mime"
	"net/mail"
	"strings"

	"github.com/emersion/go-imap/v2"
)

// wordDecoder decodes RFC 2047 encoded words in any charset golang.org/x/text knows; an unknown one
// makes it fail, and callers then keep the raw text.
var wordDecoder = &mime.WordDecoder{CharsetReader: charsetReader}

// DecodeHeader returns v with encoded words decoded where the charset is known.
func DecodeHeader(v string) string {
	if !strings.Contains(v, "=?") {
		return v
	}
	d, err := wordDecoder.DecodeHeader(v)
	if err != nil {
		return v
	}
	return d
}

// Envelope makes the ENVELOPE of a message from its header (RFC 3501 §7.4.2). Values are passed
// unfolded but otherwise raw, as Dovecot does: encoded words reach the client, which decodes them with
// whatever charset they name. Display names are decoded when the charset is known.
func Envelope(h Header) *imap.Envelope {
	env := &imap.Envelope{
		Subject:   clean(h.Get("Subject")),
		From:      parseAddresses(h.Get("From")),
		Sender:    parseAddresses(h.Get("Sender")),
		ReplyTo:   parseAddresses(h.Get("Reply-To")),
		To:        parseAddresses(h.Get("To")),
		Cc:        parseAddresses(h.Get("Cc")),
		Bcc:       parseAddresses(h.Get("Bcc")),
		InReplyTo: msgIDs(h.Get("In-Reply-To")),
	}
	if ids := msgIDs(h.Get("Message-ID")); len(ids) > 0 {
		env.MessageID = ids[0]
	}
	if t, err := mail.ParseDate(h.Get("Date")); err == nil {
		env.Date = t
	}
	return env
}

// clean removes the bytes that can never appear in an IMAP string.
func clean(s string) string {
	if !strings.ContainsAny(s, "\x00\r\n") {
		return s
	}
	return strings.Map(func(r rune) rune {
		if r == 0 || r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, s)
}

// msgIDs extracts the <...> identifiers of a Message-ID, In-Reply-To or References value, without the
// angle brackets (the ENVELOPE writer adds them). A value with no brackets counts as one identifier.
func msgIDs(v string) []string {
	var ids []string
	rest := v
	for {
		i := strings.IndexByte(rest, '<')
		if i < 0 {
			break
		}
		j := strings.IndexByte(rest[i:], '>')
		if j < 0 {
			break
		}
		if id := clean(strings.TrimSpace(rest[i+1 : i+j])); id != "" && !strings.ContainsAny(id, "<>") {
			ids = append(ids, id)
		}
		rest = rest[i+j+1:]
	}
	if ids == nil {
		if v = clean(strings.TrimSpace(v)); v != "" && !strings.ContainsAny(v, "<> \t") {
			ids = []string{v}
		}
	}
	return ids
}

func stripComments(s string) string {
	var b strings.Builder
	depth := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case depth == 0:
			b.WriteByte(c)
		}
	}
	return b.String()
}
