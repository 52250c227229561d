package netconn

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

func TestListenersServeAndClose(t *testing.T) {
	var ls Listeners
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() {
		served <- ls.Serve(ln, nil, func(c net.Conn) {
			c.Write([]byte("hi"))
			c.Close()
		})
	}()
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(c)
		c.Close()
		if string(got) != "hi" || err != nil {
			t.Fatalf("connection %d: %q, %v", i, got, err)
		}
	}

	// A listener registered by Add (a server with its own accept loop) is closed too.
	other, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if !ls.Add(other) {
		t.Fatal("Add refused before Close")
	}

	if !ls.Close() {
		t.Fatal("first Close reported false")
	}
	if ls.Close() {
		t.Fatal("second Close reported true")
	}
	select {
	case err := <-served:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("Serve returned %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after Close")
	}
	ls.Wait()
	if _, err := other.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept on an added listener after Close: %v", err)
	}
	if !ls.Closed() {
		t.Fatal("Closed is false after Close")
	}

	late, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	if ls.Add(late) {
		t.Fatal("Add accepted a listener after Close")
	}
	if err := ls.Serve(late, nil, func(net.Conn) { t.Error("late connection handled") }); !errors.Is(err, ErrClosed) {
		t.Fatalf("Serve after Close: %v", err)
	}
}

// scriptedListener answers Accept from a list, then blocks until closed.
type scriptedListener struct {
	results []any // net.Conn or error
	closed  chan struct{}
}

func (l *scriptedListener) Accept() (net.Conn, error) {
	if len(l.results) == 0 {
		<-l.closed
		return nil, net.ErrClosed
	}
	r := l.results[0]
	l.results = l.results[1:]
	if err, ok := r.(error); ok {
		return nil, err
	}
	return r.(net.Conn), nil
}

func (l *scriptedListener) Close() error   { return nil }
func (l *scriptedListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

func TestListenersServeRetries(t *testing.T) {
	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	fatal := errors.New("listener broken")
	ln := &scriptedListener{results: []any{
		&net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)},
		&net.OpError{Op: "accept", Net: "tcp", Err: os.ErrDeadlineExceeded},
		&net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.ENFILE)},
		p1,
		fatal,
		p2, // never reached
	}, closed: make(chan struct{})}
	var ls Listeners
	var handled []net.Conn
	err := ls.Serve(ln, nil, func(c net.Conn) { handled = append(handled, c) })
	if !errors.Is(err, fatal) {
		t.Fatalf("Serve returned %v, want the lasting error", err)
	}
	if len(handled) != 1 || handled[0] != p1 {
		t.Fatalf("handled %v, want the one connection after the passing errors", handled)
	}
	ls.Wait()
	if ls.Closed() {
		t.Fatal("a listener error closed the set")
	}
}
