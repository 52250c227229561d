package mimeparse

import (
	"strings"

	"github.com/emersion/go-imap/v2"
)

// Address lists (RFC 5322 §3.4, with its obsolete forms of §4.4), parsed leniently: the parser never
// fails, it reads what it can. It follows Dovecot's reading, which imaptest checks:
//
//   - comments are dropped wherever they are ("<user (c)@ (c) host>" is user@host), except that an
//     address without a display name takes its first comment as one ("user@host (Real Name)");
//   - a source route ("<@a,@b:user@host>") is kept, for the envelope's adl field;
//   - groups take the IMAP form: (NIL NIL "name" NIL), the members, (NIL NIL NIL NIL);
//   - an address without a domain gets the host MISSING_DOMAIN, as a NIL host would mean a group.

// addrTok is a lexical token of an address list: an atom (dots and anything not special included),
// a quoted string or a comment (their text, unescaped), or one of the specials <>@:;, as itself.
type addrTok struct {
	kind byte // 'a' atom, 'q' quoted string, 'c' comment, or the special
	text string
}

func addrTokens(v string) []addrTok {
	var toks []addrTok
	for i := 0; i < len(v); {
		switch c := v[i]; c {
		case ' ', '\t', '\r', '\n':
			i++
		case '<', '>', '@', ':', ';', ',':
			toks = append(toks, addrTok{kind: c, text: string(c)})
			i++
		case '"':
			text, next := scanQuoted(v, i)
			toks = append(toks, addrTok{kind: 'q', text: text})
			i = next
		case '(':
			text, next := scanComment(v, i)
			toks = append(toks, addrTok{kind: 'c', text: text})
			i = next
		default:
			j := i
			for j < len(v) && !strings.ContainsRune(" \t\r\n<>@:;,\"(", rune(v[j])) {
				if v[j] == '[' { // a domain literal may hold anything but ']'
					if k := strings.IndexByte(v[j:], ']'); k >= 0 {
						j += k
					}
				}
				j++
			}
			toks = append(toks, addrTok{kind: 'a', text: v[i:j]})
			i = j
		}
	}
	return toks
}

// scanQuoted reads the quoted string opening at v[i]: its unescaped text and the index after it.
func scanQuoted(v string, i int) (string, int) {
	var b strings.Builder
	for i++; i < len(v); i++ {
		switch v[i] {
		case '\\':
			if i+1 < len(v) {
				i++
				b.WriteByte(v[i])
			}
		case '"':
			return b.String(), i + 1
		default:
			b.WriteByte(v[i])
		}
	}
	return b.String(), i
}

// scanComment reads the (nested) comment opening at v[i]: its text, without the outer parentheses.
func scanComment(v string, i int) (string, int) {
	var b strings.Builder
	depth := 0
	for ; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\\' && i+1 < len(v):
			i++
			b.WriteByte(v[i])
		case c == '(':
			if depth > 0 {
				b.WriteByte(c)
			}
			depth++
		case c == ')':
			depth--
			if depth == 0 {
				return b.String(), i + 1
			}
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), i
}

// addrParser reads one address list.
type addrParser struct {
	toks []addrTok
	i    int
	out  []imap.Address
}

func parseAddresses(v string) []imap.Address {
	p := &addrParser{toks: addrTokens(v)}
	inGroup := false
	var phrase []addrTok // words read since the last address
	comment := ""        // the first comment among them
	flush := func() {    // a bare word list is a local part without domain
		if len(phrase) > 0 {
			p.add(imap.Address{Mailbox: joinWords(phrase, ""), Host: "MISSING_DOMAIN"}, "", comment)
		}
		phrase, comment = nil, ""
	}
	for p.i < len(p.toks) {
		t := p.toks[p.i]
		p.i++
		switch t.kind {
		case 'c':
			if comment == "" {
				comment = t.text
			}
		case ':':
			if inGroup { // not a group in a group: a word
				phrase = append(phrase, t)
				continue
			}
			p.out = append(p.out, imap.Address{Mailbox: clean(joinWords(phrase, " "))})
			inGroup, phrase, comment = true, nil, ""
		case '<':
			a := p.angleAddr()
			p.add(a, joinWords(phrase, " "), comment)
			phrase, comment = nil, ""
		case '@':
			local := joinWords(phrase, "")
			host, c := p.domain()
			if comment == "" {
				comment = c
			}
			p.add(imap.Address{Mailbox: local, Host: host}, "", comment)
			phrase, comment = nil, ""
		case ',':
			flush()
		case ';':
			flush()
			if inGroup {
				p.out = append(p.out, imap.Address{})
				inGroup = false
			}
		case '>':
			// a stray one: ignored
		default:
			phrase = append(phrase, t)
		}
	}
	flush()
	if inGroup {
		p.out = append(p.out, imap.Address{})
	}
	return p.out
}

// add appends a parsed address with its display name (or, lacking one, its comment). An address
// with neither local part nor domain is no address.
func (p *addrParser) add(a imap.Address, name, comment string) {
	if a.Mailbox == "" && a.Host == "" {
		return
	}
	if a.Host == "" {
		a.Host = "MISSING_DOMAIN"
	}
	if name == "" {
		name = strings.TrimSpace(comment)
	}
	a.Name = clean(DecodeHeader(name))
	a.Route, a.Mailbox, a.Host = clean(a.Route), clean(a.Mailbox), clean(a.Host)
	p.out = append(p.out, a)
}

// angleAddr reads what follows '<': an optional route, the local part, '@' and the domain, up to '>'
// (or, unterminated, to the next ',' or ';').
func (p *addrParser) angleAddr() imap.Address {
	var a imap.Address
	if p.i < len(p.toks) && p.toks[p.i].kind == '@' { // obs-route: "@a,@b:"
		var route strings.Builder
		for j := p.i; j < len(p.toks); j++ {
			t := p.toks[j]
			if t.kind == ':' {
				a.Route, p.i = route.String(), j+1
				break
			}
			if t.kind == '>' || t.kind == ';' || t.kind == '<' {
				break // no route after all
			}
			if t.kind != 'c' {
				route.WriteString(t.text)
			}
		}
	}
	var local []addrTok
	for p.i < len(p.toks) {
		t := p.toks[p.i]
		switch t.kind {
		case '>':
			p.i++
			a.Mailbox = joinWords(local, "")
			return a
		case ',', ';': // unterminated
			a.Mailbox = joinWords(local, "")
			return a
		case '@':
			p.i++
			a.Mailbox = joinWords(local, "")
			a.Host, _ = p.domain()
			if p.i < len(p.toks) && p.toks[p.i].kind == '>' {
				p.i++
			}
			return a
		case 'c':
		default:
			local = append(local, t)
		}
		p.i++
	}
	a.Mailbox = joinWords(local, "")
	return a
}

// domain reads a domain up to the end of the address; it also returns the first comment met.
func (p *addrParser) domain() (host, comment string) {
	var b strings.Builder
	for ; p.i < len(p.toks); p.i++ {
		t := p.toks[p.i]
		switch t.kind {
		case '>', ',', ';', '<':
			return b.String(), comment
		case 'c':
			if comment == "" {
				comment = t.text
			}
		case 'a', 'q':
			b.WriteString(t.text)
		default:
			// '@' or ':' inside a domain: not part of it
		}
	}
	return b.String(), comment
}

// joinWords joins atoms and quoted strings (a display name with spaces, a local part without).
func joinWords(ws []addrTok, sep string) string {
	var b strings.Builder
	for i, w := range ws {
		if i > 0 {
			b.WriteString(sep)
		}
		b.WriteString(w.text)
	}
	return b.String()
}

// AddressText is the normalized form of an address field's value that SEARCH FROM, TO, CC, BCC
// match besides the raw value: each address as "Name <mailbox@host>" (or its group name), comments
// and routes left out, so that "user@host" finds "<user (c)@ (c) host>".
func AddressText(v string) string {
	var b strings.Builder
	for _, a := range parseAddresses(v) {
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		switch {
		case a.IsGroupEnd():
		case a.IsGroupStart():
			b.WriteString(a.Mailbox + ":")
		default:
			if a.Name != "" {
				b.WriteString(a.Name + " ")
			}
			b.WriteString("<" + a.Mailbox + "@" + a.Host + ">")
		}
	}
	return b.String()
}
