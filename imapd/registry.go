package imapd

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"postie/maildir"
)

// The registry keeps one entry per maildir.Mailbox this process serves: the go-imap MailboxTracker that
// gives every session its own view of sequence numbers, the header-field cache, the keyword names, and
// the timer that refreshes the mailbox while someone IDLEs on it. maildir tells the entry about every
// change (its Watch callback, under the mailbox lock), and the entry passes them to the tracker in the
// same order and in step with the message list, as go-imap requires: one QueueNumMessages per new
// message, expunges from the highest sequence number down.

const (
	idleRefresh    = time.Second            // how often a mailbox someone IDLEs on is re-read
	pollRefreshGap = 200 * time.Millisecond // at most this often per mailbox on ordinary commands
)

type registry struct {
	srv   *Server
	mu    sync.Mutex
	boxes map[*maildir.Mailbox]*mailboxEntry
}

func newRegistry(srv *Server) *registry {
	return &registry{srv: srv, boxes: make(map[*maildir.Mailbox]*mailboxEntry)}
}

// get returns the entry of m, creating it (tracker, watch) on first use.
// existing returns m's entry if some session has made one, nil otherwise.
func (r *registry) existing(m *maildir.Mailbox) *mailboxEntry {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.boxes[m]
}

func (r *registry) get(m *maildir.Mailbox) *mailboxEntry {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.boxes[m]; e != nil {
		return e
	}
	e := &mailboxEntry{reg: r, mbox: m, name: m.Name(), cache: r.srv.cache.newBox()}
	e.refreshKeywords()
	e.cancel = m.ViewAndWatch(func(msgs []maildir.Message) {
		e.count = uint32(len(msgs))
		e.tracker = imapserver.NewMailboxTracker(e.count)
	}, e.onChange)
	r.boxes[m] = e
	return e
}

// forget drops the entry of a mailbox that no longer exists.
func (r *registry) forget(e *mailboxEntry) {
	r.mu.Lock()
	if r.boxes[e.mbox] == e {
		delete(r.boxes, e.mbox)
	}
	r.mu.Unlock()
	e.cancel()
	e.cache.clear()
}

func (r *registry) close() {
	r.mu.Lock()
	boxes := r.boxes
	r.boxes = make(map[*maildir.Mailbox]*mailboxEntry)
	r.mu.Unlock()
	for _, e := range boxes {
		e.cancel()
		e.stopRefresher()
	}
}

// mailboxEntry is the shared, per-process state of one mailbox.
type mailboxEntry struct {
	reg     *registry
	mbox    *maildir.Mailbox
	name    string // for logs (the Mailbox cannot be asked inside callbacks)
	cancel  func()
	tracker *imapserver.MailboxTracker
	count   uint32 // messages as the tracker knows them (changed only under the mailbox lock)
	cache   *boxCache
	keys    keyCache    // sort and thread keys (sortkeys.go)
	index   indexHolder // the search index (searchindex.go)

	keywords atomic.Pointer[keywordTable]
	kwDirty  atomic.Bool

	lastRefresh atomic.Int64 // unix nanoseconds

	idleMu  sync.Mutex
	idlers  int
	stopIdl chan struct{}
}

// keywordTable names the keyword bits of a mailbox; read without locks inside Watch callbacks, where
// calling the Mailbox is forbidden.
type keywordTable struct {
	names   [maildir.MaxKeywords]string
	defined maildir.Flags
}

// refreshKeywords reads the mailbox's keyword names (outside the mailbox lock).
func (e *mailboxEntry) refreshKeywords() {
	t := &keywordTable{}
	for i := range maildir.MaxKeywords {
		bit := maildir.KeywordFlag(i)
		if names := e.mbox.FlagNames(bit); len(names) == 1 && isValidAtom(names[0]) {
			t.names[i] = names[0]
			t.defined |= bit
		}
	}
	e.keywords.Store(t)
}

// systemFlags are the stored system flags in FLAGS order.
var systemFlags = [...]struct {
	flag imap.Flag
	bit  maildir.Flags
}{
	{imap.FlagSeen, maildir.FlagSeen}, {imap.FlagAnswered, maildir.FlagAnswered},
	{imap.FlagFlagged, maildir.FlagFlagged}, {imap.FlagDeleted, maildir.FlagDeleted},
	{imap.FlagDraft, maildir.FlagDraft}, {imap.FlagForwarded, maildir.FlagForwarded},
}

// flagList names f.
func (e *mailboxEntry) flagList(f maildir.Flags) []imap.Flag {
	out := make([]imap.Flag, 0, 4)
	for _, s := range systemFlags {
		if f&s.bit != 0 {
			out = append(out, s.flag)
		}
	}
	kw := e.keywords.Load()
	for i := range maildir.MaxKeywords {
		if f&maildir.KeywordFlag(i) != 0 && kw.names[i] != "" {
			out = append(out, imap.Flag(kw.names[i]))
		}
	}
	return out
}

// knows reports whether every keyword bit of f has a name in the table.
func (e *mailboxEntry) knows(f maildir.Flags) bool {
	var kwBits maildir.Flags
	for i := range maildir.MaxKeywords {
		kwBits |= maildir.KeywordFlag(i)
	}
	return f&kwBits&^e.keywords.Load().defined == 0
}

// mailboxFlags is the FLAGS list: the system flags and every keyword.
func (e *mailboxEntry) mailboxFlags() []imap.Flag {
	out := make([]imap.Flag, 0, len(systemFlags)+4)
	for _, s := range systemFlags {
		out = append(out, s.flag)
	}
	kw := e.keywords.Load()
	for _, n := range kw.names {
		if n != "" {
			out = append(out, imap.Flag(n))
		}
	}
	return out
}

// resolveFlag maps a flag to its bit for SEARCH.
func (e *mailboxEntry) resolveFlag(f imap.Flag) (uint64, bool) {
	if strings.EqualFold(string(f), `\Recent`) {
		return flagRecent, true // set on a session's recent messages (recent.go)
	}
	for _, s := range systemFlags {
		if strings.EqualFold(string(f), string(s.flag)) {
			return uint64(s.bit), true
		}
	}
	kw := e.keywords.Load()
	for i, n := range kw.names {
		if n != "" && strings.EqualFold(n, string(f)) {
			return uint64(maildir.KeywordFlag(i)), true
		}
	}
	return 0, false
}

// onChange runs under the mailbox lock for every change: it must not call the Mailbox. It keeps the
// tracker in step and refuses numbers that would make the tracker panic (a store bug must not take
// the connection, or the process, down).
func (e *mailboxEntry) onChange(c maildir.Change) {
	log := e.reg.srv.log
	switch c.Kind {
	case maildir.Added:
		if c.Seq != e.count+1 {
			log.Error("imap: mailbox change out of step", "mailbox", e.mboxName(), "kind", "added", "seq", c.Seq, "count", e.count)
			if c.Seq <= e.count {
				return
			}
		}
		for n := e.count + 1; n <= c.Seq; n++ {
			e.tracker.QueueNumMessages(n)
		}
		e.count = c.Seq
	case maildir.Expunged:
		if c.Seq == 0 || c.Seq > e.count {
			log.Error("imap: mailbox change out of step", "mailbox", e.mboxName(), "kind", "expunged", "seq", c.Seq, "count", e.count)
			return
		}
		e.tracker.QueueExpungeUID(c.Seq, imap.UID(c.Message.UID))
		e.count--
		e.cache.drop(c.Message.UID)
	case maildir.FlagsChanged:
		if c.Seq == 0 || c.Seq > e.count {
			return
		}
		src, _ := c.Origin.(*imapserver.SessionTracker)
		e.tracker.QueueMessageFlagsModSeq(c.Seq, imap.UID(c.Message.UID), e.flagList(c.Message.Flags), c.Message.ModSeq, src)
	case maildir.KeywordsChanged:
		e.kwDirty.Store(true)
	}
}

func (e *mailboxEntry) mboxName() string { return e.name }

// sync brings the entry up to date before a command: keyword names that changed are read again and
// announced with a FLAGS update.
func (e *mailboxEntry) sync() {
	if e.kwDirty.Swap(false) {
		e.refreshKeywords()
		e.tracker.QueueMailboxFlags(e.mailboxFlags())
	}
}

// refresh re-reads the mailbox from disk unless that was done within gap.
func (e *mailboxEntry) refresh(gap time.Duration) error {
	now := time.Now().UnixNano()
	if last := e.lastRefresh.Load(); gap > 0 && now-last < int64(gap) {
		return nil
	}
	e.lastRefresh.Store(now)
	err := e.mbox.Refresh()
	if errors.Is(err, maildir.ErrNoSuchMailbox) {
		e.reg.forget(e)
	}
	return err
}

// startIdle counts an IDLE session; the first starts the refresher that makes mail written by other
// processes (postie deliver) appear within about a second.
func (e *mailboxEntry) startIdle() {
	e.idleMu.Lock()
	defer e.idleMu.Unlock()
	e.idlers++
	if e.idlers > 1 {
		return
	}
	stop := make(chan struct{})
	e.stopIdl = stop
	done := e.reg.srv.ctx.Done()
	go func() {
		t := time.NewTicker(idleRefresh)
		defer t.Stop()
		lastErr := "" // a failure is logged when it starts, not every second while it lasts
		for {
			select {
			case <-t.C:
				err := e.refresh(idleRefresh / 2)
				if err != nil && err.Error() != lastErr {
					e.reg.srv.log.Warn("imap: refresh", "mailbox", e.name, "err", err)
				}
				lastErr = ""
				if err != nil {
					lastErr = err.Error()
					if errors.Is(err, maildir.ErrNoSuchMailbox) {
						return
					}
				}
				e.sync()
			case <-stop:
				return
			case <-done:
				return
			}
		}
	}()
}

func (e *mailboxEntry) stopIdle() {
	e.idleMu.Lock()
	defer e.idleMu.Unlock()
	if e.idlers > 0 {
		e.idlers--
	}
	if e.idlers == 0 && e.stopIdl != nil {
		close(e.stopIdl)
		e.stopIdl = nil
	}
}

func (e *mailboxEntry) stopRefresher() {
	e.idleMu.Lock()
	defer e.idleMu.Unlock()
	if e.stopIdl != nil {
		close(e.stopIdl)
		e.stopIdl = nil
		e.idlers = 0
	}
}

// isValidAtom reports whether s can be written as a flag (RFC 3501 flag-keyword): a keyword read
// from disk that is not would make the library's encoder fail mid-response.
func isValidAtom(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			return false
		}
	}
	return true
}
