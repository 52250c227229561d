package queue

import (
	"bytes"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"time"

	"postie/envelope"
	"postie/safeio"
)

// Run is the scheduler: one goroutine that sleeps on a timer until the
// next unit of work is due (or a new message, a finished attempt, Flush or
// an admin request wakes it), then starts what is due within the
// concurrency limits. DSNs and delay notices go to bouncer (the router,
// which may queue through this Queue: hence it comes here and not through
// Options). If another process owns the spool, Run first waits up to
// ownerWait for it. Run returns nil when ctx is done, once the attempts in
// flight (whose context is ctx) have ended.
func (q *Queue) Run(ctx context.Context, bouncer Bouncer) error {
	if q.opts.Deliverer == nil || bouncer == nil {
		return errors.New("queue: run: a Deliverer and a Bouncer are required")
	}
	q.mu.Lock()
	if q.running {
		q.mu.Unlock()
		return errors.New("queue: run: already running")
	}
	q.running = true
	q.bouncer = bouncer
	q.mu.Unlock()
	defer func() {
		q.mu.Lock()
		q.running = false
		q.mu.Unlock()
	}()
	if err := q.waitOwner(ctx); err != nil || ctx.Err() != nil {
		return err
	}

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	poll := time.NewTicker(q.pollEvery)
	defer poll.Stop()
	lastRescan := time.Now()
	q.pollAdmin()
	for {
		if next := q.dispatch(ctx); next.IsZero() {
			timer.Stop()
		} else {
			timer.Reset(max(next.Sub(q.now()), 0))
		}
		select {
		case <-ctx.Done():
			q.tasks.Wait()
			q.saveUnsaved(true)
			return nil
		case <-q.wakeCh:
		case <-timer.C:
		case <-poll.C:
			q.saveUnsaved(false)
			q.pollAdmin()
			if time.Since(lastRescan) >= rescanInterval {
				q.rescan()
				lastRescan = time.Now()
			}
		}
	}
}

// waitOwner makes this Queue the spool's owner, waiting a while for
// another process to let go of it.
func (q *Queue) waitOwner(ctx context.Context) error {
	deadline := time.Now().Add(ownerWait)
	for {
		err := q.acquire()
		if err == nil {
			return nil
		}
		if !errors.Is(err, safeio.ErrLocked) {
			return fmt.Errorf("queue: run: %w", err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("queue: run: spool %s is in use by process %d", q.dir, ownerPID(q.dir))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// dispatch starts every unit that is due, within the limits, and returns
// when the next one falls due (zero: none, or only a finishing task can
// let more start).
func (q *Queue) dispatch(ctx context.Context) time.Time {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.now()
	q.releaseWaitingLocked()
	parkedNext := q.releaseParkedLocked(now)
	q.compactLocked()
	for len(q.units) > 0 {
		u := q.units[0]
		if u.at.After(now) {
			return earliest(u.at, parkedNext)
		}
		if q.inflight >= q.opts.MaxConcurrency {
			return parkedNext
		}
		heap.Pop(&q.units)
		s := q.schedFor(u)
		if s == nil {
			continue
		}
		if u.dom != "" && q.perDomain[u.dom] >= q.opts.MaxPerDomain {
			q.waiting[u.dom] = append(q.waiting[u.dom], u)
			continue
		}
		key, ok := q.admitLocked(u, now)
		if !ok {
			continue // parked until its destination has room
		}
		q.startLocked(ctx, u, s, key)
	}
	return parkedNext
}

// startLocked starts the unit's work; key is the destination the Throttle
// reserved an attempt at, "" if none yet.
func (q *Queue) startLocked(ctx context.Context, u unit, s *sched, key string) {
	it := u.it
	if u.dom == "" {
		job := q.noticeJobLocked(it)
		if job == nil {
			return
		}
		s.running = true
		it.running++
		q.inflight++
		q.tasks.Add(1)
		go q.runNotice(ctx, it, job)
		return
	}
	idx, addrs := it.pendingIn(u.dom)
	if len(idx) == 0 {
		delete(it.groups, u.dom)
		if key != "" {
			q.opts.Throttle.unreserve(key)
		}
		return
	}
	s.running = true
	it.running++
	q.inflight++
	q.perDomain[u.dom]++
	q.tasks.Add(1)
	go q.runAttempt(ctx, it, u.dom, key, idx, addrs)
}

// endTask ends a task whose item count (it.running) is already down:
// settle (which unlocks and saves the item's state) and only then free the
// concurrency slots, so that a queue with nothing in flight has every
// state file up to date.
func (q *Queue) endTask(it *item, dom string) {
	q.settle(it) // unlocks
	q.mu.Lock()
	q.inflight--
	if dom != "" {
		if q.perDomain[dom]--; q.perDomain[dom] <= 0 {
			delete(q.perDomain, dom)
		}
	}
	q.mu.Unlock()
}

// releaseWaitingLocked puts back into the heap as many units held back by
// MaxPerDomain as their domains now have free slots.
func (q *Queue) releaseWaitingLocked() {
	for dom, w := range q.waiting {
		free := q.opts.MaxPerDomain - q.perDomain[dom]
		for free > 0 && len(w) > 0 {
			u := w[0]
			w = w[1:]
			if q.schedFor(u) != nil {
				heap.Push(&q.units, u)
				free--
			}
		}
		if len(w) == 0 {
			delete(q.waiting, dom)
		} else {
			q.waiting[dom] = w
		}
	}
}

// compactLocked drops stale entries when they outnumber the live ones, so
// that repeated flushes or deletions do not grow the heap without bound.
func (q *Queue) compactLocked() {
	if len(q.units) < 2*q.liveUnits+1024 {
		return
	}
	live := q.units[:0]
	for _, u := range q.units {
		if q.schedFor(u) != nil {
			live = append(live, u)
		}
	}
	clear(q.units[len(live):])
	q.units = live
	q.liveUnits = len(live)
	heap.Init(&q.units)
}

func (q *Queue) runAttempt(ctx context.Context, it *item, dom, key string, idx []int, rcpts []string) {
	defer q.tasks.Done()
	defer q.wake()
	for range maxChain {
		var delivered bool
		if key, delivered = q.attempt(ctx, it, dom, key, idx, rcpts); !delivered {
			return
		}
		// The connection this left idle serves the domain's next message
		// at once, if the destination allows one (throttle_sched.go).
		var ok bool
		if it, idx, rcpts, ok = q.chainNext(ctx, key, dom); !ok {
			return
		}
	}
}

// attempt makes one attempt for the pending recipients idx of it in dom,
// reserved at destination key ("" if not yet known), and records its
// outcome. It returns the destination and whether any recipient was
// delivered.
func (q *Queue) attempt(ctx context.Context, it *item, dom, key string, idx []int, rcpts []string) (string, bool) {
	thr := q.opts.Throttle
	if thr != nil && key == "" {
		// First contact with the domain: find its destination, then ask.
		key = thr.resolveDest(ctx, dom)
		if ok, at := thr.tryStart(key, q.now()); !ok {
			q.finishHeld(it, dom, at)
			return key, false
		}
	}
	t := it.transfer(rcpts, idx)
	errs := q.deliver(ctx, it, t)
	if thr != nil {
		thr.finish(key, dom, errs)
		if held, at := heldBack(errs); held {
			q.finishHeld(it, dom, at)
			return key, false
		}
	}
	q.noteRelayed(it, idx, t, errs)
	q.finishAttempt(ctx, it, dom, idx, errs)
	return key, slices.Contains(errs, nil)
}

// deliver makes the attempt. A fault of the Deliverer (a panic, a wrong
// number of results) becomes a temporary failure of every recipient.
func (q *Queue) deliver(ctx context.Context, it *item, t *envelope.Transfer) (errs []error) {
	rcpts := t.To
	all := func(err error) []error {
		errs := make([]error, len(rcpts))
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	defer func() {
		if p := recover(); p != nil {
			q.log.Error("queue: deliverer panicked", "id", it.st.ID, "panic", p, "stack", string(debug.Stack()))
			errs = all(fmt.Errorf("internal error: %v", p))
		}
	}()
	f, err := os.Open(filepath.Join(q.dir, it.st.ID+msgExt))
	if err != nil {
		return all(fmt.Errorf("opening the spooled message: %w", err))
	}
	defer f.Close()
	errs = q.opts.Deliverer.Deliver(ctx, t, f, it.st.Size)
	if len(errs) != len(rcpts) {
		return all(fmt.Errorf("internal error: deliverer gave %d results for %d recipients", len(errs), len(rcpts)))
	}
	return errs
}

// Outcomes of one recipient's attempt.
const (
	outDone        = iota // delivered or failed for good
	outRetry              // temporary failure: back off
	outInterrupted        // cut short by shutdown: not counted
)

func (q *Queue) finishAttempt(ctx context.Context, it *item, dom string, idx []int, errs []error) {
	now := q.now()
	shutdown := ctx.Err() != nil
	q.mu.Lock()
	retry, interrupted, attempts := false, false, 0
	var dead []RcptState // hard-bounced, for the suppression list
	if !it.deleted {
		for k, i := range idx {
			switch q.recordLocked(it, i, errs[k], now, shutdown) {
			case outRetry:
				retry = true
			case outInterrupted:
				interrupted = true
			}
			attempts = max(attempts, it.st.Rcpts[i].Attempts)
			if errs[k] != nil && isHardBounce(&it.st.Rcpts[i]) {
				dead = append(dead, it.st.Rcpts[i])
			}
		}
	}
	defer q.suppress(it.st.ID, dead) // after endTask has unlocked
	s := it.groups[dom]
	if s != nil {
		s.running = false
		switch {
		case it.deleted:
		case retry || interrupted:
			at := now
			if retry {
				at = now.Add(q.backoff(attempts))
				if expiry := it.st.Created.Add(q.opts.Lifetime); at.After(expiry) {
					at = expiry // one last try when the lifetime ends
				}
			}
			for _, i := range idx {
				if r := &it.st.Rcpts[i]; r.Status == StatusPending {
					r.NextAttempt = at
				}
			}
			q.scheduleLocked(it, dom, s, at)
		default:
			delete(it.groups, dom)
		}
	}
	it.running--
	q.scheduleNoticeLocked(it)
	q.endTask(it, dom)
}

// settle ends a change to an item, with Queue.mu held, and releases the
// lock: the item is removed if nothing is left to do, saved otherwise.
func (q *Queue) settle(it *item) {
	if it.deleted {
		q.mu.Unlock()
		return
	}
	if it.running == 0 && it.finished() {
		q.mu.Unlock()
		q.remove(it)
		q.log.Info("queue: done", "id", it.st.ID)
		return
	}
	snap := q.snapshotLocked(it)
	q.mu.Unlock()
	if atRisk, err := q.persist(it, snap); err != nil {
		q.log.Error("queue: saving state failed; retrying", "id", it.st.ID, "unsaved_deliveries", atRisk, "err", err)
	}
}

// recordLocked applies the result of an attempt to recipient i.
func (q *Queue) recordLocked(it *item, i int, err error, now time.Time, shutdown bool) int {
	r := &it.st.Rcpts[i]
	if r.Status != StatusPending {
		return outDone
	}
	log := q.log.With("id", it.st.ID, "rcpt", r.Addr)
	if err == nil {
		r.Status, r.NextAttempt, r.LastAttempt = it.st.deliveredStatus(r, false), time.Time{}, now
		r.Attempts++
		log.Info("queue: delivered", "attempts", r.Attempts)
		return outDone
	}
	var ee *envelope.Error
	smtp := errors.As(err, &ee) && ee.Code >= 400 && ee.Code < 600
	if shutdown && !smtp {
		return outInterrupted
	}
	r.Attempts++
	r.LastAttempt, r.LastError, r.RemoteMTA = now, err.Error(), remoteMTA(err)
	r.Reply, r.DSNStatus = "", "4.0.0"
	if smtp {
		r.Reply, r.DSNStatus = replyLine(ee), dsnStatus(ee)
		log = log.With(explainAttrs(r.Reply)...)
	}
	switch {
	case smtp && ee.Code >= 500:
		it.st.failRcpt(i, "", "")
		log.Info("queue: failed", "status", r.Status, "err", r.LastError)
		return outDone
	case it.st.Cancelled:
		it.st.failRcpt(i, "5.0.0", reasonCancelled)
	case !now.Before(it.st.Created.Add(q.opts.Lifetime)):
		it.st.failRcpt(i, "5.4.7", "delivery time expired after "+humanDuration(q.opts.Lifetime))
	default:
		log.Info("queue: deferred", "attempts", r.Attempts, "err", r.LastError)
		return outRetry
	}
	log.Info("queue: failed", "status", r.Status, "reason", r.Reason, "err", r.LastError)
	return outDone
}

// replyLine renders an SMTP reply as the remote server sent it.
func replyLine(e *envelope.Error) string {
	if e.Enhanced[0] != 0 {
		return fmt.Sprintf("%d %d.%d.%d %s", e.Code, e.Enhanced[0], e.Enhanced[1], e.Enhanced[2], e.Message)
	}
	return fmt.Sprintf("%d %s", e.Code, e.Message)
}

// dsnStatus is the RFC 3463 status for a reply: its enhanced code when it
// agrees with the reply's class, else the class's generic code.
func dsnStatus(e *envelope.Error) string {
	class := e.Code / 100
	if e.Enhanced[0] == class {
		return fmt.Sprintf("%d.%d.%d", e.Enhanced[0], e.Enhanced[1], e.Enhanced[2])
	}
	return fmt.Sprintf("%d.0.0", class)
}

// remoteMTA returns the remote host whose reply err is, if known.
func remoteMTA(err error) string {
	var ee *envelope.Error
	if errors.As(err, &ee) {
		return ee.Remote
	}
	return ""
}

// noticeJob is one DSN to hand over: a bounce for the failed recipients,
// or the delay notice for the pending ones.
type noticeJob struct {
	delayed bool
	idx     []int
	rcpts   []RcptState // copies, to build the report from
}

func (q *Queue) noticeJobLocked(it *item) *noticeJob {
	j := &noticeJob{}
	want := (*RcptState).owesNotice
	if !it.owesNotice() {
		if _, ok := q.noticeDueLocked(it); !ok {
			return nil
		}
		j.delayed, want = true, (*RcptState).wantsDelay
	}
	for i, r := range it.st.Rcpts {
		if want(&r) {
			j.idx = append(j.idx, i)
			j.rcpts = append(j.rcpts, r)
		}
	}
	if len(j.idx) == 0 {
		return nil
	}
	return j
}

func (q *Queue) runNotice(ctx context.Context, it *item, job *noticeJob) {
	defer q.tasks.Done()
	dsnID, err := q.sendNotice(ctx, it, job)
	q.finishNotice(ctx, it, job, dsnID, err)
	q.wake()
}

func (q *Queue) sendNotice(ctx context.Context, it *item, job *noticeJob) (dsnID string, err error) {
	defer func() {
		if p := recover(); p != nil {
			q.log.Error("queue: bouncer panicked", "id", it.st.ID, "panic", p, "stack", string(debug.Stack()))
			err = fmt.Errorf("internal error: %v", p)
		}
	}()
	now := q.now()
	dsnID = newID(now)
	rep, err := q.newReport(it, job, dsnID, now)
	if err != nil {
		return dsnID, err
	}
	var buf bytes.Buffer
	if err := writeReport(&buf, rep); err != nil {
		return dsnID, fmt.Errorf("building the DSN: %w", err)
	}
	env := &envelope.Envelope{ID: dsnID, From: "", To: []string{it.st.From}, Protocol: "LOCAL", Received: now,
		Params: envelope.Params{RequireTLS: it.st.RequireTLS}} // RFC 8689 section 5: the notice asks for TLS too
	errs := q.bouncer.Deliver(ctx, env, &buf)
	if len(errs) != 1 {
		return dsnID, fmt.Errorf("internal error: bouncer gave %d results for 1 recipient", len(errs))
	}
	return dsnID, errs[0]
}

func (q *Queue) finishNotice(ctx context.Context, it *item, job *noticeJob, dsnID string, err error) {
	now := q.now()
	kind := "bounce"
	if job.delayed {
		kind = "delay notice"
	}
	log := q.log.With("id", it.st.ID, "dsn_id", dsnID, "kind", kind, "to", it.st.From)
	q.mu.Lock()
	var ee *envelope.Error
	switch {
	case it.deleted:
	case err == nil:
		log.Info("queue: DSN sent", "rcpts", len(job.idx))
		q.noticeOverLocked(it, job, StatusBounced)
	case errors.As(err, &ee) && ee.Code >= 500 && ee.Code < 600:
		log.Error("queue: DSN refused; dropped", "err", err)
		q.noticeOverLocked(it, job, StatusDropped)
	case ctx.Err() != nil:
		it.st.NoticeNext = now // interrupted by shutdown: again at the next start
	case now.After(it.st.Created.Add(2 * q.opts.Lifetime)):
		log.Error("queue: DSN undeliverable for too long; dropped", "err", err)
		q.noticeOverLocked(it, job, StatusDropped)
	default:
		it.st.NoticeTries++
		it.st.NoticeNext = now.Add(q.backoff(it.st.NoticeTries))
		log.Warn("queue: DSN deferred", "tries", it.st.NoticeTries, "err", err)
	}
	it.notice.running = false
	it.running--
	q.scheduleNoticeLocked(it)
	q.endTask(it, "")
}

// noticeOverLocked ends a DSN's story: its recipients become final (status
// for a bounce) or the delay notice counts as given.
func (q *Queue) noticeOverLocked(it *item, job *noticeJob, status string) {
	it.st.NoticeTries, it.st.NoticeNext = 0, time.Time{}
	if job.delayed {
		it.st.DelayNotified = true
		return
	}
	for _, i := range job.idx {
		switch r := &it.st.Rcpts[i]; r.Status {
		case StatusFailed:
			r.Status = status
		case StatusNotify:
			r.Status = StatusDelivered
		}
	}
}
