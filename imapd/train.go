package imapd

import (
	"cmp"
	"context"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/emersion/go-imap/v2"

	"postie/maildir"
)

// Trainer learns from what users do with their mail: Postie's junk filter and rspamd (wired in
// cmd/postie). Each message in msgs is the whole stored file and may be read more than once (take a
// fresh io.NewSectionReader over it for each reading). ctx ends when the server shuts down.
type Trainer interface {
	Train(ctx context.Context, mail *maildir.User, spam bool, msgs ...*io.SectionReader) error
}

// The signals (issue 10's junk filter), decided when the command has succeeded and carried out later:
//
//   - a message moved, copied or appended into Junk (the folder with the \Junk special use, else the
//     one named "Junk", and every folder under it) trains spam, unless it came from Junk;
//   - a message moved or copied out of Junk into any folder but Trash (and those under it) trains
//     ham, un-training an earlier spam verdict: clients without MOVE move by COPY and EXPUNGE, and
//     Junk→Trash only says that the user throws it away;
//   - a STORE (or APPEND) that gives a message $Junk (Thunderbird's keyword; also Junk, as Apple Mail
//     and old Thunderbirds set it) trains spam, $NotJunk (also NotJunk, NonJunk) trains ham, when
//     the message did not have that keyword yet. A request naming both kinds says nothing.
//
// Whether a COPY, MOVE or APPEND trains is decided when the command has succeeded, from the
// folders' roles (maildir.Roles), which are kept per user and read again only when the user's
// folder directory has changed (trainRoles). A command that trains queues one job holding its
// messages as UID ranges, at most maxTrainMessages of them; training runs on one goroutine per
// server behind a bounded queue, which reads the messages trainBatch at a time. When the queue is
// full the training is dropped (one log line per run of drops). The messages are read from their
// files in the folder they reached; one moved again before its turn is skipped (the later move
// trains it).

var (
	spamKeywords = []string{"$Junk", "Junk"}
	hamKeywords  = []string{"$NotJunk", "NotJunk", "NonJunk"}
)

// The special uses (RFC 6154) whose folders training looks at.
const (
	junkUse  = string(imap.MailboxAttrJunk)
	trashUse = string(imap.MailboxAttrTrash)
)

const (
	defaultTrainQueue = 1024  // jobs (commands)
	trainBatch        = 64    // messages per Train call (and files open at once)
	maxTrainMessages  = 10000 // messages one command trains; the rest are not trained
	maxRolesCached    = 4096  // users whose folder roles are kept
)

// trainJob is what one command teaches: messages of one folder, as UID ranges, spam or ham.
type trainJob struct {
	user   string // the login address, for the log
	mail   *maildir.User
	mbox   *maildir.Mailbox
	ranges []uidRange
	spam   bool
}

// uidRange is the UIDs lo to hi, both included.
type uidRange struct{ lo, hi uint32 }

// toRanges packs uids (in any order) into ranges, keeping at most maxTrainMessages of them; cut
// says whether some were left out.
func toRanges(uids []uint32) (ranges []uidRange, cut bool) {
	if len(uids) > maxTrainMessages {
		uids, cut = uids[:maxTrainMessages], true
	}
	sorted := slices.Clone(uids)
	slices.Sort(sorted)
	for _, uid := range slices.Compact(sorted) {
		if n := len(ranges); n > 0 && ranges[n-1].hi+1 == uid {
			ranges[n-1].hi = uid
			continue
		}
		ranges = append(ranges, uidRange{uid, uid})
	}
	return ranges, cut
}

// trainQueue runs the training of one server.
type trainQueue struct {
	t    Trainer
	log  *slog.Logger
	jobs chan trainJob
	done chan struct{}
	// readRoles is maildir.User.Roles; tests count the calls.
	readRoles func(*maildir.User) (maildir.Roles, error)

	mu       sync.Mutex
	dropping bool // the last job offered was dropped
	roles    map[string]cachedRoles
}

// cachedRoles are a user's folder roles as read when the user's directory had the stamp dir.
type cachedRoles struct {
	roles maildir.Roles
	dir   dirStamp
}

// dirStamp identifies a state of a directory: creating, deleting or renaming a folder, or
// rewriting the special-use file, changes its mtime. An mtime younger than rolesSlack when read
// is not trusted (another change may follow within the same clock tick).
type dirStamp struct {
	mtime time.Time
	ino   uint64
}

const rolesSlack = 2 * time.Second

// newTrainQueue starts the worker, which stops when ctx ends; nil when there is no Trainer.
func newTrainQueue(ctx context.Context, t Trainer, size int, log *slog.Logger) *trainQueue {
	if t == nil {
		return nil
	}
	if size <= 0 {
		size = defaultTrainQueue
	}
	q := &trainQueue{t: t, log: log, jobs: make(chan trainJob, size), done: make(chan struct{}),
		readRoles: (*maildir.User).Roles, roles: make(map[string]cachedRoles)}
	go q.run(ctx)
	return q
}

func (q *trainQueue) run(ctx context.Context) {
	defer close(q.done)
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-q.jobs:
			q.train(ctx, j)
		}
	}
}

// wait returns when the worker has stopped (after its own ctx ended), or when ctx ends first.
func (q *trainQueue) wait(ctx context.Context) {
	if q == nil {
		return
	}
	select {
	case <-q.done:
	case <-ctx.Done():
	}
}

// add queues j without ever blocking; a full queue drops it.
func (q *trainQueue) add(j trainJob) {
	if q == nil || len(j.ranges) == 0 {
		return
	}
	select {
	case q.jobs <- j:
		q.mu.Lock()
		q.dropping = false
		q.mu.Unlock()
	default:
		q.mu.Lock()
		first := !q.dropping
		q.dropping = true
		q.mu.Unlock()
		if first {
			q.log.Warn("imap: training queue full; training dropped until it drains",
				"user", j.user, "mailbox", j.mbox.Name(), "queue", cap(q.jobs))
		}
	}
}

// queue queues the training of uids in mbox for the session's user.
func (s *session) queueTraining(mbox *maildir.Mailbox, uids []uint32, spam bool) {
	ranges, cut := toRanges(uids)
	if cut {
		s.srv.log.Warn("imap: training only the first messages of a large command",
			"user", s.user.Address, "mailbox", mbox.Name(), "count", len(uids), "trained", maxTrainMessages)
	}
	s.srv.train.add(trainJob{user: s.user.Address, mail: s.mail, mbox: mbox, ranges: ranges, spam: spam})
}

// userRoles returns the roles of mail's folders, read again only when its directory changed.
func (q *trainQueue) userRoles(mail *maildir.User) (maildir.Roles, error) {
	st, err := stampDir(mail.Dir())
	if err != nil {
		return maildir.Roles{}, err
	}
	q.mu.Lock()
	c, ok := q.roles[mail.Dir()]
	q.mu.Unlock()
	if ok && c.dir == st {
		return c.roles, nil
	}
	roles, err := q.readRoles(mail)
	if err != nil {
		return maildir.Roles{}, err
	}
	if time.Since(st.mtime) >= rolesSlack {
		q.mu.Lock()
		if len(q.roles) >= maxRolesCached {
			clear(q.roles)
		}
		q.roles[mail.Dir()] = cachedRoles{roles: roles, dir: st}
		q.mu.Unlock()
	}
	return roles, nil
}

func stampDir(dir string) (dirStamp, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return dirStamp{}, err
	}
	st := dirStamp{mtime: fi.ModTime()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = uint64(sys.Ino)
	}
	return st, nil
}

// train makes the Train calls of j, trainBatch messages at a time, with the messages still in
// their folder.
func (q *trainQueue) train(ctx context.Context, j trainJob) {
	batch := make([]uint32, 0, trainBatch)
	for _, r := range j.ranges {
		for uid := r.lo; ; uid++ {
			batch = append(batch, uid)
			if len(batch) == trainBatch {
				q.trainBatch(ctx, j, batch)
				batch = batch[:0]
			}
			if uid == r.hi {
				break
			}
		}
	}
	if len(batch) > 0 {
		q.trainBatch(ctx, j, batch)
	}
}

// trainBatch makes one Train call.
func (q *trainQueue) trainBatch(ctx context.Context, j trainJob, uids []uint32) {
	if ctx.Err() != nil {
		return
	}
	msgs := make([]*io.SectionReader, 0, len(uids))
	for _, uid := range uids {
		f, err := j.mbox.OpenMessage(uid)
		if err != nil {
			continue // moved on or expunged since: its later fate trains it, if anything
		}
		defer f.Close()
		n, err := f.Size()
		if err != nil {
			continue
		}
		msgs = append(msgs, io.NewSectionReader(f, 0, n))
	}
	if len(msgs) == 0 {
		return
	}
	if err := q.t.Train(ctx, j.mail, j.spam, msgs...); err != nil && ctx.Err() == nil {
		q.log.Warn("imap: training failed", "user", j.user, "mailbox", j.mbox.Name(), "spam", j.spam, "err", err)
	}
}

// roles returns the session user's folder roles; ok is false (and the failure logged) when they
// cannot be read.
func (s *session) roles() (maildir.Roles, bool) {
	k, err := s.srv.train.userRoles(s.mail)
	if err != nil {
		s.srv.log.Warn("imap: training: list folders", "user", s.user.Address, "err", err)
		return maildir.Roles{}, false
	}
	return k, true
}

// trainTransfer queues what a COPY or MOVE from src into dst teaches; dstUIDs are the messages in
// dst.
func (s *session) trainTransfer(src, dst *maildir.Mailbox, dstUIDs []uint32) {
	if s.srv.train == nil || len(dstUIDs) == 0 {
		return
	}
	k, ok := s.roles()
	if !ok {
		return
	}
	from, to := k.Has(src.Name(), junkUse), k.Has(dst.Name(), junkUse)
	switch {
	case to && !from:
		s.queueTraining(dst, dstUIDs, true)
	case from && !to && !k.Has(dst.Name(), trashUse):
		s.queueTraining(dst, dstUIDs, false)
	}
}

// trainAppend queues what an APPEND of uid into dst with flags teaches.
func (s *session) trainAppend(dst *maildir.Mailbox, uid uint32, flags []string) {
	s.trainAppends(dst, []uint32{uid}, [][]string{flags})
}

// trainAppends queues what one APPEND command (MULTIAPPEND: several messages) of uids into dst,
// uids[i] with flags[i], teaches: at most one spam job and one ham job, the roles read once.
func (s *session) trainAppends(dst *maildir.Mailbox, uids []uint32, flags [][]string) {
	if s.srv.train == nil {
		return
	}
	var spam, ham []uint32
	inJunk, known := false, false
	for i, uid := range uids {
		switch sp, hm := junkKeywords(flags[i]); {
		case sp && hm:
		case sp:
			spam = append(spam, uid)
		case hm:
			ham = append(ham, uid)
		default:
			if !known {
				k, ok := s.roles()
				inJunk, known = ok && k.Has(dst.Name(), junkUse), true
			}
			if inJunk {
				spam = append(spam, uid)
			}
		}
	}
	if len(spam) > 0 {
		s.queueTraining(dst, spam, true)
	}
	if len(ham) > 0 {
		s.queueTraining(dst, ham, false)
	}
}

// junkKeywords reports whether names hold a spam keyword and a ham keyword.
func junkKeywords(names []string) (spam, ham bool) {
	for _, n := range names {
		spam = spam || slices.ContainsFunc(spamKeywords, func(k string) bool { return strings.EqualFold(k, n) })
		ham = ham || slices.ContainsFunc(hamKeywords, func(k string) bool { return strings.EqualFold(k, n) })
	}
	return spam, ham
}

// storeTraining is what a STORE that sets a junk keyword teaches: prepared before the change
// (which messages had the keyword), queued after it.
type storeTraining struct {
	bit  maildir.Flags
	spam bool
	had  map[uint32]bool
}

// prepareStoreTraining returns nil unless the STORE adds or sets exactly one kind of junk keyword.
func (s *session) prepareStoreTraining(sel *selection, op imap.StoreFlagsOp, names []string, uids []uint32) *storeTraining {
	if s.srv.train == nil || op == imap.StoreFlagsDel {
		return nil
	}
	spam, ham := junkKeywords(names)
	if spam == ham {
		return nil
	}
	kws := hamKeywords
	if spam {
		kws = spamKeywords
	}
	var named []string
	for _, n := range names {
		if slices.ContainsFunc(kws, func(k string) bool { return strings.EqualFold(k, n) }) {
			named = append(named, n)
		}
	}
	bit, err := sel.mbox.LookupFlags(named) // defined by the STORE's own ParseFlags already
	if err != nil || bit == 0 {
		return nil
	}
	st := &storeTraining{bit: bit, spam: spam, had: make(map[uint32]bool)}
	sel.mbox.View(func(msgs []maildir.Message) {
		for _, uid := range uids {
			i, ok := slices.BinarySearchFunc(msgs, uid, func(m maildir.Message, u uint32) int { return cmp.Compare(m.UID, u) })
			if ok && msgs[i].Flags&bit != 0 {
				st.had[uid] = true
			}
		}
	})
	return st
}

// queue trains the messages that gained the keyword.
func (st *storeTraining) queue(s *session, mbox *maildir.Mailbox, changed []maildir.Message) {
	if st == nil {
		return
	}
	var uids []uint32
	for _, m := range changed {
		if m.Flags&st.bit != 0 && !st.had[m.UID] {
			uids = append(uids, m.UID)
		}
	}
	if len(uids) > 0 {
		s.queueTraining(mbox, uids, st.spam)
	}
}
