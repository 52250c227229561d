package queue

import (
	"errors"
	"testing"
	"time"

	"postie/envelope"
)

// TestStats: the count and the oldest arrival follow what is queued, and
// an empty queue has no oldest.
func TestStats(t *testing.T) {
	h := newHarness(t, newDeliverer(func(string, int) error {
		return &envelope.Error{Code: 451, Enhanced: [3]int{4, 0, 0}, Message: "later"}
	}), nil)
	if n, oldest := h.q.Stats(); n != 0 || !oldest.IsZero() {
		t.Fatalf("empty: %d, %v", n, oldest)
	}
	first := h.clock.Now()
	id := h.enqueue("a@example.test", "x@remote.test")
	h.clock.Advance(time.Minute)
	h.enqueue("a@example.test", "y@remote.test")
	if n, oldest := h.q.Stats(); n != 2 || !oldest.Equal(first) {
		t.Errorf("two queued: %d, oldest %v, want 2, %v", n, oldest, first)
	}
	if err := h.q.deleteID(id); err != nil && !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	if n, oldest := h.q.Stats(); n != 1 || !oldest.Equal(first.Add(time.Minute)) {
		t.Errorf("after deleting the first: %d, oldest %v", n, oldest)
	}
}
