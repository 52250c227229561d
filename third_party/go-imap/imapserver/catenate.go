package imapserver

import (
	"bufio"
	"io"
	"net/url"
	"strconv"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/internal/imapwire"
)

// SessionCatenate resolves the URL parts of a CATENATE (RFC 4469) APPEND. It is used with
// SessionAppendTx; CATENATE is advertised when Options.Caps has it.
//
// CatenateURL returns the bytes the URL names (a message of the user's, or a section or partial
// range of it), or an error: NO [BADURL "url"] is what RFC 4469 §5 asks for.
type SessionCatenate interface {
	CatenateURL(u *CatenateURL) (io.ReadCloser, error)
}

// CatenateURL is an IMAP URL (RFC 5092) as CATENATE uses it: the message UID in a mailbox,
// optionally its UIDVALIDITY, a section and a partial range.
type CatenateURL struct {
	Raw         string // as the client sent it, for BADURL
	Mailbox     string
	UIDValidity uint32 // 0: not given
	UID         imap.UID
	// Section is the BODY[section]<partial> to take; the whole message when its Part,
	// Specifier and fields are empty. Partial.Size is -1 for "to the end".
	Section imap.FetchItemBodySection
}

// BadURL is the NO [BADURL "url"] answer for a URL that cannot be used.
func BadURL(raw, text string) *imap.Error {
	return &imap.Error{
		Type: imap.StatusResponseTypeNo,
		Code: imap.ResponseCode(`BADURL "` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(raw) + `"`),
		Text: text,
	}
}

// appendCatenate reads CATENATE's part list: "(" cat-part *(SP cat-part) ")", cat-part being
// TEXT SP literal or URL SP astring.
func (c *Conn) appendCatenate(dec *imapwire.Decoder, tx AppendTx, options *imap.AppendOptions) error {
	sess, ok := c.session.(SessionCatenate)
	if !ok || !c.server.options.caps().Has(imap.CapCatenate) {
		return newClientBugError("CATENATE is not supported")
	}
	if !dec.ExpectSP() {
		return dec.Err()
	}
	w, err := tx.Message(options)
	if err != nil {
		return err
	}
	defer func() {
		if w != nil {
			w.Close()
		}
	}()
	limit := c.appendLimit()
	parts := 0
	err = dec.ExpectList(func() error {
		parts++
		var kind string
		if !dec.ExpectAtom(&kind) || !dec.ExpectSP() {
			return dec.Err()
		}
		switch strings.ToUpper(kind) {
		case "TEXT":
			n, err := c.appendLiteral(dec, w, limit)
			limit -= n
			return err
		case "URL":
			var raw string
			if !dec.ExpectAString(&raw) {
				return dec.Err()
			}
			u, err := ParseCatenateURL(raw)
			if err != nil {
				return err
			}
			r, err := sess.CatenateURL(u)
			if err != nil {
				return err
			}
			defer r.Close()
			n, err := io.Copy(w, io.LimitReader(r, limit+1))
			if err == nil && n > limit {
				return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTooBig, Text: "Message too large"}
			}
			limit -= n
			return err
		default:
			return newClientBugError("Unknown CATENATE part")
		}
	})
	if err != nil {
		return err
	}
	if parts == 0 {
		return newClientBugError("CATENATE needs at least one part")
	}
	err = w.Close()
	w = nil
	return err
}

// ParseCatenateURL parses an IMAP URL naming a message of this server: "imap://..." or a
// path from the server's root, "/mailbox[;UIDVALIDITY=n]/;UID=n[/;SECTION=s][/;PARTIAL=o[.l]]".
func ParseCatenateURL(raw string) (*CatenateURL, error) {
	bad := func(text string) (*CatenateURL, error) { return nil, BadURL(raw, text) }
	path := raw
	if len(path) > 7 && strings.EqualFold(path[:7], "imap://") {
		i := strings.IndexByte(path[7:], '/')
		if i < 0 {
			return bad("No message in the URL")
		}
		path = path[7+i:]
	}
	if !strings.HasPrefix(path, "/") {
		return bad("Not an IMAP URL")
	}
	segs := strings.Split(path[1:], "/;")
	u := &CatenateURL{Raw: raw, Section: imap.FetchItemBodySection{Peek: true}}
	box, params, _ := strings.Cut(segs[0], ";")
	var err error
	if u.Mailbox, err = url.PathUnescape(box); err != nil || u.Mailbox == "" {
		return bad("Bad mailbox in the URL")
	}
	if params != "" {
		k, v, _ := strings.Cut(params, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if !strings.EqualFold(k, "uidvalidity") || err != nil || n == 0 {
			return bad("Bad mailbox parameter in the URL")
		}
		u.UIDValidity = uint32(n)
	}
	for i, seg := range segs[1:] {
		k, v, _ := strings.Cut(seg, "=")
		v = strings.TrimSuffix(v, "/")
		switch strings.ToLower(k) {
		case "uid":
			n, err := strconv.ParseUint(v, 10, 32)
			if i != 0 || err != nil || n == 0 {
				return bad("Bad UID in the URL")
			}
			u.UID = imap.UID(n)
		case "section":
			s, err := url.PathUnescape(v)
			if i != 1 || err != nil || parseURLSection(s, &u.Section) != nil {
				return bad("Bad section in the URL")
			}
		case "partial":
			o, l, hasLen := strings.Cut(v, ".")
			off, err1 := strconv.ParseInt(o, 10, 64)
			size, err2 := int64(-1), error(nil)
			if hasLen {
				size, err2 = strconv.ParseInt(l, 10, 64)
			}
			if i == 0 || err1 != nil || err2 != nil || off < 0 || size == 0 || size < -1 {
				return bad("Bad partial range in the URL")
			}
			u.Section.Partial = &imap.SectionPartial{Offset: off, Size: size}
		default:
			return bad("Unsupported URL")
		}
	}
	if u.UID == 0 {
		return bad("No message UID in the URL")
	}
	return u, nil
}

// parseURLSection parses a section-text ("HEADER", "1.MIME", "HEADER.FIELDS (A B)", ...) with
// FETCH's parser.
func parseURLSection(s string, sec *imap.FetchItemBodySection) error {
	dec := imapwire.NewDecoder(bufio.NewReader(strings.NewReader(s+"]")), imapwire.ConnSideServer)
	dec.CheckBufferedLiteralFunc = func(int64, bool) error { return newClientBugError("no literal in a URL") }
	if err := readSection(dec, sec); err != nil {
		return err
	}
	if !dec.EOF() {
		return newClientBugError("junk after the section")
	}
	return nil
}
