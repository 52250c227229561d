package imapserver

import (
	"fmt"
	"io"
	"runtime/debug"
	"sync"
)

// SessionIdleStarter is a session that idles without a goroutine of its own (one less goroutine
// stack per idling connection, which is most of what an idle connection costs): IdleStart sends
// what is pending, arranges for later updates to be written as they come (from short-lived
// goroutines of the session's choosing) and returns at once. The connection's goroutine then
// waits for DONE and calls stop, which must return only when no update is being written any more,
// with the first write error if there was one. Sessions without it are served by Session.Idle in a
// goroutine, as upstream does.
type SessionIdleStarter interface {
	IdleStart(w *UpdateWriter) (stop func() error, err error)
}

// IdleFunc is SessionTracker.Idle without a goroutine waiting: write is called (in a goroutine of
// its own, one at a time) once at the start and then whenever updates were queued, until stop is
// called or write fails; stop returns when no write is under way, with write's first error.
func (t *SessionTracker) IdleFunc(write func() error) (stop func() error, err error) {
	n := &idleNotifier{write: write}
	t.mutex.Lock()
	ok := t.updates == nil && t.notify == nil
	if ok {
		t.notify = n.kick
	}
	t.mutex.Unlock()
	if !ok {
		return nil, fmt.Errorf("imapserver: only a single SessionTracker.Idle call is allowed at a time")
	}
	n.kick()
	return func() error {
		t.mutex.Lock()
		t.notify = nil
		t.mutex.Unlock()
		return n.stop()
	}, nil
}

// idleNotifier runs write in a goroutine when kicked; kicks while it runs make it run once more.
type idleNotifier struct {
	write func() error

	mu      sync.Mutex
	running bool
	again   bool
	stopped bool
	err     error
	done    sync.WaitGroup
}

// kick never blocks: the mailbox tracker calls it while queueing updates.
func (n *idleNotifier) kick() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stopped || n.err != nil {
		return
	}
	if n.running {
		n.again = true
		return
	}
	n.running = true
	n.done.Add(1)
	go n.run()
}

func (n *idleNotifier) run() {
	defer n.done.Done()
	for {
		err := n.safeWrite()
		n.mu.Lock()
		if err != nil && n.err == nil {
			n.err = err
		}
		if !n.again || n.stopped || n.err != nil {
			n.running = false
			n.mu.Unlock()
			return
		}
		n.again = false
		n.mu.Unlock()
	}
}

func (n *idleNotifier) safeWrite() (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("imapserver: panic idling: %v\n%s", v, debug.Stack())
		}
	}()
	return n.write()
}

func (n *idleNotifier) stop() error {
	n.mu.Lock()
	n.stopped = true
	n.mu.Unlock()
	n.done.Wait()
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.err
}

// idleStarted is handleIdle for a SessionIdleStarter: the connection's goroutine is the only one
// that waits.
func (c *Conn) idleStarted(s SessionIdleStarter) error {
	stop, startErr := s.IdleStart(&UpdateWriter{conn: c, allowExpunge: true})
	c.setReadTimeout(idleReadTimeout)
	line, isPrefix, err := c.br.ReadLine()
	var stopErr error
	if startErr == nil {
		stopErr = stop()
	}
	switch {
	case err == io.EOF:
		return nil
	case err != nil:
		return err
	case isPrefix || string(line) != "DONE":
		return newClientBugError("Syntax error: expected DONE to end IDLE command")
	case startErr != nil:
		return startErr
	}
	return stopErr
}
