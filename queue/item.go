package queue

import (
	"container/heap"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"postie/envelope"
)

// item is a queued message in memory. Its fields are guarded by Queue.mu,
// except fileMu and written. Lock order: fileMu, then Queue.mu.
type item struct {
	st      state
	groups  map[string]*sched // recipient domains with pending recipients
	notice  sched             // handing the pending DSN (bounce or delay notice) to the Bouncer
	running int               // tasks in flight
	deleted bool              // removed from the spool; tasks in flight just end

	version        uint64     // bumped at each snapshot, under Queue.mu
	fileMu         sync.Mutex // serialises state file writes and the removal
	written        uint64     // the version on disk, under fileMu
	savedDelivered []string   // the recipients delivered in that version, under fileMu and Queue.mu
}

// sched is the schedule of one unit of work: a domain's attempt or a DSN.
type sched struct {
	next    time.Time
	gen     uint64 // bumped at each (re)scheduling; older heap entries are stale
	running bool
}

// unit is a heap entry: some work on an item due at a time.
type unit struct {
	at  time.Time
	seq uint64 // FIFO among equal times
	it  *item
	dom string // recipient domain; "" for the item's DSN
	gen uint64
}

type unitHeap []unit

func (h unitHeap) Len() int { return len(h) }
func (h unitHeap) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].seq < h[j].seq
}
func (h unitHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *unitHeap) Push(x any)   { *h = append(*h, x.(unit)) }
func (h *unitHeap) Pop() any {
	old := *h
	u := old[len(old)-1]
	old[len(old)-1] = unit{}
	*h = old[:len(old)-1]
	return u
}

// anyRcpt reports whether some recipient satisfies want.
func (it *item) anyRcpt(want func(*RcptState) bool) bool {
	for i := range it.st.Rcpts {
		if want(&it.st.Rcpts[i]) {
			return true
		}
	}
	return false
}

// finished reports whether every recipient is delivered, bounced or dropped.
func (it *item) finished() bool {
	for i := range it.st.Rcpts {
		if !it.st.Rcpts[i].done() {
			return false
		}
	}
	return true
}

// pendingIn returns the pending recipients of a domain, by index and address.
func (it *item) pendingIn(dom string) (idx []int, addrs []string) {
	for i := range it.st.Rcpts {
		r := &it.st.Rcpts[i]
		if r.Status == StatusPending && rcptDomain(r.Addr) == dom {
			idx = append(idx, i)
			addrs = append(addrs, r.Addr)
		}
	}
	return idx, addrs
}

// failRcpt marks recipient i as failed for good: it waits for its DSN, or,
// for a message from the null sender (which must never be answered, RFC
// 5321 §4.5.5) or a recipient whose NOTIFY leaves out FAILURE (RFC 3461
// §4.1: NEVER, or only SUCCESS or DELAY), it is dropped.
func (st *state) failRcpt(i int, dsnStatus, reason string) {
	r := &st.Rcpts[i]
	r.NextAttempt = time.Time{}
	if dsnStatus != "" {
		r.DSNStatus = dsnStatus
	}
	r.Reason = reason
	if st.From == "" || !r.Notify.Failure() {
		r.Status = StatusDropped
	} else {
		r.Status = StatusFailed
	}
}

const reasonCancelled = "delivery cancelled by the mail system administrator"

// cancel fails every pending recipient that is not in one of the busy
// domains, for Bounce.
func (st *state) cancel(busy func(dom string) bool) {
	st.Cancelled = true
	for i := range st.Rcpts {
		if st.Rcpts[i].Status == StatusPending && !busy(rcptDomain(st.Rcpts[i].Addr)) {
			st.failRcpt(i, "5.0.0", reasonCancelled)
		}
	}
}

// addLocked puts a loaded or new message into memory and schedules it.
func (q *Queue) addLocked(st *state) *item {
	it := &item{st: *st, groups: make(map[string]*sched)}
	it.savedDelivered = it.delivered()
	if it.st.Cancelled {
		it.st.cancel(func(string) bool { return false })
	}
	for i := range it.st.Rcpts {
		r := &it.st.Rcpts[i]
		if r.Status != StatusPending {
			continue
		}
		dom := rcptDomain(r.Addr)
		if s := it.groups[dom]; s == nil {
			it.groups[dom] = &sched{next: r.NextAttempt}
		} else if r.NextAttempt.Before(s.next) {
			s.next = r.NextAttempt
		}
	}
	q.items[it.st.ID] = it
	for dom, s := range it.groups {
		q.scheduleLocked(it, dom, s, s.next)
	}
	q.scheduleNoticeLocked(it)
	return it
}

func (q *Queue) scheduleLocked(it *item, dom string, s *sched, at time.Time) {
	s.next = at
	s.gen++
	q.seq++
	heap.Push(&q.units, unit{at: at, seq: q.seq, it: it, dom: dom, gen: s.gen})
}

// scheduleNoticeLocked (re)schedules the item's DSN, if it needs one.
func (q *Queue) scheduleNoticeLocked(it *item) {
	if it.notice.running {
		return // its end reschedules
	}
	at, ok := q.noticeDueLocked(it)
	if !ok {
		it.notice.gen++ // nothing to send: invalidate what is in the heap
		return
	}
	q.scheduleLocked(it, "", &it.notice, at)
}

// noticeDueLocked says when the item's next DSN is due: a bounce (or a
// success notice) once recipients have failed (or been delivered with
// NOTIFY=SUCCESS, see StatusNotify) and no attempt of the message is running (so
// that recipients failing together share one DSN), a delay notice
// DelayWarning after arrival. NoticeNext holds back a hand-over that
// failed.
func (q *Queue) noticeDueLocked(it *item) (time.Time, bool) {
	if it.owesNotice() {
		for _, s := range it.groups {
			if s.running {
				return time.Time{}, false // its end reschedules
			}
		}
		return it.st.NoticeNext, true
	}
	if q.opts.DelayWarning > 0 && !it.st.DelayNotified && it.st.From != "" && it.wantsDelayNotice() {
		at := it.st.Created.Add(q.opts.DelayWarning)
		if it.st.NoticeNext.After(at) {
			at = it.st.NoticeNext
		}
		return at, true
	}
	return time.Time{}, false
}

// schedFor returns the schedule a heap entry stands for, or nil if the
// entry is stale (rescheduled, running, or its work is gone).
func (q *Queue) schedFor(u unit) *sched {
	if u.it.deleted {
		return nil
	}
	s := &u.it.notice
	if u.dom != "" {
		s = u.it.groups[u.dom]
	}
	if s == nil || s.gen != u.gen || s.running {
		return nil
	}
	return s
}

// backoff is the wait before retry number n (n ≥ 1): MinRetry doubled at
// each attempt up to MaxRetry, less up to a tenth at random so that
// messages that failed together do not come back together.
func (q *Queue) backoff(n int) time.Duration {
	d := q.opts.MinRetry
	for i := 1; i < n && d < q.opts.MaxRetry; i++ {
		d *= 2
	}
	d = min(d, q.opts.MaxRetry)
	if j := d / 10; j > 0 {
		d -= rand.N(j)
	}
	return d
}

// snapshot is an item's state as of one version, for persist.
type snapshot struct {
	data      []byte
	version   uint64
	delivered []string // the recipients delivered in it
}

// snapshotLocked encodes the item's state for persist.
func (q *Queue) snapshotLocked(it *item) snapshot {
	it.version++
	return snapshot{encodeState(&it.st), it.version, it.delivered()}
}

// delivered lists the recipients with status delivered.
func (it *item) delivered() []string {
	var out []string
	for _, r := range it.st.Rcpts {
		if r.Status == StatusDelivered {
			out = append(out, r.Addr)
		}
	}
	return out
}

// persist writes a snapshot to the state file, unless a newer one is
// already there or the item was removed. If the write fails, the memory
// stays right and the disk behind: the item is marked unsaved, and the
// scheduler writes it again every pollEvery until it succeeds (see
// saveUnsaved). Nothing is lost meanwhile; only a restart before then
// repeats the work done since the last save: the error comes with atRisk,
// the recipients delivered since, whom that restart would deliver again.
func (q *Queue) persist(it *item, snap snapshot) (atRisk []string, err error) {
	it.fileMu.Lock()
	defer it.fileMu.Unlock()
	q.mu.Lock()
	deleted := it.deleted
	q.mu.Unlock()
	if deleted || it.written >= snap.version {
		return nil, nil
	}
	err = q.fs.Replace(filepath.Join(q.dir, it.st.ID+stateExt), snap.data, 0o600)
	if err == nil {
		err = q.dirSync.Sync()
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if err != nil {
		q.unsaved[it] = true
		for _, r := range snap.delivered {
			if !slices.Contains(it.savedDelivered, r) {
				atRisk = append(atRisk, r)
			}
		}
		return atRisk, err
	}
	it.written, it.savedDelivered = snap.version, snap.delivered
	if q.unsaved[it] {
		delete(q.unsaved, it)
		q.log.Info("queue: state saved after an earlier failure", "id", it.st.ID)
	}
	return nil, nil
}

// saveUnsaved writes again the state of every item whose last write
// failed. With final (the scheduler is stopping), what still fails is
// logged with the recipients the next start will deliver again.
func (q *Queue) saveUnsaved(final bool) {
	q.mu.Lock()
	items := make([]*item, 0, len(q.unsaved))
	for it := range q.unsaved {
		items = append(items, it)
	}
	q.mu.Unlock()
	for _, it := range items {
		q.mu.Lock()
		if it.deleted {
			delete(q.unsaved, it)
			q.mu.Unlock()
			continue
		}
		snap := q.snapshotLocked(it)
		q.mu.Unlock()
		// Retried quietly: settle logged the failure.
		if atRisk, err := q.persist(it, snap); final && err != nil {
			q.log.Error("queue: stopping with a state file behind; the next start delivers these again",
				"id", it.st.ID, "rcpts", atRisk, "err", err)
		}
	}
}

// remove takes the item out of memory and off the disk.
func (q *Queue) remove(it *item) {
	it.fileMu.Lock()
	q.mu.Lock()
	if it.deleted {
		q.mu.Unlock()
		it.fileMu.Unlock()
		return
	}
	it.deleted = true
	delete(q.unsaved, it)
	if q.items[it.st.ID] == it {
		delete(q.items, it.st.ID)
	}
	// The state file goes first and under mu, so rescan never sees a
	// message that is half removed.
	err := q.fs.Remove(filepath.Join(q.dir, it.st.ID+stateExt))
	q.mu.Unlock()
	it.fileMu.Unlock()
	if err == nil {
		err = q.fs.Remove(filepath.Join(q.dir, it.st.ID+msgExt))
	}
	if err == nil {
		err = q.dirSync.Sync()
	}
	if err != nil {
		q.log.Error("queue: removing message", "id", it.st.ID, "err", err)
	}
}

// markFailed records err as recipient i's final outcome from a delivery
// made before the message was queued (see Queue.EnqueueFailed).
func (st *state) markFailed(i int, err *envelope.Error, now time.Time) {
	r := &st.Rcpts[i]
	r.Attempts, r.LastAttempt, r.LastError = 1, now, err.Error()
	r.Reply, r.DSNStatus = replyLine(err), dsnStatus(err)
	st.failRcpt(i, "", "the mailbox could not take the message when it arrived")
}

// transfer is the envelope of an attempt for the recipients rcpts, at
// indexes idx: the message's and the recipients' parameters with them.
// It reads only fields that never change after Enqueue.
func (it *item) transfer(rcpts []string, idx []int) *envelope.Transfer {
	t := &envelope.Transfer{From: it.st.From, To: rcpts, Params: it.st.params()}
	for k, i := range idx {
		r := &it.st.Rcpts[i]
		if r.Notify == 0 && r.ORcpt == "" {
			continue
		}
		if t.RcptParams == nil {
			t.RcptParams = make([]envelope.RcptParams, len(rcpts))
		}
		t.RcptParams[k] = r.params()
	}
	return t
}

// params are the message's parameters as queued.
func (st *state) params() envelope.Params {
	p := envelope.Params{RequireTLS: st.RequireTLS, EnvID: st.DSNEnvID}
	if st.Ret == envelope.RetFull || st.Ret == envelope.RetHdrs {
		p.Ret = st.Ret // anything else (a hand-edited file) would fail every MAIL
	}
	return p
}

// params are the recipient's DSN parameters as queued.
func (r *RcptState) params() envelope.RcptParams {
	p := envelope.RcptParams{Notify: r.Notify}
	if typ, addr, ok := strings.Cut(r.ORcpt, ";"); ok {
		p.ORcptType, p.ORcpt = typ, addr
	}
	return p
}

// noteRelayed marks the recipients of an attempt that a host without DSN
// support accepted, before finishAttempt records and saves the outcome.
func (q *Queue) noteRelayed(it *item, idx []int, t *envelope.Transfer, errs []error) {
	if len(t.NoDSN) != len(idx) || len(errs) != len(idx) {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	for k, i := range idx {
		if r := &it.st.Rcpts[i]; t.NoDSN[k] && errs[k] == nil && r.Status == StatusPending {
			r.Relayed = true
		}
	}
}

// owesNotice reports whether the recipient waits for the DSN that is not
// a delay notice: a bounce (StatusFailed) or a success notice
// (StatusNotify).
func (r *RcptState) owesNotice() bool {
	return r.Status == StatusFailed || r.Status == StatusNotify
}

// owesNotice reports whether some recipient waits for a bounce or a
// success notice.
func (it *item) owesNotice() bool { return it.anyRcpt((*RcptState).owesNotice) }

// wantsDelay reports whether a delay notice would tell the sender about
// this recipient: pending, and NOTIFY (absent, or with DELAY) asks for it.
func (r *RcptState) wantsDelay() bool {
	return r.Status == StatusPending && r.Notify.Delay()
}

// wantsDelayNotice reports whether some recipient wants a delay notice.
func (it *item) wantsDelayNotice() bool { return it.anyRcpt((*RcptState).wantsDelay) }

// deliveredStatus is the status of a recipient just delivered: delivered,
// or StatusNotify when its NOTIFY asks for a success notice and nobody
// further on will send it (the host that took it has no DSN support:
// Relayed; or the copy was stored here). A null sender gets none.
func (st *state) deliveredStatus(r *RcptState, here bool) string {
	if st.From != "" && r.Notify.Success() && (here || r.Relayed) {
		return StatusNotify
	}
	return StatusDelivered
}

// markDelivered records recipient i as delivered before the message was
// queued (a local delivery, see Queue.EnqueueFailed): StatusNotify if its
// NOTIFY asks for a success notice, else done.
func (st *state) markDelivered(i int, now time.Time) {
	r := &st.Rcpts[i]
	r.Attempts, r.LastAttempt = 1, now
	r.Status = st.deliveredStatus(r, true)
}
