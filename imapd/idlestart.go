package imapd

import "github.com/emersion/go-imap/v2/imapserver"

// IdleStart is IDLE without a goroutine of its own (imapserver.SessionIdleStarter): the
// connection's goroutine waits for DONE, and changes are written by a short-lived goroutine when the
// selected mailbox's tracker has some. A goroutine parked for the whole IDLE would keep a stack of
// 4 KiB or more per idling connection, the largest item of an idle connection's memory
// (BenchmarkIdleConnMemory). Session.Idle stays for callers of the upstream interface.
func (s *session) IdleStart(w *imapserver.UpdateWriter) (stop func() error, err error) {
	s.idleMu.Lock()
	if s.closed {
		s.idleMu.Unlock()
		return func() error { return nil }, nil
	}
	s.idling.Add(1)
	sel := s.sel
	s.idleMu.Unlock()
	stopNotify := s.notifyDuringIdle(w) // notify.go
	end := func() { stopNotify(); s.idling.Done() }
	if sel == nil {
		return func() error { end(); return nil }, nil
	}
	e := sel.entry
	e.startIdle()
	// The first write sends the changes that came between the last poll and now (the mailbox is
	// re-read); later ones what the tracker queued. Writes run one at a time, so their responses
	// (sequence numbers above all) stay in order.
	polled := false
	stopTracker, err := sel.st.IdleFunc(func() error {
		if !polled {
			polled = true
			return s.poll(sel, w, true)
		}
		return sel.st.Poll(w, true)
	})
	if err != nil {
		e.stopIdle()
		end()
		return nil, err
	}
	return func() error {
		err := stopTracker()
		e.stopIdle()
		end()
		return err
	}, nil
}
