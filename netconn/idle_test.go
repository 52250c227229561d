package netconn

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestIdleConnSilentVsSteady: the silent peer is cut after the timeout; the steady one, slower in
// all than the timeout but never pausing that long, is served to its end.
func TestIdleConnSilentVsSteady(t *testing.T) {
	const timeout = 400 * time.Millisecond
	silentSrv, _ := loopbackPair(t)
	steadySrv, steadyCli := loopbackPair(t)

	type result struct {
		got     []byte
		err     error
		elapsed time.Duration
	}
	readAll := func(c net.Conn, out chan<- result) {
		start := time.Now()
		ic := NewIdleConn(c, timeout, nil)
		got, err := io.ReadAll(ic)
		out <- result{got, err, time.Since(start)}
	}
	silent, steady := make(chan result, 1), make(chan result, 1)
	go readAll(silentSrv, silent)
	go readAll(steadySrv, steady)

	// 20 bytes, one every 50 ms: a second in all, two and a half timeouts.
	var sent bytes.Buffer
	for i := 0; i < 20; i++ {
		b := []byte{byte('a' + i)}
		if _, err := steadyCli.Write(b); err != nil {
			t.Fatal(err)
		}
		sent.Write(b)
		time.Sleep(50 * time.Millisecond)
	}
	steadyCli.Close()

	select {
	case r := <-steady:
		if r.err != nil || !bytes.Equal(r.got, sent.Bytes()) {
			t.Errorf("steady peer: read %q, %v; want %q and EOF", r.got, r.err, sent.Bytes())
		}
		if r.elapsed < 2*timeout {
			t.Errorf("steady peer done after %v; the test did not outlast the timeout", r.elapsed)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("steady peer: read never ended")
	}
	select {
	case r := <-silent:
		if !isTimeout(r.err) {
			t.Errorf("silent peer: %v, want a timeout", r.err)
		}
		if r.elapsed < timeout {
			t.Errorf("silent peer cut after %v, before the %v timeout", r.elapsed, timeout)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("silent peer never cut")
	}
}

// TestIdleConnWriteToStalledPeer: a peer that stops reading is cut as well, once the kernel
// buffers are full and a Write waits longer than the timeout.
func TestIdleConnWriteToStalledPeer(t *testing.T) {
	srv, cli := loopbackPair(t)
	srv.(*net.TCPConn).SetWriteBuffer(4 << 10)
	cli.(*net.TCPConn).SetReadBuffer(4 << 10)
	ic := NewIdleConn(srv, 200*time.Millisecond, nil)
	chunk := make([]byte, 32<<10)
	var err error
	for written := 0; err == nil; written += len(chunk) {
		if written > 256<<20 {
			t.Fatal("256 MiB written to a peer that reads nothing")
		}
		_, err = ic.Write(chunk)
	}
	if !isTimeout(err) {
		t.Fatalf("write to a stalled peer: %v, want a timeout", err)
	}
}

// TestIdleConnDeadlines: each operation sets its own deadline, whatever was set before; with no
// timeout, the deadlines are left to the caller.
func TestIdleConnDeadlines(t *testing.T) {
	srv, cli := loopbackPair(t)
	ic := NewIdleConn(srv, time.Minute, nil)
	past := time.Now().Add(-time.Second)
	srv.SetDeadline(past)
	if _, err := ic.Write([]byte("x")); err != nil {
		t.Fatalf("Write after an expired deadline: %v", err)
	}
	cli.Write([]byte("y"))
	srv.SetDeadline(past)
	buf := make([]byte, 1)
	if _, err := io.ReadFull(ic, buf); err != nil || buf[0] != 'y' {
		t.Fatalf("Read after an expired deadline: %q, %v", buf, err)
	}
	if ic.NetConn() != srv {
		t.Error("NetConn is not the wrapped connection")
	}

	untimed := NewIdleConn(srv, 0, nil)
	srv.SetDeadline(past)
	if _, err := untimed.Read(buf); !isTimeout(err) {
		t.Fatalf("no timeout: Read %v, want the caller's expired deadline to hold", err)
	}
	if _, err := untimed.Write(buf); !isTimeout(err) {
		t.Fatalf("no timeout: Write %v, want the caller's expired deadline to hold", err)
	}
}

// TestIdleConnGate: a reader is stopped by changing what the gate says and moving the deadline
// to now, whether it is blocked in Read or just entering it. Many rounds give the race detector
// and the scheduler room to find a lost wake-up.
func TestIdleConnGate(t *testing.T) {
	srv, cli := loopbackPair(t)
	errStopped := errors.New("stopped")
	var stop atomic.Bool
	ic := NewIdleConn(srv, time.Minute, func() error {
		if stop.Load() {
			return errStopped
		}
		return nil
	})
	buf := make([]byte, 1)
	for round := 0; round < 300; round++ {
		stop.Store(false)
		done := make(chan error, 1)
		go func() {
			_, err := ic.Read(buf)
			done <- err
		}()
		if round%3 == 0 {
			time.Sleep(time.Duration(round%50) * time.Microsecond)
		}
		stop.Store(true)
		srv.SetReadDeadline(time.Now())
		select {
		case err := <-done:
			if !errors.Is(err, errStopped) && !isTimeout(err) {
				t.Fatalf("round %d: Read ended with %v", round, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("round %d: reader not stopped (lost wake-up)", round)
		}
	}
	// A stopped Read does not consume what the peer sent.
	cli.Write([]byte("z"))
	if _, err := ic.Read(buf); !errors.Is(err, errStopped) {
		t.Fatalf("Read while stopped: %v", err)
	}
	stop.Store(false)
	if _, err := ic.Read(buf); err != nil || buf[0] != 'z' {
		t.Fatalf("Read after the stop: %q, %v", buf, err)
	}
}
