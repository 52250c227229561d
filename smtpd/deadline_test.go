package smtpd

import (
	"encoding/base64"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"postie/netconn"
)

// Issue 9 items 5 and 6 for SMTP: a slowloris is dropped within the command and DATA
// deadlines, a TLS port without a handshake within the handshake deadline, and with the cap
// full of idle connections a real MX and a user still get in.

const testGrace = 300 * time.Millisecond

// slowDeadlines cut a command that is not complete within 300 ms plus its bytes at 100 B/s.
func slowDeadlines(o *Options) {
	o.IdleTimeout = 10 * time.Second
	o.Deadlines = netconn.Deadlines{CommandTimeout: testGrace, MinRate: 100, HandshakeTimeout: testGrace}
}

// trickle sends s one byte every 50 ms, until a write fails. (dialRawFrom is in input_test.go.)
func trickle(r *rawConn, s string) {
	for i := 0; i < len(s); i++ {
		if _, err := r.nc.Write([]byte{s[i]}); err != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestSlowlorisCommand(t *testing.T) {
	f := start(t, RoleMX, slowDeadlines)
	r := dialRaw(t, f.addr)
	start := time.Now()
	go trickle(r, "EHLO "+strings.Repeat("a", 200)+".example\r\n") // 10 s at this pace
	// go-smtp takes the partial line read before the timeout as a command (bufio.Reader.ReadLine
	// returns it without the error): one reply to it may come before the 421.
	code, msg, _ := r.tp.ReadResponse(0)
	if code != 421 {
		code, msg, _ = r.tp.ReadResponse(0)
	}
	if code != 421 || !strings.Contains(msg, "4.4.2") {
		t.Fatalf("slow command: %d %q, want 421 4.4.2", code, msg)
	}
	if !r.closed() {
		t.Fatal("slow command: connection left open")
	}
	if took := time.Since(start); took < testGrace || took > 3*time.Second {
		t.Fatalf("slow command dropped after %v, want soon after %v", took, testGrace)
	}
}

func TestSlowlorisData(t *testing.T) {
	f := start(t, RoleMX, slowDeadlines)
	r := dialRaw(t, f.addr)
	r.cmd(250, "EHLO client.example.net")
	r.cmd(250, "MAIL FROM:<a@remote.example>")
	r.cmd(250, "RCPT TO:<ann@example.test>")
	r.cmd(354, "DATA")
	start := time.Now()
	go trickle(r, "Subject: slow\r\n\r\n"+strings.Repeat("body ", 200)) // every byte 50 ms after the last
	r.expect(451)
	r.expect(421)
	if !r.closed() {
		t.Fatal("slow DATA: connection left open")
	}
	if took := time.Since(start); took < testGrace || took > 3*time.Second {
		t.Fatalf("slow DATA dropped after %v, want soon after %v", took, testGrace)
	}
	if n := len(f.deliv.all()); n != 0 {
		t.Fatalf("%d messages delivered from a dropped DATA", n)
	}

	// A message far longer in time than the grace, arriving far above the rate, is taken.
	ok := dialRaw(t, f.addr)
	ok.cmd(250, "EHLO client.example.net")
	ok.cmd(250, "MAIL FROM:<a@remote.example>")
	ok.cmd(250, "RCPT TO:<ann@example.test>")
	ok.cmd(354, "DATA")
	ok.write("Subject: steady\r\n\r\n")
	for i := 0; i < 10; i++ { // 1 s in all, 10 kB/s
		ok.write(strings.Repeat("x", 998) + "\r\n")
		time.Sleep(100 * time.Millisecond)
	}
	ok.write(".\r\n")
	ok.expect(250)
}

func TestImplicitTLSHandshakeDeadline(t *testing.T) {
	f := start(t, RoleSubmission, slowDeadlines)
	addr := f.serveTLS(t)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	start := time.Now()
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := nc.Read(make([]byte, 1)); isTimeout(err) {
		t.Fatal("a TLS port waited 5 s for a handshake")
	}
	if took := time.Since(start); took < testGrace-50*time.Millisecond || took > 3*time.Second {
		t.Fatalf("no handshake: dropped after %v, want about %v", took, testGrace)
	}
	// A client that does its handshake is served past the deadline.
	c, err := smtp.DialTLS(addr, clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(2 * testGrace)
	if err := c.Hello("client.example.net"); err != nil {
		t.Fatal(err)
	}
}

// TestSTARTTLSHandshakeDeadline: after "220 Ready to start TLS" a silent client is dropped
// at the handshake deadline, not kept until the idle timeout (10 s here).
func TestSTARTTLSHandshakeDeadline(t *testing.T) {
	f := start(t, RoleMX, slowDeadlines)
	r := dialRaw(t, f.addr)
	r.cmd(250, "EHLO client.example.net")
	r.cmd(220, "STARTTLS")
	start := time.Now()
	r.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.nc.Read(make([]byte, 1)); isTimeout(err) {
		t.Fatal("the server waited 5 s for a handshake after STARTTLS")
	}
	if took := time.Since(start); took < testGrace-50*time.Millisecond || took > 3*time.Second {
		t.Fatalf("no handshake: dropped after %v, want about %v", took, testGrace)
	}
	// A client that does its handshake is served past the deadline.
	c := dialStartTLS(t, f.addr)
	time.Sleep(2 * testGrace)
	if err := c.Noop(); err != nil {
		t.Fatal(err)
	}
}

// TestCapFullOfIdle: the cap is held by idle connections from many addresses; a real MX
// delivers, and on submission a user logs in and sends, while the authenticated users already
// there keep their connections and the idle ones that never logged in are shed.
func TestCapFullOfIdle(t *testing.T) {
	const capacity = 40
	shedFast := func(o *Options) {
		o.MaxConnections, o.MaxConnectionsPerIP = capacity, 5
		o.Deadlines.ShedAfter = 100 * time.Millisecond
	}
	f := start(t, RoleMX, shedFast)
	var idle []*rawConn
	for i := 0; i < capacity; i++ {
		idle = append(idle, dialRawFrom(t, f.addr, fmt.Sprintf("127.0.1.%d", 1+i/4))) // 10 addresses
	}
	time.Sleep(150 * time.Millisecond)
	mx := dialRawFrom(t, f.addr, "127.0.2.1")
	mx.cmd(250, "EHLO mx.remote.example")
	mx.cmd(250, "MAIL FROM:<a@remote.example>")
	mx.cmd(250, "RCPT TO:<ann@example.test>")
	mx.cmd(354, "DATA")
	mx.write(simpleMsg + ".\r\n")
	mx.expect(250)
	if len(f.deliv.all()) != 1 {
		t.Fatal("the real MX's message was not delivered")
	}
	if !idle[0].closed() {
		t.Fatal("the longest idle connection was not shed")
	}

	g := start(t, RoleSubmission, shedFast)
	plain := base64.StdEncoding.EncodeToString([]byte("\x00ann@example.test\x00secret"))
	user := dialRawFrom(t, g.addr, "127.0.3.1")
	user.cmd(250, "EHLO laptop")
	user.cmd(235, "AUTH PLAIN %s", plain)
	var anon []*rawConn
	for i := 0; i < capacity-1; i++ { // one address each: nobody over their share
		anon = append(anon, dialRawFrom(t, g.addr, fmt.Sprintf("127.0.4.%d", 1+i)))
	}
	time.Sleep(150 * time.Millisecond) // everyone is idle, the user longest
	late := dialRawFrom(t, g.addr, "127.0.3.2")
	late.cmd(250, "EHLO phone")
	late.cmd(235, "AUTH PLAIN %s", plain)
	late.cmd(250, "MAIL FROM:<ann@example.test>")
	late.cmd(250, "RCPT TO:<someone@remote.example>")
	late.cmd(354, "DATA")
	late.write("From: ann@example.test\r\nTo: someone@remote.example\r\nSubject: hi\r\n\r\nHello.\r\n.\r\n")
	late.expect(250)
	user.cmd(250, "NOOP")  // the authenticated connection idle longest was kept
	if !anon[0].closed() { // and the unauthenticated one idle longest was shed instead
		t.Fatal("the longest idle unauthenticated connection was not shed")
	}
	if n := g.srv.activeConns(); n > capacity {
		t.Fatalf("%d connections held, cap %d", n, capacity)
	}
}

// A command line cut short by the deadline is not acted on: bufio hands
// go-smtp the part that came in time as if it were a whole line, but a
// RCPT whose CRLF never came adds no recipient, and a MAIL starts no
// transaction.
func TestCommandCutShortIsNotActedOn(t *testing.T) {
	f := start(t, RoleMX, slowDeadlines)
	for _, tc := range []struct {
		setup []string
		cut   string
	}{
		{nil, "MAIL FROM:<a@remote.example>"},
		{[]string{"MAIL FROM:<a@remote.example>"}, "RCPT TO:<ann@example.test>"},
	} {
		r := dialRaw(t, f.addr)
		r.cmd(250, "EHLO client.example.net")
		for _, c := range tc.setup {
			r.cmd(250, "%s", c)
		}
		r.write(tc.cut) // no CRLF: the line is never finished
		code, msg, _ := r.tp.ReadResponse(0)
		if code != 421 || !strings.Contains(msg, "4.4.2") {
			t.Errorf("%q cut short: %d %q, want 421 4.4.2 and nothing done", tc.cut, code, msg)
		}
		// go-smtp says its own 421 when it reads the timeout next.
		if code, msg, err := r.tp.ReadResponse(421); err != nil {
			t.Errorf("%q cut short, then: %d %q %v, want go-smtp's 421", tc.cut, code, msg, err)
		}
		if !r.closed() {
			t.Errorf("%q cut short: connection left open", tc.cut)
		}
	}
	if got := f.rcpts.checkedList(); len(got) != 0 {
		t.Errorf("recipients checked for lines cut short: %q", got)
	}
}
