package queue

import "time"

// Stats reports how many messages the queue holds and when the oldest of
// them arrived (zero when there is none), from memory: for the metrics,
// cheap enough for every scrape. A Queue that does not own the spool
// (another process runs it) holds none.
func (q *Queue) Stats() (messages int, oldest time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, it := range q.items {
		if c := it.st.Created; oldest.IsZero() || c.Before(oldest) {
			oldest = c
		}
	}
	return len(q.items), oldest
}
