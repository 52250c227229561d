package imapd

import (
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"postie/maildir"
)

// NOTIFY (RFC 5465).
//
// The selected mailbox is reported as without NOTIFY: EXISTS, EXPUNGE (or VANISHED) and FETCH
// FLAGS after every command and at once during IDLE; MessageNew's fetch attributes add a FETCH
// of each new message. Other mailboxes are watched by comparing what STATUS would say (messages,
// UIDNEXT, UIDVALIDITY, HIGHESTMODSEQ) with what was last reported, after every command (at most
// every notifyCommandGap) and every notifyIdleGap during IDLE: MessageNew and MessageExpunge are
// reported as STATUS (MESSAGES UIDNEXT UIDVALIDITY), FlagChange as STATUS (UIDVALIDITY
// HIGHESTMODSEQ). MailboxName reports a mailbox created as LIST () and one deleted as
// LIST (\NonExistent) (a rename is both); SubscriptionChange reports LIST with or without
// \Subscribed. Notifications are sent after commands and during IDLE, not while the client is
// between commands outside IDLE: the client is waiting for nothing then, and the next command
// carries them.

const (
	notifyCommandGap = 500 * time.Millisecond
	notifyIdleGap    = 2 * time.Second
)

var _ imapserver.SessionNotify = (*session)(nil)

// notifyState is a session's NOTIFY SET and what it last reported.
type notifyState struct {
	mu      sync.Mutex
	opts    *imapserver.NotifyOptions
	boxes   map[string]notifySnap // watched mailboxes, by name
	names   map[string]bool       // every mailbox, when MailboxName is asked for
	subs    map[string]bool       // subscriptions, when SubscriptionChange is asked for
	checked time.Time

	fetchSel   *selection // the selection fetchedUID is of
	fetchedUID uint32     // MessageNew's FETCH was sent up to this UID
}

type notifySnap struct {
	messages, uidValidity uint32
	uidNext               imap.UID
	modSeq                uint64
}

// Notify is NOTIFY SET or NONE.
func (s *session) Notify(w *imapserver.UpdateWriter, opts *imapserver.NotifyOptions) error {
	if opts == nil {
		s.notifyMu.Lock()
		s.notify = nil
		s.notifyMu.Unlock()
		return nil
	}
	n := &notifyState{opts: opts, boxes: map[string]notifySnap{}}
	infos, err := s.mail.ListMailboxes()
	if err != nil {
		return s.mailError("notify", err)
	}
	if n.wants(imapserver.NotifyMailboxName) {
		n.names = map[string]bool{}
		for _, mi := range infos {
			n.names[mi.Name] = true
		}
	}
	subscribed := subscribedSet(infos)
	if n.wants(imapserver.NotifySubscriptionChange) {
		n.subs = subscribed
	}
	for _, name := range n.watched(s, infos) {
		st, err := s.status(name, &imap.StatusOptions{})
		if err != nil {
			continue // gone meanwhile
		}
		n.boxes[name] = snapOf(st)
		if opts.Status {
			o := notifyItems(n.eventsOf(name, subscribed[name]), true, true, true)
			if err := w.WriteMailboxStatus(st, o); err != nil {
				return err
			}
		}
	}
	n.checked = time.Now()
	s.notifyMu.Lock()
	s.notify = n
	s.notifyMu.Unlock()
	return nil
}

func subscribedSet(infos []maildir.MailboxInfo) map[string]bool {
	subs := map[string]bool{}
	for _, mi := range infos {
		if mi.Subscribed {
			subs[mi.Name] = true
		}
	}
	return subs
}

func snapOf(st *imap.StatusData) notifySnap {
	return notifySnap{messages: *st.NumMessages, uidValidity: st.UIDValidity, uidNext: st.UIDNext, modSeq: st.HighestModSeq}
}

// wants tells whether any group outside SELECTED asks for the event.
func (n *notifyState) wants(event string) bool {
	for i := range n.opts.Groups {
		g := &n.opts.Groups[i]
		if g.Filter != imapserver.NotifySelected && g.Filter != imapserver.NotifySelectedDelayed && g.Has(event) {
			return true
		}
	}
	return false
}

// eventsOf returns the events asked for a mailbox that is not selected.
func (n *notifyState) eventsOf(name string, subscribed bool) (events []string) {
	for i := range n.opts.Groups {
		g := &n.opts.Groups[i]
		match := false
		switch g.Filter {
		case imapserver.NotifyInboxes:
			match = sameMailbox(name, "INBOX")
		case imapserver.NotifyPersonal:
			match = true
		case imapserver.NotifySubscribed:
			match = subscribed
		case imapserver.NotifyMailboxes:
			match = slices.ContainsFunc(g.Mailboxes, func(m string) bool { return sameMailbox(m, name) })
		case imapserver.NotifySubtree:
			match = slices.ContainsFunc(g.Mailboxes, func(m string) bool {
				return sameMailbox(m, name) || strings.HasPrefix(inboxCase(name), inboxCase(m)+string(delim))
			})
		}
		if match {
			events = append(events, g.Events...)
		}
	}
	return events
}

// watched lists the mailboxes (other than the selected one) with message events asked for.
func (n *notifyState) watched(s *session, infos []maildir.MailboxInfo) []string {
	var names []string
	for _, mi := range infos {
		if s.sel != nil && sameMailbox(mi.Name, s.sel.entry.name) {
			continue
		}
		for _, e := range n.eventsOf(mi.Name, mi.Subscribed) {
			if e == imapserver.NotifyMessageNew || e == imapserver.NotifyMessageExpunge || e == imapserver.NotifyFlagChange {
				names = append(names, mi.Name)
				break
			}
		}
	}
	return names
}

// notifyItems are the STATUS items reported for a mailbox's events: MessageNew when messages
// arrived (MESSAGES UIDNEXT UIDVALIDITY), MessageExpunge when some left (MESSAGES), FlagChange
// when its modseq moved (UIDVALIDITY HIGHESTMODSEQ).
func notifyItems(events []string, arrived, left, flags bool) *imap.StatusOptions {
	o := &imap.StatusOptions{}
	for _, e := range events {
		switch {
		case e == imapserver.NotifyMessageNew && arrived:
			o.NumMessages, o.UIDNext, o.UIDValidity = true, true, true
		case e == imapserver.NotifyMessageExpunge && left:
			o.NumMessages = true
		case e == imapserver.NotifyFlagChange && flags:
			o.UIDValidity, o.HighestModSeq = true, true
		}
	}
	return o
}

func emptyItems(o *imap.StatusOptions) bool { return *o == imap.StatusOptions{} }

// notifyCheck reports what changed in the watched mailboxes and the mailbox list since the last
// check; force skips the gap (IDLE's ticks).
func (s *session) notifyCheck(w *imapserver.UpdateWriter, force bool) error {
	s.notifyMu.Lock()
	n := s.notify
	s.notifyMu.Unlock()
	if n == nil || s.mail == nil {
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if !force && time.Since(n.checked) < notifyCommandGap {
		return nil
	}
	n.checked = time.Now()
	infos, err := s.mail.ListMailboxes()
	if err != nil {
		return nil // the next check tries again
	}
	if err := n.reportNames(w, infos); err != nil {
		return err
	}
	watched := n.watched(s, infos)
	still := make(map[string]bool, len(watched))
	for _, name := range watched {
		still[name] = true
	}
	for name := range n.boxes {
		if !still[name] {
			delete(n.boxes, name)
		}
	}
	subscribed := subscribedSet(infos)
	for _, name := range watched {
		st, err := s.status(name, &imap.StatusOptions{})
		if err != nil {
			continue // gone meanwhile, or unreadable: the next check tries again
		}
		now, before := snapOf(st), n.boxes[name]
		n.boxes[name] = now
		if before == (notifySnap{}) || now == before {
			continue // new to the watch (no report), or unchanged
		}
		arrived := now.uidNext != before.uidNext || now.uidValidity != before.uidValidity
		left := now.messages < before.messages || now.messages != before.messages && !arrived
		o := notifyItems(n.eventsOf(name, subscribed[name]), arrived, left, now.modSeq != before.modSeq)
		if emptyItems(o) {
			continue
		}
		if err := w.WriteMailboxStatus(st, o); err != nil {
			return err
		}
	}
	return nil
}

// reportNames sends MailboxName's and SubscriptionChange's LIST responses.
func (n *notifyState) reportNames(w *imapserver.UpdateWriter, infos []maildir.MailboxInfo) error {
	if n.names != nil {
		now := map[string]bool{}
		for _, mi := range infos {
			now[mi.Name] = true
			if !n.names[mi.Name] {
				if err := w.WriteMailboxList(&imap.ListData{Mailbox: mi.Name, Delim: delim, Attrs: []imap.MailboxAttr{}}); err != nil {
					return err
				}
			}
		}
		for _, name := range sortedKeys(n.names) {
			if !now[name] {
				if err := w.WriteMailboxList(&imap.ListData{Mailbox: name, Delim: delim, Attrs: []imap.MailboxAttr{imap.MailboxAttrNonExistent}}); err != nil {
					return err
				}
			}
		}
		n.names = now
	}
	if n.subs != nil {
		now := subscribedSet(infos)
		for _, mi := range infos {
			if now[mi.Name] && !n.subs[mi.Name] {
				if err := w.WriteMailboxList(&imap.ListData{Mailbox: mi.Name, Delim: delim, Attrs: []imap.MailboxAttr{imap.MailboxAttrSubscribed}}); err != nil {
					return err
				}
			}
		}
		for _, name := range sortedKeys(n.subs) {
			if !now[name] {
				if err := w.WriteMailboxList(&imap.ListData{Mailbox: name, Delim: delim, Attrs: []imap.MailboxAttr{}}); err != nil {
					return err
				}
			}
		}
		n.subs = now
	}
	return nil
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// notifyPoll is Poll with NOTIFY: the watched mailboxes, then the selected one, then the FETCH
// of new messages that MessageNew's fetch attributes ask for.
func (s *session) notifyPoll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	if err := s.notifyCheck(w, false); err != nil {
		return err
	}
	if s.sel == nil {
		return nil
	}
	g, seen := s.notifyFetch() // before the poll: what it brings is new
	if err := s.poll(s.sel, w, allowExpunge); err != nil || g == nil {
		return err
	}
	last := s.sel.lastUID()
	if last <= seen {
		return nil
	}
	s.notifyMu.Lock()
	if s.notify != nil {
		s.notify.fetchedUID = last
	}
	s.notifyMu.Unlock()
	opts := *g.Fetch
	opts.UID = true
	var set imap.UIDSet
	set.AddRange(imap.UID(seen+1), imap.UID(last))
	return s.fetch(w.NotifyFetchWriter(g), set, &opts, false)
}

// notifyFetch returns the SELECTED group with MessageNew fetch attributes, if any, and the last
// UID of the selected mailbox that needs no FETCH: the messages there when it was selected or
// NOTIFY was set, and those fetched since.
func (s *session) notifyFetch() (*imapserver.NotifyGroup, uint32) {
	s.notifyMu.Lock()
	defer s.notifyMu.Unlock()
	n := s.notify
	if n == nil {
		return nil, 0
	}
	for i := range n.opts.Groups {
		if g := &n.opts.Groups[i]; g.Fetch != nil {
			if n.fetchSel != s.sel {
				n.fetchSel, n.fetchedUID = s.sel, s.sel.lastUID()
			}
			return g, n.fetchedUID
		}
	}
	return nil, 0
}

// lastUID is the highest UID the selection shows.
func (sel *selection) lastUID() uint32 {
	var uid uint32
	sel.mbox.View(func(msgs []maildir.Message) {
		if len(msgs) > 0 {
			uid = msgs[len(msgs)-1].UID
		}
	})
	return uid
}

// notifyDuringIdle checks the watched mailboxes every notifyIdleGap while IDLE lasts; the returned
// function stops it.
func (s *session) notifyDuringIdle(w *imapserver.UpdateWriter) (stop func()) {
	s.notifyMu.Lock()
	on := s.notify != nil
	s.notifyMu.Unlock()
	if !on {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(notifyIdleGap)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if s.notifyCheck(w, true) != nil {
					return
				}
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}
