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

// parseAddresses parses an address list leniently: it never fails, keeps groups in the IMAP form
// ((NIL NIL "name" NIL) ... (NIL NIL NIL NIL)), and gives an address without a domain the host
// MISSING_DOMAIN, as a NIL host would mean a group.
func parseAddresses(v string) []imap.Address {
	var out []imap.Address
	inGroup := false
	for _, item := range splitAddressList(v) {
		item = strings.TrimSpace(item)
		if name, rest, ok := groupStart(item); ok {
			if inGroup {
				out = append(out, imap.Address{})
			}
			out = append(out, imap.Address{Mailbox: clean(name)})
			inGroup = true
			item = strings.TrimSpace(rest)
		}
		end := false
		if strings.HasSuffix(item, ";") && inGroup {
			item, end = strings.TrimSpace(strings.TrimSuffix(item, ";")), true
		}
		if a, ok := parseOneAddress(item); ok {
			out = append(out, a)
		}
		if end {
			out = append(out, imap.Address{})
			inGroup = false
		}
	}
	if inGroup {
		out = append(out, imap.Address{})
	}
	return out
}

// splitAddressList splits at commas outside quotes, comments and angle brackets. A group's ';' also
// ends an item.
func splitAddressList(v string) []string {
	var items []string
	depth, inAngle, start := 0, false, 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '"':
			i = closingQuote(v, i)
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case depth > 0:
		case c == '<':
			inAngle = true
		case c == '>':
			inAngle = false
		case (c == ',' || c == ';') && !inAngle:
			end := i
			if c == ';' {
				end = i + 1
			}
			items = append(items, v[start:end])
			start = i + 1
		}
	}
	if start < len(v) {
		items = append(items, v[start:])
	}
	return items
}

// groupStart recognises "display name:" at the start of item, outside quotes and brackets.
func groupStart(item string) (name, rest string, ok bool) {
	for i := 0; i < len(item); i++ {
		switch c := item[i]; {
		case c == '"':
			i = closingQuote(item, i)
		case c == '<' || c == '@' || c == '(':
			return "", item, false
		case c == ':':
			return unquote(strings.TrimSpace(item[:i])), item[i+1:], true
		}
	}
	return "", item, false
}

// parseOneAddress parses "Name <local@host>", "<local@host>" or "local@host (comment)".
func parseOneAddress(item string) (imap.Address, bool) {
	var name, addr string
	if i := strings.LastIndexByte(item, '<'); i >= 0 && !inQuotes(item, i) {
		name = strings.TrimSpace(item[:i])
		addr = item[i+1:]
		if j := strings.IndexByte(addr, '>'); j >= 0 {
			addr = addr[:j]
		}
		// A route (obsolete "<@a,@b:local@host>") is dropped.
		if k := strings.LastIndexByte(addr, ':'); k >= 0 {
			addr = addr[k+1:]
		}
	} else {
		addr = stripComments(item)
	}
	addr = strings.TrimSpace(addr)
	if addr == "" {
		return imap.Address{}, false
	}
	local, host := addr, "MISSING_DOMAIN"
	if k := strings.LastIndexByte(addr, '@'); k >= 0 {
		local, host = addr[:k], addr[k+1:]
		if host == "" {
			host = "MISSING_DOMAIN"
		}
	}
	return imap.Address{
		Name:    clean(DecodeHeader(unquote(name))),
		Mailbox: clean(unquote(local)),
		Host:    clean(host),
	}, true
}

// closingQuote returns the index of the '"' closing the quoted string
// that opens at s[i], honouring backslash escapes; len(s) if unterminated.
func closingQuote(s string, i int) int {
	for i++; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return i
		}
	}
	return len(s)
}

func inQuotes(s string, pos int) bool {
	in := false
	for i := 0; i < pos && i < len(s); i++ {
		if s[i] == '\\' && in {
			i++
		} else if s[i] == '"' {
			in = !in
		}
	}
	return in
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

func unquote(s string) string {
	s = strings.TrimSpace(s)
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
		if strings.IndexByte(s, '\\') >= 0 {
			var b strings.Builder
			for i := 0; i < len(s); i++ {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				b.WriteByte(s[i])
			}
			s = b.String()
		}
	}
	return s
}
