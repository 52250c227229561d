package netconn

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"postie/internal/testutil"
)

// harness runs a Tracker on 127.0.0.1 with a line server: it greets "hi", answers "ok" to every
// line, and takes "AUTH" (authenticated), "MAIL" (a transaction begins) and "END" (it ends).
type harness struct {
	t    *testing.T
	tr   *Tracker
	addr string
}

func startHarness(t *testing.T, opts Options, tlsConfig *tls.Config) *harness {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, tr: NewTracker(opts), addr: ln.Addr().String()}
	served := make(chan error, 1)
	go func() {
		served <- h.tr.Serve(ln, tlsConfig, func(c *Conn, nc net.Conn) {
			defer nc.Close()
			lineServer(c, nc)
		})
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h.tr.Shutdown(ctx)
		if err := <-served; !errors.Is(err, ErrClosed) {
			t.Errorf("Serve returned %v", err)
		}
	})
	return h
}

func lineServer(c *Conn, nc net.Conn) {
	br := bufio.NewReader(nc)
	if _, err := io.WriteString(nc, "hi\n"); err != nil {
		return
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		switch strings.TrimSpace(line) {
		case "AUTH":
			c.SetAuthenticated()
		case "MAIL":
			c.BeginTransaction()
		case "END":
			c.EndTransaction()
		}
		if _, err := io.WriteString(nc, "ok\n"); err != nil {
			return
		}
	}
}

type client struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

// dialFrom connects from the loopback address ip (any of 127.0.0.0/8) and reads the greeting.
func (h *harness) dialFrom(ip string) *client {
	h.t.Helper()
	c := h.dialNoGreeting(ip)
	if l := c.line(); l != "hi" {
		h.t.Fatalf("greeting from %s: %q", ip, l)
	}
	return c
}

func (h *harness) dialNoGreeting(ip string) *client {
	h.t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	nc, err := d.Dial("tcp", h.addr)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { nc.Close() })
	return &client{t: h.t, nc: nc, br: bufio.NewReader(nc)}
}

func (c *client) line() string {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	l, err := c.br.ReadString('\n')
	if err != nil {
		return "error: " + err.Error()
	}
	return strings.TrimSpace(l)
}

func (c *client) cmd(line string) {
	c.t.Helper()
	if _, err := io.WriteString(c.nc, line+"\n"); err != nil {
		c.t.Fatalf("%s: %v", line, err)
	}
	if l := c.line(); l != "ok" {
		c.t.Fatalf("%s: %q", line, l)
	}
}

// closedAfter waits (at most 5 s) for the server to close the connection and reports when.
func (c *client) closedAfter(start time.Time) (time.Duration, bool) {
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.Copy(io.Discard, c.br)
	if isTimeout(err) {
		return 0, false
	}
	return time.Since(start), true
}

// alive reports whether the connection still answers.
func (c *client) alive() bool {
	if _, err := io.WriteString(c.nc, "NOOP\n"); err != nil {
		return false
	}
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	l, err := c.br.ReadString('\n')
	return err == nil && l == "ok\n"
}

// trickle writes one byte every gap until the connection fails or stop closes.
func trickle(nc net.Conn, gap time.Duration, stop <-chan struct{}) {
	for {
		if _, err := nc.Write([]byte("x")); err != nil {
			return
		}
		select {
		case <-stop:
			return
		case <-time.After(gap):
		}
	}
}

// TestSlowlorisCommand: a command that arrives a byte at a time is cut after the grace, although
// the peer is never silent for as long as the idle timeout; commands that each arrive at once are
// fine however long the session, and so is one large command arriving fast.
func TestSlowlorisCommand(t *testing.T) {
	const grace = 300 * time.Millisecond
	h := startHarness(t, Options{IdleTimeout: 10 * time.Second, Deadlines: Deadlines{CommandTimeout: grace, MinRate: 100}}, nil)

	slow := h.dialFrom("127.0.0.1")
	stop := make(chan struct{})
	defer close(stop)
	start := time.Now()
	go trickle(slow.nc, 50*time.Millisecond, stop)
	took, closed := slow.closedAfter(start)
	if !closed || took < grace || took > 3*time.Second {
		t.Fatalf("slowloris closed=%v after %v; want cut soon after %v", closed, took, grace)
	}

	steady := h.dialFrom("127.0.0.1")
	for start := time.Now(); time.Since(start) < 3*grace; time.Sleep(50 * time.Millisecond) {
		steady.cmd("NOOP")
	}
	big := strings.Repeat("y", 64<<10)
	for i := 0; i < len(big); i += 8 << 10 { // 64 KiB over 0.4 s: past the grace, far above the rate
		if _, err := io.WriteString(steady.nc, big[i:i+8<<10]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	steady.cmd("")
}

// TestMinRate: after the grace, a command (a DATA) must come at MinRate on average: half the rate
// is cut, ten times the rate is served however long it takes.
func TestMinRate(t *testing.T) {
	h := startHarness(t, Options{IdleTimeout: 10 * time.Second, Deadlines: Deadlines{CommandTimeout: 200 * time.Millisecond, MinRate: 2000}}, nil)
	send := func(c *client, perTick int, ticks int) error {
		for i := 0; i < ticks; i++ {
			if _, err := c.nc.Write(bytes.Repeat([]byte("z"), perTick)); err != nil {
				return err
			}
			time.Sleep(50 * time.Millisecond)
		}
		return nil
	}
	slow := h.dialFrom("127.0.0.1")
	start := time.Now()
	go send(slow, 50, 100) // 1000 bytes/s: cut at about 0.2 + t/2 s, that is 0.4 s
	if took, closed := slow.closedAfter(start); !closed || took > 3*time.Second {
		t.Fatalf("half the minimum rate: closed=%v after %v", closed, took)
	}
	fast := h.dialFrom("127.0.0.1")
	if err := send(fast, 1000, 20); err != nil { // 20000 bytes/s for a second
		t.Fatal(err)
	}
	fast.cmd("")
}

// TestHandshakeDeadline: an implicit-TLS port drops a client that never starts its handshake
// within the handshake deadline, while a real client is served.
func TestHandshakeDeadline(t *testing.T) {
	const hs = 300 * time.Millisecond
	h := startHarness(t, Options{IdleTimeout: 10 * time.Second, Deadlines: Deadlines{HandshakeTimeout: hs}}, testutil.ServerTLS(t, "mx.example.test"))
	mute := h.dialNoGreeting("127.0.0.1")
	start := time.Now()
	if took, closed := mute.closedAfter(start); !closed || took < hs-50*time.Millisecond || took > 3*time.Second {
		t.Fatalf("silent TLS client closed=%v after %v; want about %v", closed, took, hs)
	}
	tc, err := tls.Dial("tcp", h.addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	c := &client{t: t, nc: tc, br: bufio.NewReader(tc)}
	if l := c.line(); l != "hi" {
		t.Fatalf("greeting over TLS: %q", l)
	}
	time.Sleep(2 * hs) // the handshake deadline is over once the handshake is
	c.cmd("NOOP")
}

// TestTransactionDeadline: commands that each come at once still cannot stretch a transaction
// past its deadline; outside one, they go on.
func TestTransactionDeadline(t *testing.T) {
	const tx = 400 * time.Millisecond
	h := startHarness(t, Options{IdleTimeout: 10 * time.Second, Deadlines: Deadlines{TransactionTimeout: tx}}, nil)
	free := h.dialFrom("127.0.0.1")
	c := h.dialFrom("127.0.0.1")
	c.cmd("MAIL")
	start := time.Now()
	for time.Since(start) < 10*tx {
		free.cmd("NOOP")
		io.WriteString(c.nc, "RCPT\n")
		if l := c.line(); l != "ok" {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if took := time.Since(start); took < tx-50*time.Millisecond || took > 5*tx {
		t.Fatalf("transaction cut after %v, want about %v", took, tx)
	}
	if !free.alive() {
		t.Fatal("a connection outside any transaction was cut")
	}
}

// TestConnIdle: the silent peer is cut after the idle timeout, the steady one (slower in all than
// the timeout, never pausing that long) is not; a write to a peer that reads nothing is cut too.
func TestConnIdle(t *testing.T) {
	const idle = 300 * time.Millisecond
	h := startHarness(t, Options{IdleTimeout: idle}, nil)
	silent := h.dialFrom("127.0.0.1")
	steady := h.dialFrom("127.0.0.1")
	start := time.Now()
	for i := 0; i < 10; i++ {
		steady.cmd("NOOP")
		time.Sleep(idle / 3)
	}
	if took, closed := silent.closedAfter(start); !closed || took < idle-50*time.Millisecond {
		t.Fatalf("silent peer closed=%v after %v", closed, took)
	}

	tr := NewTracker(Options{IdleTimeout: 200 * time.Millisecond})
	srv, cli := loopbackPair(t)
	srv.(*net.TCPConn).SetWriteBuffer(4 << 10)
	cli.(*net.TCPConn).SetReadBuffer(4 << 10)
	c, err := tr.Admit(srv)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 32<<10)
	for written := 0; err == nil; written += len(chunk) {
		if written > 256<<20 {
			t.Fatal("256 MiB written to a peer that reads nothing")
		}
		_, err = c.Write(chunk)
	}
	if !isTimeout(err) {
		t.Fatalf("write to a stalled peer: %v", err)
	}
}

// TestConnEngineDeadline: a deadline the engine sets itself applies when earlier than ours, and
// a timeout stays: the next Read fails too, even with a later deadline.
func TestConnEngineDeadline(t *testing.T) {
	tr := NewTracker(Options{IdleTimeout: time.Minute})
	srv, cli := loopbackPair(t)
	c, _ := tr.Admit(srv)
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	buf := make([]byte, 1)
	start := time.Now()
	if _, err := c.Read(buf); !isTimeout(err) || time.Since(start) > 5*time.Second {
		t.Fatalf("Read with the engine's deadline: %v after %v", err, time.Since(start))
	}
	cli.Write([]byte("a"))
	c.SetReadDeadline(time.Time{})
	if _, err := c.Read(buf); !isTimeout(err) {
		t.Fatalf("Read after a timeout: %v, want the timeout again", err)
	}
	if c.NetConn() != srv || c.IP().String() != "127.0.0.1" {
		t.Fatal("NetConn or IP wrong")
	}
}

// TestShedOldestIdle: with the cap full of idle connections from many addresses, a newcomer is
// served and the connection idle longest goes, not-authenticated ones before authenticated ones.
func TestShedOldestIdle(t *testing.T) {
	h := startHarness(t, Options{MaxConnections: 6, IdleTimeout: 10 * time.Second, Deadlines: Deadlines{ShedAfter: 100 * time.Millisecond}}, nil)
	var cs []*client
	for i := 2; i <= 7; i++ {
		cs = append(cs, h.dialFrom(fmt.Sprintf("127.0.0.%d", i)))
		if i == 2 {
			cs[0].cmd("AUTH") // 127.0.0.2 logs in, and is idle longest of all
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(150 * time.Millisecond)
	start := time.Now()
	h.dialFrom("127.0.0.50").cmd("NOOP") // served
	if _, closed := cs[1].closedAfter(start); !closed {
		t.Fatal("the longest idle connection not logged in was not shed")
	}
	h.dialFrom("127.0.0.51").cmd("NOOP")
	if _, closed := cs[2].closedAfter(start); !closed {
		t.Fatal("the next idle not-authenticated connection was not shed")
	}
	for _, i := range []int{0, 3, 4, 5} {
		if !cs[i].alive() {
			t.Errorf("connection %d shed too", i)
		}
	}
	if n := h.tr.Len(); n != 6 {
		t.Errorf("%d connections held, cap 6", n)
	}
}

// TestShedShare: a newcomer from an address that would go over its share may displace only that
// address's connections, however idle the others are; and an address over its share loses its
// connections before one within its share, however idle.
func TestShedShare(t *testing.T) {
	opts := Options{MaxConnections: 6, IdleTimeout: 10 * time.Second, Deadlines: Deadlines{ShedAfter: 50 * time.Millisecond}}
	fill := func(h *harness, ip string, n int) []*client {
		var cs []*client
		for i := 0; i < n; i++ {
			cs = append(cs, h.dialFrom(ip))
		}
		return cs
	}

	h := startHarness(t, opts, nil)
	older := fill(h, "127.0.0.3", 3) // idle longest
	hog := fill(h, "127.0.0.2", 3)
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	h.dialFrom("127.0.0.2") // 4 > its share of 3: only its own may go
	if _, closed := hog[0].closedAfter(start); !closed {
		t.Fatal("the newcomer did not displace its own address's oldest")
	}
	for _, c := range older {
		if !c.alive() {
			t.Fatal("a newcomer over its share displaced another address")
		}
	}

	g := startHarness(t, opts, nil)
	within := fill(g, "127.0.0.3", 2) // idle longest, within the share of 2
	over := fill(g, "127.0.0.2", 4)
	time.Sleep(100 * time.Millisecond)
	start = time.Now()
	g.dialFrom("127.0.0.9")
	if _, closed := over[0].closedAfter(start); !closed {
		t.Fatal("the address over its share did not lose its oldest")
	}
	for _, c := range within {
		if !c.alive() {
			t.Fatal("an address within its share lost a connection first")
		}
	}
}

// TestRefusal: nothing idle long enough to shed, or the per-address cap: the server's line, then
// the connection closes.
func TestRefusal(t *testing.T) {
	refusal := func(err error) string {
		if errors.Is(err, ErrTooManyFromIP) {
			return "busy-ip\n"
		}
		return "busy\n"
	}
	h := startHarness(t, Options{MaxConnections: 2, MaxConnectionsPerIP: 1, Refusal: refusal, Deadlines: Deadlines{ShedAfter: time.Hour}}, nil)
	h.dialFrom("127.0.0.2")
	if l := h.dialNoGreeting("127.0.0.2").line(); l != "busy-ip" {
		t.Fatalf("second from one address: %q", l)
	}
	h.dialFrom("127.0.0.3")
	c := h.dialNoGreeting("127.0.0.4")
	if l := c.line(); l != "busy" {
		t.Fatalf("over the cap: %q", l)
	}
	if _, closed := c.closedAfter(time.Now()); !closed {
		t.Fatal("refused connection left open")
	}
}

// TestShutdownDrains: an idle connection ends at once, one in a transaction when it ends; then
// Shutdown returns. A second tracker shows the forced end when ctx expires first.
func TestShutdownDrains(t *testing.T) {
	h := startHarness(t, Options{}, nil)
	idle := h.dialFrom("127.0.0.1")
	busy := h.dialFrom("127.0.0.1")
	busy.cmd("MAIL")
	done := make(chan error, 1)
	go func() { done <- h.tr.Shutdown(context.Background()) }()
	if _, closed := idle.closedAfter(time.Now()); !closed {
		t.Fatal("idle connection not drained")
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with a transaction under way", err)
	case <-time.After(100 * time.Millisecond):
	}
	busy.cmd("DATA") // the transaction goes on
	busy.cmd("END")
	if _, closed := busy.closedAfter(time.Now()); !closed {
		t.Fatal("connection not closed after its transaction")
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return")
	}
	if err := h.tr.Shutdown(context.Background()); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}

	g := startHarness(t, Options{}, nil)
	stuck := g.dialFrom("127.0.0.1")
	stuck.cmd("MAIL")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := g.tr.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("forced Shutdown: %v", err)
	}
	if _, closed := stuck.closedAfter(time.Now()); !closed {
		t.Fatal("connection survived a forced Shutdown")
	}
}

// addrConn is a pipe end with the remote address of our choosing.
type addrConn struct {
	net.Conn
	addr net.Addr
}

func (c addrConn) RemoteAddr() net.Addr { return c.addr }

// TestAdmitConcurrent races admissions and closes (run it with -race): the caps hold at every
// moment, and every slot comes back.
func TestAdmitConcurrent(t *testing.T) {
	const total, perIP, workers, rounds = 8, 3, 16, 300 // 16 workers over 5 addresses can exceed both caps
	tr := NewTracker(Options{MaxConnections: total, MaxConnectionsPerIP: perIP, Deadlines: Deadlines{ShedAfter: time.Hour}})
	ips := []string{"192.0.2.1", "192.0.2.2", "2001:db8::1", "2001:db8::2", "2001:db8:0:1::1"}
	var (
		held    atomic.Int64
		refused atomic.Int64
		mu      sync.Mutex
		byB     = map[string]int{}
		wg      sync.WaitGroup
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < rounds; i++ {
				ip := ips[(w+i)%len(ips)]
				p1, p2 := net.Pipe()
				c, err := tr.Admit(addrConn{p1, &net.TCPAddr{IP: net.ParseIP(ip), Port: 1}})
				if err != nil {
					refused.Add(1)
					p1.Close()
					p2.Close()
					continue
				}
				b := c.bucket.String()
				mu.Lock()
				if byB[b]++; byB[b] > perIP {
					t.Errorf("%d connections from %s, cap %d", byB[b], b, perIP)
				}
				mu.Unlock()
				if n := held.Add(1); n > total {
					t.Errorf("%d connections held, cap %d", n, total)
				}
				held.Add(-1)
				mu.Lock()
				byB[b]--
				mu.Unlock()
				c.Close()
				c.Close() // harmless
				p2.Close()
			}
		}()
	}
	wg.Wait()
	if n := tr.Len(); n != 0 {
		t.Fatalf("%d connections counted after every close", n)
	}
	if len(tr.byBucket) != 0 {
		t.Fatalf("%d buckets left", len(tr.byBucket))
	}
	if refused.Load() == 0 {
		t.Log("no refusal happened this run")
	}
}

// TestWaitForHandlers: after a forced Shutdown, Wait returns only once every handler has
// returned (pop3d releases a maildrop there), including one still finishing after its
// connection was closed.
func TestWaitForHandlers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tr := NewTracker(Options{})
	var finished atomic.Bool
	served := make(chan error, 1)
	go func() {
		served <- tr.Serve(ln, nil, func(c *Conn, nc net.Conn) {
			defer nc.Close()
			c.BeginTransaction() // Shutdown cannot drain it: it must be forced
			lineServer(c, nc)
			time.Sleep(300 * time.Millisecond) // the release after the connection ends
			finished.Store(true)
		})
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := bufio.NewReader(nc).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := tr.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("forced Shutdown: %v", err)
	}
	tr.Wait()
	if !finished.Load() {
		t.Fatal("Wait returned before the handler did")
	}
	if err := <-served; !errors.Is(err, ErrClosed) {
		t.Errorf("Serve returned %v", err)
	}
}

// TestSetReadDeadlineDuringReadNeverLengthens: an engine that sets its own (later) read
// deadline again and again while a Read waits must not push the idle deadline back.
func TestSetReadDeadlineDuringReadNeverLengthens(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	tr := NewTracker(Options{IdleTimeout: 300 * time.Millisecond})
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	raw, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c, err := tr.Admit(raw)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := c.Read(make([]byte, 1))
		done <- err
	}()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if !isTimeout(err) {
				t.Fatalf("Read: %v, want the idle timeout", err)
			}
			if took := time.Since(start); took > 2*time.Second {
				t.Fatalf("idle deadline of 300 ms held for %v", took)
			}
			return
		case <-tick.C:
			if time.Since(start) > 5*time.Second {
				t.Fatal("the idle deadline was pushed back for 5 s by SetReadDeadline")
			}
			c.SetReadDeadline(time.Now().Add(time.Hour))
		}
	}
}
