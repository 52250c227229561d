package queue

import (
	"container/heap"
	"context"
	"errors"
	"time"
)

// The scheduler's side of the Throttle: units whose destination is at its
// limit wait in Queue.parked, by destination, outside the heap, so that a
// spool of ten thousand messages to one busy destination costs nothing per
// dispatch but one look at that destination.

// admitLocked reserves an attempt for u at its destination. It reports
// false when u was parked instead. A destination not known yet (its MX not
// looked up) is admitted with key "": runAttempt finds it and asks then.
func (q *Queue) admitLocked(u unit, now time.Time) (key string, ok bool) {
	thr := q.opts.Throttle
	if thr == nil || u.dom == "" {
		return "", true
	}
	key, known := thr.cachedDest(u.dom, now)
	if !known {
		return "", true
	}
	if ok, _ := thr.tryStart(key, now); ok {
		return key, true
	}
	if q.parked == nil {
		q.parked = make(map[string][]unit)
	}
	q.parked[key] = append(q.parked[key], u)
	return "", false
}

// releaseParkedLocked puts back into the heap as many parked units as
// their destinations can start now, and returns when the next parked unit
// can start (zero: none, or only when an attempt ends, which wakes the
// scheduler).
func (q *Queue) releaseParkedLocked(now time.Time) time.Time {
	var next time.Time
	for key, w := range q.parked {
		n, at := q.opts.Throttle.free(key, now)
		var recent []string
		if n > 0 {
			recent = q.opts.Throttle.recentDomains(key)
		}
		for n > 0 && len(w) > 0 {
			preferRecent(w, recent)
			u := w[0]
			w[0] = unit{}
			w = w[1:]
			if q.schedFor(u) != nil {
				heap.Push(&q.units, u)
				n--
			}
		}
		if len(w) == 0 {
			delete(q.parked, key)
			continue
		}
		q.parked[key] = w
		next = earliest(next, at)
	}
	return next
}

// preferRecent moves to the front of w the first of its first units whose
// domain is in recent, so that it reuses the connection an attempt to that
// domain just left idle (instead of closing it to make room for another
// domain's). Only a prefix is searched, which bounds the cost of the
// choice.
const maxPreferScan = 4096

func preferRecent(w []unit, recent []string) {
	if len(recent) == 0 {
		return
	}
	n := min(len(w), maxPreferScan)
	for j := len(recent) - 1; j >= 0; j-- { // the most recent first: its connection is the likeliest still idle
		for i := range n {
			if w[i].dom == recent[j] {
				w[0], w[i] = w[i], w[0]
				return
			}
		}
	}
}

// maxChain bounds the attempts one task makes in a row for one domain.
const maxChain = 100

// chainNext takes, for the task that just delivered to dom, the next
// parked unit of dom at destination key, if the limits let it start now:
// the outbound client still holds the connection that attempt left idle,
// and reusing it beats closing it to make room for another domain's. The
// unit's bookkeeping is startLocked's, but it runs in the calling task.
func (q *Queue) chainNext(ctx context.Context, key, dom string) (it *item, idx []int, addrs []string, ok bool) {
	thr := q.opts.Throttle
	if thr == nil || ctx.Err() != nil {
		return nil, nil, nil, false
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.inflight >= q.opts.MaxConcurrency || q.perDomain[dom] >= q.opts.MaxPerDomain {
		return nil, nil, nil, false
	}
	w := q.parked[key]
	for i := range min(len(w), maxPreferScan) {
		u := w[i]
		s := q.schedFor(u)
		if u.dom != dom || s == nil {
			continue
		}
		idx, addrs := u.it.pendingIn(dom)
		if len(idx) == 0 {
			continue // the release drops it
		}
		if ok, _ := thr.tryStart(key, q.now()); !ok {
			return nil, nil, nil, false
		}
		w[i], w[0] = w[0], unit{}
		if w = w[1:]; len(w) == 0 {
			delete(q.parked, key)
		} else {
			q.parked[key] = w
		}
		s.running = true
		u.it.running++
		q.inflight++
		q.perDomain[dom]++
		return u.it, idx, addrs, true
	}
	return nil, nil, nil, false
}

// finishHeld ends an attempt the Throttle held back before anything was
// sent: the domain's work is due again at retry (zero: now, when the
// scheduler parks it at its now known destination), and no attempt is
// counted.
func (q *Queue) finishHeld(it *item, dom string, retry time.Time) {
	q.mu.Lock()
	if s := it.groups[dom]; s != nil {
		s.running = false
		if !it.deleted {
			q.scheduleLocked(it, dom, s, maxTime(retry, q.now()))
		}
	}
	it.running--
	q.scheduleNoticeLocked(it)
	q.endTask(it, dom)
}

// heldBack reports whether every result is the Throttle's refusal of a
// connection, and when to try again.
func heldBack(errs []error) (bool, time.Time) {
	var until time.Time
	for _, err := range errs {
		var te *ThrottledError
		if !errors.As(err, &te) {
			return false, time.Time{}
		}
		until = maxTime(until, te.Until)
	}
	return len(errs) > 0, until
}

// earliest is the earlier of two times, zero meaning none.
func earliest(a, b time.Time) time.Time {
	switch {
	case a.IsZero():
		return b
	case b.IsZero() || a.Before(b):
		return a
	}
	return b
}

// Suppressor remembers recipients whose delivery failed for good as "no
// such user" (package suppress), so that submission refuses them for a
// while.
type Suppressor interface {
	Add(addr, reason string) error
}
