package junk

import (
	"bufio"
	"io"
	"mime"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // decodes every charset x/text knows
	"github.com/emersion/go-message/mail"
)

// Limits on what one message contributes, so that a huge or hostile message
// costs bounded time and memory.
const (
	maxTextBytes = 256 << 10 // decoded text read per message
	maxTokens    = 2000      // distinct tokens kept per message
	minWordLen   = 2
	maxWordLen   = 24
)

// features are what the filter learns from one message: its word tokens
// and its sender.
type features struct {
	tokens []string // distinct, prefixed by where they came from
	from   string   // the From: address, lower-cased; "" when none or several
	msgID  string   // the Message-ID, or a digest of the message when none
}

// extract reads a message and returns its features. It never fails: what
// cannot be parsed contributes nothing.
func extract(r io.Reader) features {
	var fe features
	seen := make(map[string]bool)
	add := func(tok string) {
		if len(seen) < maxTokens && !seen[tok] {
			seen[tok] = true
			fe.tokens = append(fe.tokens, tok)
		}
	}
	ent, err := message.Read(bufio.NewReader(r))
	if ent == nil {
		return fe
	}
	h := mail.Header{Header: ent.Header}
	headerTokens(h, add)
	if addrs, aerr := h.AddressList("From"); aerr == nil && len(addrs) == 1 {
		fe.from = strings.ToLower(addrs[0].Address)
	}
	fe.msgID, _ = h.MessageID()
	if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
		return fe
	}
	budget := maxTextBytes
	_ = ent.Walk(func(_ []int, part *message.Entity, err error) error {
		if err != nil || budget <= 0 {
			return nil
		}
		ct, _, cerr := part.Header.ContentType()
		if cerr != nil {
			ct = "text/plain"
		}
		if !strings.HasPrefix(ct, "text/") {
			if ct != "" && !strings.HasPrefix(ct, "multipart/") {
				add("ct:" + ct) // attachments say something by their type
			}
			return nil
		}
		data, _ := io.ReadAll(io.LimitReader(part.Body, int64(budget)))
		budget -= len(data)
		text := string(data)
		if ct == "text/html" {
			text = stripHTML(text)
		}
		words(text, "", add)
		return nil
	})
	return fe
}

// headerTokens adds the tokens of the headers that tell spam from ham.
func headerTokens(h mail.Header, add func(string)) {
	if subj, err := h.Subject(); err == nil {
		words(subj, "s:", add)
	}
	if addrs, err := h.AddressList("From"); err == nil {
		for _, a := range addrs {
			local, domain, _ := strings.Cut(strings.ToLower(a.Address), "@")
			add("f:" + local + "@" + domain)
			add("fd:" + domain)
			words(a.Name, "fn:", add)
		}
	}
	if addrs, err := h.AddressList("Reply-To"); err == nil {
		for _, a := range addrs {
			_, domain, _ := strings.Cut(strings.ToLower(a.Address), "@")
			add("rd:" + domain)
		}
	}
	for _, key := range []string{"List-Id", "X-Mailer", "User-Agent"} {
		if v := h.Get(key); v != "" {
			words(v, strings.ToLower(key)+":", add)
		}
	}
	if _, params, err := mime.ParseMediaType(h.Get("Content-Type")); err == nil && params["charset"] != "" {
		add("cs:" + strings.ToLower(params["charset"]))
	}
}

// words splits text into lower-cased words and adds each with prefix.
// Words are runs of letters and digits (and inner '-', '.', '\”, '$'),
// of minWordLen to maxWordLen characters; longer runs count as one
// "long" token, which is itself telling (base64 junk, URLs).
func words(text, prefix string, add func(string)) {
	start := -1
	flush := func(end int) {
		if start < 0 {
			return
		}
		w := strings.Trim(text[start:end], "-.'$")
		start = -1
		n := utf8.RuneCountInString(w)
		switch {
		case n < minWordLen:
		case n > maxWordLen:
			add(prefix + "long")
		default:
			add(prefix + strings.ToLower(w))
		}
	}
	for i, c := range text {
		inner := c == '-' || c == '.' || c == '\'' || c == '$'
		if unicode.IsLetter(c) || unicode.IsDigit(c) || inner && start >= 0 {
			if start < 0 {
				start = i
			}
			continue
		}
		flush(i)
	}
	flush(len(text))
}

// stripHTML drops tags, comments, and the content of script and style
// elements, keeping the text and the host names of links.
func stripHTML(s string) string {
	var b strings.Builder
	b.Grow(len(s) / 2)
	for len(s) > 0 {
		i := strings.IndexByte(s, '<')
		if i < 0 {
			b.WriteString(s)
			break
		}
		b.WriteString(s[:i])
		s = s[i:]
		if strings.HasPrefix(s, "<!--") {
			end := strings.Index(s, "-->")
			if end < 0 {
				break
			}
			s = s[end+3:]
			continue
		}
		end := strings.IndexByte(s, '>')
		if end < 0 {
			break
		}
		tag := strings.ToLower(s[1:end])
		s = s[end+1:]
		if host := linkHost(tag); host != "" {
			b.WriteString(" " + host + " ")
		}
		for _, skip := range []string{"script", "style"} {
			if strings.HasPrefix(tag, skip) {
				if close := strings.Index(strings.ToLower(s), "</"+skip); close >= 0 {
					s = s[close:]
				}
			}
		}
		b.WriteByte(' ')
	}
	return htmlEntities.Replace(b.String())
}

var htmlEntities = strings.NewReplacer("&nbsp;", " ", "&amp;", "&", "&lt;", "<", "&gt;", ">", "&quot;", "\"", "&#39;", "'")

// linkHost returns the host of an <a href="http...">, or "".
func linkHost(tag string) string {
	if !strings.HasPrefix(tag, "a ") {
		return ""
	}
	i := strings.Index(tag, "href=")
	if i < 0 {
		return ""
	}
	v := strings.Trim(tag[i+5:], "\"' ")
	for _, scheme := range []string{"https://", "http://"} {
		if rest, ok := strings.CutPrefix(v, scheme); ok {
			host, _, _ := strings.Cut(rest, "/")
			host, _, _ = strings.Cut(host, "\"")
			return host
		}
	}
	return ""
}
