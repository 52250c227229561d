package smtpd

import (
	"sync"
	"time"
)

// window counts events per key over a sliding time span (the last minute,
// the last hour), in memory. It holds at most limit timestamps per key, and
// forgets keys whose events have all expired.
type window struct {
	span time.Duration

	mu        sync.Mutex
	hits      map[string][]time.Time
	sweepSize int // sweep expired keys when the map grows past this
}

func newWindow(span time.Duration) *window {
	return &window{span: span, hits: make(map[string][]time.Time), sweepSize: 1024}
}

// take records one event for key at now, unless limit events already fell
// within the span; it reports whether the event was recorded.
func (w *window) take(key string, limit int, now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	ts := w.expire(w.hits[key], now)
	if len(ts) >= limit {
		w.hits[key] = ts
		return false
	}
	w.hits[key] = append(ts, now)
	if len(w.hits) > w.sweepSize {
		w.sweep(now)
	}
	return true
}

// give takes back an event recorded at t (a transaction that was not
// completed does not count).
func (w *window) give(key string, t time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ts := w.hits[key]
	for i := len(ts) - 1; i >= 0; i-- {
		if ts[i].Equal(t) {
			ts = append(ts[:i], ts[i+1:]...)
			break
		}
	}
	if len(ts) == 0 {
		delete(w.hits, key)
		return
	}
	w.hits[key] = ts
}

// count reports the events for key within the span (for tests and logs).
func (w *window) count(key string, now time.Time) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.expire(w.hits[key], now))
}

// expire drops the timestamps older than the span. They are in order.
func (w *window) expire(ts []time.Time, now time.Time) []time.Time {
	cut := now.Add(-w.span)
	i := 0
	for i < len(ts) && !ts[i].After(cut) {
		i++
	}
	return ts[i:]
}

func (w *window) sweep(now time.Time) {
	for k, ts := range w.hits {
		if ts = w.expire(ts, now); len(ts) == 0 {
			delete(w.hits, k)
		} else {
			w.hits[k] = ts
		}
	}
	w.sweepSize = 2*len(w.hits) + 1024
}

// reservation is one event taken at MAIL, given back unless the message
// is accepted.
type reservation struct {
	w   *window
	key string
	at  time.Time
}

func (r *reservation) release() {
	if r != nil {
		r.w.give(r.key, r.at)
	}
}
