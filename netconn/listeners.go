package netconn

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"
)

// ErrClosed is returned by Listeners.Serve once Listeners.Close has been called.
var ErrClosed = errors.New("netconn: listeners closed")

// Listeners is the set of listeners a server accepts on, so that Shutdown can close every one of
// them, including one whose Serve is only starting. The zero value is ready to use.
type Listeners struct {
	mu     sync.Mutex
	closed bool
	set    map[net.Listener]struct{}
	loops  sync.WaitGroup // Serve calls under way
}

// Add registers ln, or reports false once Close has been called; ln is then left to the caller.
func (ls *Listeners) Add(ln net.Listener) bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.addLocked(ln)
}

func (ls *Listeners) addLocked(ln net.Listener) bool {
	if ls.closed {
		return false
	}
	if ls.set == nil {
		ls.set = make(map[net.Listener]struct{})
	}
	ls.set[ln] = struct{}{}
	return true
}

// Remove forgets ln without closing it.
func (ls *Listeners) Remove(ln net.Listener) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	delete(ls.set, ln)
}

// Close closes every listener registered and refuses later ones. It reports whether this was the
// first call.
func (ls *Listeners) Close() bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.closed {
		return false
	}
	ls.closed = true
	for ln := range ls.set {
		ln.Close()
	}
	clear(ls.set)
	return true
}

// Closed reports whether Close has been called.
func (ls *Listeners) Closed() bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.closed
}

// Wait waits for the Serve calls under way to return; call it after Close.
func (ls *Listeners) Wait() { ls.loops.Wait() }

// Serve registers ln and passes every connection it accepts to handle, in the accepting goroutine,
// until Close (it then returns ErrClosed) or a lasting Accept error (returned as it is). Errors
// that pass, such as running out of file descriptors, are logged and retried after a pause that
// doubles up to a second, as net/http does.
func (ls *Listeners) Serve(ln net.Listener, log *slog.Logger, handle func(net.Conn)) error {
	ls.mu.Lock()
	ok := ls.addLocked(ln)
	if ok {
		ls.loops.Add(1) // under mu, so it happens before any Wait that follows Close
	}
	ls.mu.Unlock()
	if !ok {
		return ErrClosed
	}
	defer ls.loops.Done()
	defer ls.Remove(ln)
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ls.Closed() {
				return ErrClosed
			}
			if !passing(err) {
				return err
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			if log != nil {
				log.Warn("accept failed; retrying", "addr", ln.Addr().String(), "err", err, "delay", delay)
			}
			time.Sleep(delay)
			continue
		}
		delay = 0
		handle(c)
	}
}

// passing reports whether an Accept error may go away by itself: a timeout, or what the system
// calls temporary (EMFILE, ENFILE: out of file descriptors).
func passing(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}
