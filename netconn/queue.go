package netconn

import (
	"net"
	"sync"
)

// Queue is a net.Listener fed by Push, for a protocol engine that wants a listener to accept from
// (go-smtp, go-imap) while a Tracker does the accepting, admitting and handshaking. The zero value
// is not usable; call NewQueue.
type Queue struct {
	ch     chan net.Conn
	done   chan struct{}
	closer sync.Once
}

// NewQueue returns an open Queue.
func NewQueue() *Queue {
	return &Queue{ch: make(chan net.Conn), done: make(chan struct{})}
}

// Push hands c to the next Accept, waiting for one; it reports false, leaving c to the caller,
// once the Queue is closed.
func (q *Queue) Push(c net.Conn) bool {
	select {
	case <-q.done:
		return false
	default:
	}
	select {
	case q.ch <- c:
		return true
	case <-q.done:
		return false
	}
}

// Accept returns the next connection pushed, or net.ErrClosed once the Queue is closed.
func (q *Queue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

// Close makes Accept and Push fail from now on; it may be called more than once.
func (q *Queue) Close() error {
	q.closer.Do(func() { close(q.done) })
	return nil
}

// Addr is a placeholder: a Queue has no address of its own.
func (q *Queue) Addr() net.Addr { return queueAddr{} }

type queueAddr struct{}

func (queueAddr) Network() string { return "queue" }
func (queueAddr) String() string  { return "queue" }
