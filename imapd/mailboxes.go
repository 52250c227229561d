package imapd

import (
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"postie/maildir"
)

// delim is the hierarchy delimiter. Names arrive decoded from modified UTF-7; maildir validates them
// (ValidateMailboxName) before any becomes a path.
const delim = '/'

func (s *session) Create(name string, options *imap.CreateOptions) error {
	defer s.busy()()
	// RFC 3501 §6.3.3: a trailing delimiter only says children are intended.
	name = strings.TrimSuffix(name, string(delim))
	use := ""
	switch len(options.SpecialUse) {
	case 0:
	case 1:
		use = string(options.SpecialUse[0])
	default:
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: "USEATTR", Text: "One special use per mailbox"}
	}
	if virtualUse(use) {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: "USEATTR", Text: use + " is for a virtual mailbox, which this server does not have"}
	}
	if err := s.mail.CreateMailbox(name, use); err != nil {
		return s.mailError("create", err)
	}
	return nil
}

// virtualUse reports whether a special use (RFC 6154 §2) promises a virtual mailbox: \All
// presents every message of the account, \Flagged every flagged one. Nothing here fills such a
// folder (maildir only records the attribute), so a folder created with one would be an empty,
// ordinary folder that clients take for a view of the whole account (and skip when syncing, or
// search instead of INBOX): CREATE refuses them with NO [USEATTR], as RFC 6154 §3 says.
func virtualUse(use string) bool {
	return strings.EqualFold(use, string(imap.MailboxAttrAll)) || strings.EqualFold(use, string(imap.MailboxAttrFlagged))
}

func (s *session) Delete(name string) error {
	defer s.busy()()
	if s.sel != nil && sameMailbox(s.sel.mbox.Name(), name) {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeInUse, Text: "Mailbox is selected"}
	}
	if err := s.mail.DeleteMailbox(name); err != nil {
		return s.mailError("delete", err)
	}
	return nil
}

// Rename renames a mailbox and its children; renaming INBOX moves its messages (maildir does both).
func (s *session) Rename(from, to string, _ *imap.RenameOptions) error {
	defer s.busy()()
	if err := s.mail.RenameMailbox(from, to); err != nil {
		return s.mailError("rename", err)
	}
	return nil
}

func (s *session) Subscribe(name string) error {
	defer s.busy()()
	if err := maildir.ValidateMailboxName(name); err != nil {
		return s.mailError("subscribe", err)
	}
	if err := s.mail.SetSubscribed(name, true); err != nil {
		return s.mailError("subscribe", err)
	}
	return nil
}

func (s *session) Unsubscribe(name string) error {
	defer s.busy()()
	if err := s.mail.SetSubscribed(name, false); err != nil {
		return s.mailError("unsubscribe", err)
	}
	return nil
}

// sameMailbox compares names as the store does: "inbox/Sub" is "INBOX/Sub".
func sameMailbox(a, b string) bool { return inboxCase(a) == inboxCase(b) }

// List answers LIST and LSUB, with LIST-EXTENDED (RFC 5258) selection and return options,
// CHILDREN (\HasChildren, \HasNoChildren), SPECIAL-USE (RFC 6154) and LIST-STATUS (RFC 5819).
func (s *session) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) error {
	if len(patterns) == 0 {
		// LIST "" "": the delimiter and the root (RFC 3501 §6.3.8).
		return w.WriteList(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}, Delim: delim})
	}
	if options.LSUB {
		return s.lsub(w, ref, patterns)
	}
	infos, err := s.mail.ListMailboxes()
	if err != nil {
		return s.mailError("list", err)
	}
	exists := make(map[string]bool, len(infos))
	for _, mi := range infos {
		exists[mi.Name] = true
	}
	matches := func(name string) bool {
		for _, p := range patterns {
			if matchMailbox(name, ref, p) {
				return true
			}
		}
		return false
	}
	for _, mi := range infos {
		if !matches(mi.Name) {
			continue
		}
		if options.SelectSpecialUse && mi.SpecialUse == "" {
			continue
		}
		var childInfo *imap.ListDataChildInfo
		if options.SelectSubscribed && !mi.Subscribed {
			if !options.SelectRecursiveMatch || !hasSubscribedChild(mi.Name, infos, ref, patterns) {
				continue
			}
			childInfo = &imap.ListDataChildInfo{Subscribed: true}
		}
		data := &imap.ListData{Delim: delim, Mailbox: mi.Name, ChildInfo: childInfo, Attrs: listAttrs(mi, options)}
		if options.ReturnStatus != nil {
			st, err := s.status(mi.Name, options.ReturnStatus)
			if err == nil {
				data.Status = st
			}
		}
		if err := w.WriteList(data); err != nil {
			return err
		}
	}
	// Subscribed names that no longer exist are still listed by LSUB and LIST (SUBSCRIBED).
	if options.SelectSubscribed {
		for _, name := range s.mail.Subscriptions() {
			if exists[name] || !matches(name) {
				continue
			}
			attrs := []imap.MailboxAttr{imap.MailboxAttrNonExistent, imap.MailboxAttrSubscribed}
			if err := w.WriteList(&imap.ListData{Delim: delim, Mailbox: name, Attrs: attrs}); err != nil {
				return err
			}
		}
	}
	return nil
}

func listAttrs(mi maildir.MailboxInfo, options *imap.ListOptions) []imap.MailboxAttr {
	attrs := make([]imap.MailboxAttr, 0, 3)
	if mi.HasChildren {
		attrs = append(attrs, imap.MailboxAttrHasChildren)
	} else {
		attrs = append(attrs, imap.MailboxAttrHasNoChildren)
	}
	if mi.Subscribed && (options.SelectSubscribed || options.ReturnSubscribed) {
		attrs = append(attrs, imap.MailboxAttrSubscribed)
	}
	// Special-use attributes go out always: clients that never ask (Thunderbird's plain LIST) use them
	// too, and RFC 6154 §5.1 allows it.
	if mi.SpecialUse != "" {
		attrs = append(attrs, imap.MailboxAttr(mi.SpecialUse))
	}
	return attrs
}

// hasSubscribedChild reports whether name has a subscribed descendant that earns it a CHILDINFO
// (RFC 5258 RECURSIVEMATCH): one that no pattern lists on its own account, i.e. every pattern that
// matches the descendant matches name too. So LIST (SUBSCRIBED RECURSIVEMATCH) "" (a a/b) lists a/b
// and not a with CHILDINFO, as Dovecot does, while "" a% or "" a* lists a with CHILDINFO.
func hasSubscribedChild(name string, infos []maildir.MailboxInfo, ref string, patterns []string) bool {
	prefix := name + string(delim)
	for _, mi := range infos {
		if !mi.Subscribed || !strings.HasPrefix(mi.Name, prefix) {
			continue
		}
		own := false
		for _, p := range patterns {
			if matchMailbox(mi.Name, ref, p) && !matchMailbox(name, ref, p) {
				own = true
				break
			}
		}
		if !own {
			return true
		}
	}
	return false
}

// lsub answers LSUB (RFC 3501 §6.3.9): the subscribed names the patterns match (\Noselect when
// the mailbox is gone), and where a "%" stops above a subscribed name, the name at that level,
// \Noselect, unless it is subscribed itself.
func (s *session) lsub(w *imapserver.ListWriter, ref string, patterns []string) error {
	infos, err := s.mail.ListMailboxes()
	if err != nil {
		return s.mailError("lsub", err)
	}
	exists := make(map[string]bool, len(infos))
	for _, mi := range infos {
		exists[mi.Name] = true
	}
	subs := s.mail.Subscriptions()
	subscribed := make(map[string]bool, len(subs))
	for _, n := range subs {
		subscribed[n] = true
	}
	matches := func(name string) bool {
		for _, p := range patterns {
			if matchMailbox(name, ref, p) {
				return true
			}
		}
		return false
	}
	listed := make(map[string]bool)
	write := func(name string, noSelect bool) error {
		listed[name] = true
		var attrs []imap.MailboxAttr
		if noSelect {
			attrs = []imap.MailboxAttr{imap.MailboxAttrNoSelect}
		}
		return w.WriteList(&imap.ListData{Delim: delim, Mailbox: name, Attrs: attrs})
	}
	for _, name := range subs {
		if matches(name) {
			if !listed[name] {
				if err := write(name, !exists[name]); err != nil {
					return err
				}
			}
			continue
		}
		for p := name; ; {
			i := strings.LastIndexByte(p, delim)
			if i <= 0 {
				break
			}
			p = p[:i]
			if subscribed[p] || listed[p] || !matches(p) {
				continue
			}
			if err := write(p, true); err != nil {
				return err
			}
		}
	}
	return nil
}

// matchMailbox applies a LIST reference and pattern as go-imap's MatchList does, treating a leading
// "INBOX" in any case as INBOX (RFC 3501 §5.1: INBOX is case-insensitive, which MatchList does not
// know). The matching itself is ours: MatchList backtracks, and a pattern of many wildcards sent
// against long names would take exponential time.
func matchMailbox(name, ref, pattern string) bool {
	ref, pattern = inboxCase(ref), inboxCase(pattern)
	if strings.HasPrefix(pattern, string(delim)) {
		ref, pattern = "", pattern[1:]
	}
	if ref != "" {
		if !strings.HasSuffix(ref, string(delim)) {
			ref += string(delim)
		}
		if !strings.HasPrefix(name, ref) {
			return false
		}
		name = name[len(ref):]
	}
	return globMatch(name, pattern)
}

// globMatch matches name against a LIST pattern ('*' anything, '%' anything but the delimiter) in
// O(len(name)·len(pattern)) time.
func globMatch(name, pattern string) bool {
	// prev[j]: pattern[:i] matches name[:j].
	prev := make([]bool, len(name)+1)
	cur := make([]bool, len(name)+1)
	prev[0] = true
	for i := 0; i < len(pattern); i++ {
		c := pattern[i]
		switch c {
		case '*', '%':
			cur[0] = prev[0]
			for j := 1; j <= len(name); j++ {
				cur[j] = prev[j] || cur[j-1] && (c == '*' || name[j-1] != delim)
			}
		default:
			cur[0] = false
			for j := 1; j <= len(name); j++ {
				cur[j] = prev[j-1] && name[j-1] == c
			}
		}
		prev, cur = cur, prev
	}
	return prev[len(name)]
}

func inboxCase(s string) string {
	if len(s) >= 5 && strings.EqualFold(s[:5], "INBOX") && (len(s) == 5 || s[5] == delim) {
		return "INBOX" + s[5:]
	}
	return s
}

// Status answers STATUS; every item gets a value, since the library dereferences each one asked for.
func (s *session) Status(name string, options *imap.StatusOptions) (*imap.StatusData, error) {
	return s.status(name, options)
}

func (s *session) status(name string, options *imap.StatusOptions) (*imap.StatusData, error) {
	m, err := s.mail.Mailbox(name)
	if err != nil {
		return nil, s.mailError("status", err)
	}
	// A mailbox some session has selected refreshes through its entry, so
	// its tracker stays in step; for the others (Thunderbird STATUSes every
	// folder) a plain Refresh, two stats, without making an entry that would
	// watch the folder for the rest of the process's life.
	if e := s.srv.boxes.existing(m); e != nil {
		err = e.refresh(pollRefreshGap)
	} else {
		err = m.Refresh()
	}
	if err != nil {
		return nil, s.mailError("status", err)
	}
	var n, unseen, deleted uint32
	var deletedSize int64
	m.View(func(msgs []maildir.Message) {
		n = uint32(len(msgs))
		if !options.NumUnseen && !options.NumDeleted && !options.DeletedStorage {
			return
		}
		for i := range msgs {
			if msgs[i].Flags&maildir.FlagSeen == 0 {
				unseen++
			}
			if msgs[i].Flags&maildir.FlagDeleted != 0 {
				deleted++
				deletedSize += msgs[i].Size
			}
		}
	})
	size := m.Size()
	var recent uint32
	if options.NumRecent {
		if recent, err = recentUnclaimed(m); err != nil {
			return nil, s.mailError("status", err)
		}
	}
	limit := s.AppendLimit()
	return &imap.StatusData{
		Mailbox:        m.Name(),
		NumMessages:    &n,
		NumRecent:      &recent,
		UIDNext:        imap.UID(m.UIDNext()),
		UIDValidity:    m.UIDValidity(),
		NumUnseen:      &unseen,
		NumDeleted:     &deleted,
		Size:           &size,
		AppendLimit:    &limit,
		DeletedStorage: &deletedSize,
		HighestModSeq:  m.HighestModSeq(),
	}, nil
}
