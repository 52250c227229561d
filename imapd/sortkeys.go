package imapd

import (
	"net/mail"
	"strings"
	"sync"

	"github.com/emersion/go-imap/v2"

	"postie/imapd/mimeparse"
	"postie/maildir"
)

// Sort keys: what SORT and THREAD (RFC 5256) compare, derived once per message from its cached
// header fields and kept per mailbox (a message's bytes never change under its UID), so a second
// SORT or THREAD of a folder reads no file and parses no header. The cache holds only the UIDs the
// mailbox had at its last use: each use drops the entries of expunged messages.
//
// Strings are kept in the form they are compared in: i;ascii-casemap (RFC 4790 §9.2), the collation
// RFC 5256 requires, compares octets after mapping a-z to A-Z, so they are stored mapped.

// msgKeys are the sort and thread keys of one message.
type msgKeys struct {
	sent     int64 // the Date field in Unix seconds; valid when hasDate
	hasDate  bool
	subject  string // base subject (RFC 5256 §2.1), case-mapped
	reply    bool   // the subject had a reply or forward marker
	from     string // addr-mailbox of the first From address, case-mapped
	to       string
	cc       string
	dispFrom string // RFC 5957 display name (or addr-spec) of the first From address, case-mapped
	dispTo   string
	msgID    string   // Message-ID without brackets; "" when missing
	refs     []string // References, else the first In-Reply-To identifier
}

// keyBytes approximates an entry's memory.
func (k *msgKeys) keyBytes() int {
	n := 160 + len(k.subject) + len(k.from) + len(k.to) + len(k.cc) + len(k.dispFrom) + len(k.dispTo) + len(k.msgID)
	for _, r := range k.refs {
		n += 16 + len(r)
	}
	return n
}

// keyCache is one mailbox's sort keys for one UIDVALIDITY; the zero value is ready.
type keyCache struct {
	mu       sync.Mutex
	validity uint32
	keys     map[uint32]*msgKeys
}

// lookupLocked returns the cached keys of uid, or nil; c.mu is held.
func (c *keyCache) lookupLocked(validity, uid uint32) *msgKeys {
	if c.validity != validity {
		return nil
	}
	return c.keys[uid]
}

func (c *keyCache) put(validity, uid uint32, k *msgKeys) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.validity != validity || c.keys == nil {
		c.validity, c.keys = validity, make(map[uint32]*msgKeys)
	}
	c.keys[uid] = k
}

func (c *keyCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.keys)
}

// retainKeys drops the cached keys of messages the mailbox no longer has.
func (sel *selection) retainKeys(validity uint32) {
	live := make(map[uint32]struct{})
	sel.mbox.View(func(msgs []maildir.Message) {
		for i := range msgs {
			live[msgs[i].UID] = struct{}{}
		}
	})
	sel.entry.keys.retain(validity, live)
}

// retain drops the entries of UIDs not in live (those of expunged messages).
func (c *keyCache) retain(validity uint32, live map[uint32]struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.validity != validity {
		c.keys = nil
		return
	}
	for uid := range c.keys {
		if _, ok := live[uid]; !ok {
			delete(c.keys, uid)
		}
	}
}

// keysOf derives the keys of a message from its (cached) header fields.
func keysOf(h mimeparse.Header) *msgKeys {
	k := &msgKeys{}
	if t, err := mail.ParseDate(h.Get("Date")); err == nil {
		k.sent, k.hasDate = t.Unix(), true
	}
	k.subject, k.reply = baseSubject(h.Get("Subject"))
	k.subject = caseMap(k.subject)
	if h.Has("From") || h.Has("To") || h.Has("Cc") {
		env := mimeparse.Envelope(h)
		k.from, k.dispFrom = addrKeys(env.From)
		k.to, k.dispTo = addrKeys(env.To)
		k.cc, _ = addrKeys(env.Cc)
	}
	if ids := bracketIDs(h.Get("Message-ID")); len(ids) > 0 {
		k.msgID = ids[0]
	}
	k.refs = bracketIDs(h.Get("References"))
	if len(k.refs) == 0 {
		if ids := bracketIDs(h.Get("In-Reply-To")); len(ids) > 0 {
			k.refs = ids[:1]
		}
	}
	return k
}

// addrKeys returns the FROM/TO/CC key (RFC 5256: the addr-mailbox of the first address) and the
// DISPLAY key (RFC 5957: its display name, else its addr-spec) of an address list.
func addrKeys(list []imap.Address) (mailbox, display string) {
	// A group's start counts as its first address, with the group's name as addr-mailbox (as in
	// the ENVELOPE, and as Dovecot sorts).
	for _, a := range list {
		display = a.Name
		if display == "" {
			display = a.Mailbox
			if a.Host != "" {
				display += "@" + a.Host
			}
		}
		return caseMap(mimeparse.DecodeHeader(a.Mailbox)), caseMap(strings.TrimSpace(display))
	}
	return "", ""
}

// bracketIDs extracts the <...> message identifiers of a field, without brackets.
func bracketIDs(v string) []string {
	var ids []string
	for {
		i := strings.IndexByte(v, '<')
		if i < 0 {
			return ids
		}
		j := strings.IndexByte(v[i:], '>')
		if j < 0 {
			return ids
		}
		if id := strings.TrimSpace(v[i+1 : i+j]); id != "" && !strings.ContainsAny(id, "< \t") {
			ids = append(ids, id)
		}
		v = v[i+j+1:]
	}
}

// caseMap maps a-z to A-Z (i;ascii-casemap).
func caseMap(s string) string {
	for i := 0; i < len(s); i++ {
		if 'a' <= s[i] && s[i] <= 'z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'a' <= b[j] && b[j] <= 'z' {
					b[j] -= 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// baseSubject extracts the base subject of a Subject field value (RFC 5256 §2.1) and reports
// whether a reply or forward marker was removed on the way (subj-refwd, a trailing "(fwd)", or a
// "[fwd: ...]" wrapper), which THREAD=REFERENCES needs.
func baseSubject(raw string) (base string, reply bool) {
	// (1) decode encoded words; tabs and line breaks become spaces, runs of spaces one space.
	s := collapseWSP(mimeparse.DecodeHeader(raw))
	for {
		// (2) remove trailing "(fwd)" and white space, repeatedly.
		for {
			if t := strings.TrimRight(s, " "); t != s {
				s = t
				continue
			}
			if len(s) >= 5 && strings.EqualFold(s[len(s)-5:], "(fwd)") {
				s, reply = s[:len(s)-5], true
				continue
			}
			break
		}
		// (3)-(5) remove leaders and blobs until neither applies.
		for changed := true; changed; {
			changed = false
			for {
				n, refwd := subjLeader(s)
				if n == 0 {
					break
				}
				s, changed = s[n:], true
				reply = reply || refwd
			}
			// (4) one blob at a time, as the RFC says, but without a leader scan in between: the
			// leader scan just failed on these blobs and what follows them, so it fails after each
			// (going back to it per blob made a Subject of many blobs quadratic).
			for n := subjBlob(s); n > 0 && n < len(s); n = subjBlob(s) {
				s, changed = s[n:], true
			}
		}
		// (6) "[fwd: subject]" unwraps, and the extraction goes on from (2).
		if len(s) > 5 && strings.EqualFold(s[:5], "[fwd:") && s[len(s)-1] == ']' {
			s, reply = s[5:len(s)-1], true
			continue
		}
		return s, reply
	}
}

// collapseWSP turns tabs, CR and LF into spaces and runs of spaces into one.
func collapseWSP(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\t' || c == '\r' || c == '\n' || c == ' ' {
			if !space {
				b.WriteByte(' ')
			}
			space = true
			continue
		}
		space = false
		b.WriteByte(c)
	}
	return b.String()
}

// subjBlob returns the length of a subj-blob at the start of s ("[" *BLOBCHAR "]" *WSP), 0 if none.
func subjBlob(s string) int {
	if len(s) == 0 || s[0] != '[' {
		return 0
	}
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '[':
			return 0
		case ']':
			i++
			for i < len(s) && s[i] == ' ' {
				i++
			}
			return i
		}
	}
	return 0
}

// subjLeader returns the length of a subj-leader at the start of s (one WSP, or *subj-blob
// subj-refwd) and whether it was a subj-refwd.
func subjLeader(s string) (int, bool) {
	if len(s) > 0 && s[0] == ' ' {
		return 1, false
	}
	i := 0
	for {
		n := subjBlob(s[i:])
		if n == 0 {
			break
		}
		i += n
	}
	if n := subjRefwd(s[i:]); n > 0 {
		return i + n, true
	}
	return 0, false
}

// subjRefwd returns the length of ("re" / ("fw" ["d"])) *WSP [subj-blob] ":" at the start of s.
func subjRefwd(s string) int {
	var i int
	switch {
	case len(s) >= 2 && strings.EqualFold(s[:2], "re"):
		i = 2
	case len(s) >= 3 && strings.EqualFold(s[:3], "fwd"):
		i = 3
	case len(s) >= 2 && strings.EqualFold(s[:2], "fw"):
		i = 2
	default:
		return 0
	}
	for i < len(s) && s[i] == ' ' {
		i++
	}
	i += subjBlob(s[i:])
	if i < len(s) && s[i] == ':' {
		return i + 1
	}
	return 0
}
