package imapd

import (
	"cmp"
	"context"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"

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
// Training runs on one goroutine per server behind a bounded queue: a command only queues what it
// did (the folders' roles are read, and the messages, on the worker), and when the queue is full the
// training is dropped (one log line per run of drops). The messages are read from their files in
// the folder they reached; one moved again before its turn is skipped (the later move trains it).

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
	defaultTrainQueue = 1024 // jobs
	trainBatch        = 64   // messages per job (and files open at once)
)

// trainJob is one Train call to make: messages of one folder, by UID.
type trainJob struct {
	user string // the login address, for the log
	mail *maildir.User
	mbox *maildir.Mailbox
	uids []uint32
	spam bool
	// by, when set, decides from the user's folders whether (ok) the messages train, and how
	// (spam). It runs on the worker: reading the folder list costs a directory read, which the
	// command does not wait for.
	by func(maildir.Roles) (spam, ok bool)
}

// trainQueue runs the training of one server.
type trainQueue struct {
	t    Trainer
	log  *slog.Logger
	jobs chan trainJob
	done chan struct{}

	mu       sync.Mutex
	dropping bool // the last job offered was dropped
	dropped  int  // jobs dropped in the current run of drops
}

// newTrainQueue starts the worker, which stops when ctx ends; nil when there is no Trainer.
func newTrainQueue(ctx context.Context, t Trainer, size int, log *slog.Logger) *trainQueue {
	if t == nil {
		return nil
	}
	if size <= 0 {
		size = defaultTrainQueue
	}
	q := &trainQueue{t: t, log: log, jobs: make(chan trainJob, size), done: make(chan struct{})}
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

// add queues j, split into jobs of trainBatch messages, without ever blocking.
func (q *trainQueue) add(j trainJob) {
	if q == nil {
		return
	}
	uids := j.uids
	for batch := range slices.Chunk(uids, trainBatch) {
		j.uids = slices.Clone(batch)
		select {
		case q.jobs <- j:
			q.mu.Lock()
			q.dropping = false
			q.mu.Unlock()
		default:
			q.mu.Lock()
			first := !q.dropping
			if first {
				q.dropped = 0
			}
			q.dropping = true
			q.dropped++
			q.mu.Unlock()
			if first {
				q.log.Warn("imap: training queue full; training dropped until it drains",
					"user", j.user, "mailbox", j.mbox.Name(), "queue", cap(q.jobs))
			}
		}
	}
}

// train makes one Train call with the messages of j still in their folder.
func (q *trainQueue) train(ctx context.Context, j trainJob) {
	if j.by != nil {
		k, err := j.mail.Roles()
		if err != nil {
			q.log.Warn("imap: training: list folders", "user", j.user, "err", err)
			return
		}
		var ok bool
		if j.spam, ok = j.by(k); !ok {
			return
		}
	}
	msgs := make([]*io.SectionReader, 0, len(j.uids))
	for _, uid := range j.uids {
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

// trainTransfer queues what a COPY or MOVE from src into dst teaches; dstUIDs are the messages in
// dst.
func (s *session) trainTransfer(src, dst *maildir.Mailbox, dstUIDs []uint32) {
	if s.srv.train == nil || len(dstUIDs) == 0 {
		return
	}
	srcName, dstName := src.Name(), dst.Name()
	s.srv.train.add(trainJob{user: s.user.Address, mail: s.mail, mbox: dst, uids: dstUIDs,
		by: func(k maildir.Roles) (spam, ok bool) {
			from, to := k.Has(srcName, junkUse), k.Has(dstName, junkUse)
			switch {
			case to && !from:
				return true, true
			case from && !to && !k.Has(dstName, trashUse):
				return false, true
			}
			return false, false
		}})
}

// trainAppend queues what an APPEND of uid into dst with flags teaches.
func (s *session) trainAppend(dst *maildir.Mailbox, uid uint32, flags []string) {
	if s.srv.train == nil {
		return
	}
	j := trainJob{user: s.user.Address, mail: s.mail, mbox: dst, uids: []uint32{uid}}
	switch spam, ham := junkKeywords(flags); {
	case spam && ham:
		return
	case spam || ham:
		j.spam = spam
	default:
		dstName := dst.Name()
		j.by = func(k maildir.Roles) (bool, bool) { return true, k.Has(dstName, junkUse) }
	}
	s.srv.train.add(j)
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
		s.srv.train.add(trainJob{user: s.user.Address, mail: s.mail, mbox: mbox, uids: uids, spam: st.spam})
	}
}
