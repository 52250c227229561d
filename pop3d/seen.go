package pop3d

import (
	"log/slog"
	"sync"
	"time"
)

// seenDelay is how long a retrieved message may wait to be marked \Seen.
// Marking costs the store a rename per message and a look at the folder
// per call, so a session marks in batches: seenDelay after the first RETR
// of a batch, and when it ends (QUIT or not: the message was sent).
const seenDelay = time.Second

// seenMarker collects the UIDs a session has retrieved and marks them
// \Seen in the store a batch at a time, from a timer or at the end of the
// session.
type seenMarker struct {
	box    maildrop
	origin any
	log    *slog.Logger

	mu    sync.Mutex
	uids  []uint32
	timer *time.Timer
}

// add queues uid and starts the batch timer if none is running.
func (s *seenMarker) add(uid uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.uids = append(s.uids, uid)
	if s.timer == nil {
		s.timer = time.AfterFunc(seenDelay, s.flush)
	}
}

// flush marks every queued message \Seen now.
func (s *seenMarker) flush() {
	s.mu.Lock()
	uids := s.uids
	s.uids = nil
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	s.mu.Unlock()
	if len(uids) == 0 {
		return
	}
	// A message expunged meanwhile is simply not marked.
	if err := s.box.MarkSeen(uids, s.origin); err != nil {
		s.log.Warn("pop3: cannot mark messages seen", "messages", len(uids), "err", err)
	}
}
