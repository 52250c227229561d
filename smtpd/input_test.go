package smtpd

import (
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"net/textproto"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// dialRawFrom is dialRaw from the local address ip (127.0.0.2 and up
// stand in for clients elsewhere: they are not loopback-trusted).
func dialRawFrom(t testing.TB, addr, ip string) *rawConn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	r := &rawConn{t: t, nc: nc, tp: textproto.NewConn(nc)}
	r.expect(220)
	return r
}

// RFC 5321 §4.1.1.3 and §4.5.1: RCPT TO:<Postmaster>, without a domain and
// in any case, is accepted and delivered to the configured postmaster.
func TestMXBarePostmaster(t *testing.T) {
	f := start(t, RoleMX, func(o *Options) { o.Postmaster = "postmaster@example.org" })
	r := dialRaw(t, f.addr)
	r.cmd(250, "EHLO client.example.net")
	r.cmd(250, "MAIL FROM:<a@remote.example>")
	for _, rcpt := range []string{"<postmaster>", "<Postmaster>", "<POSTMASTER>", "<pOsTmAsTeR>"} {
		r.cmd(250, "RCPT TO:%s", rcpt)
	}
	r.cmd(250, "RCPT TO:<ann@example.test>")
	r.cmd(354, "DATA")
	r.write(simpleMsg + ".\r\n")
	r.expect(250)
	got := f.deliv.last(t).env.To
	if strings.Join(got, ",") != "postmaster@example.org,ann@example.test" {
		t.Fatalf("delivered to %q, want the configured postmaster once, then ann", got)
	}
	if got := f.rcpts.checkedList(); len(got) != 1 || got[0] != "ann@example.test" {
		t.Errorf("CheckRecipient asked about %q, want only ann@example.test: postmaster is always ours", got)
	}

	// Only the exact word, and only as a recipient.
	r.cmd(250, "MAIL FROM:<a@remote.example>")
	for _, bad := range []string{"<postmasterx>", "<postmaster", "<post master>", "<xpostmaster>"} {
		r.cmd(501, "RCPT TO:%s", bad)
	}
	r.cmd(250, "RSET")
	r.cmd(501, "MAIL FROM:<postmaster>")

	// Without Options.Postmaster it is postmaster@Hostname.
	g := start(t, RoleMX, func(o *Options) { o.Hostname = "example.test" })
	s := dialRaw(t, g.addr)
	s.cmd(250, "EHLO client.example.net")
	s.cmd(250, "MAIL FROM:<a@remote.example>")
	s.cmd(250, "RCPT TO:<Postmaster>")
	s.cmd(354, "DATA")
	s.write(simpleMsg + ".\r\n")
	s.expect(250)
	if got := g.deliv.last(t).env.To; len(got) != 1 || got[0] != "postmaster@example.test" {
		t.Fatalf("delivered to %q, want postmaster@example.test", got)
	}
}

// The MX rate limit spares Options.TrustedNetworks (a local application's
// burst) and still applies to everyone else, including other loopback
// addresses.
func TestRateLimitSparesTrustedNetworks(t *testing.T) {
	f := start(t, RoleMX, func(o *Options) {
		o.MessagesPerMinutePerIP = 2
		o.TrustedNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("::1/128")}
	})
	sendRaw := func(r *rawConn, code int) {
		t.Helper()
		if r.cmd(code, "MAIL FROM:<a@remote.example>"); code != 250 {
			return
		}
		r.cmd(250, "RCPT TO:<ann@example.test>")
		r.cmd(354, "DATA")
		r.write(simpleMsg + ".\r\n")
		r.expect(250)
	}
	local := dialRaw(t, f.addr)
	local.cmd(250, "EHLO app.example.test")
	for range 5 {
		sendRaw(local, 250)
	}
	outside := dialRawFrom(t, f.addr, "127.0.0.2")
	outside.cmd(250, "EHLO client.example.net")
	sendRaw(outside, 250)
	sendRaw(outside, 250)
	if msg := outside.cmd(450, "MAIL FROM:<a@remote.example>"); !strings.HasPrefix(msg, "4.7.1") {
		t.Fatalf("over the limit from 127.0.0.2: %q", msg)
	}
}

// replyLines reads one reply as the raw lines sent.
func (r *rawConn) replyLines() []string {
	r.t.Helper()
	var lines []string
	for {
		l, err := r.tp.ReadLine()
		if err != nil {
			r.t.Fatalf("reading reply after %q: %v", lines, err)
		}
		lines = append(lines, l)
		if len(l) < 4 || l[3] != '-' {
			return lines
		}
	}
}

// rawCmd sends line as is (it may hold any byte) and returns the reply.
func (r *rawConn) rawCmd(line string) []string {
	r.t.Helper()
	r.write(line + "\r\n")
	return r.replyLines()
}

func wantNoControl(t *testing.T, what string, lines []string) {
	t.Helper()
	for _, l := range lines {
		if hasControl(l) || !utf8.ValidString(l) {
			t.Errorf("%s: reply line %q holds a control character or invalid UTF-8", what, l)
		}
	}
}

var badHelos = []string{
	"a\x1b[31mred", "a\x00b", "a\tb", "a\rb", "a\x7fb", "a\u009bb", "\xff\xfe", strings.Repeat("x", maxHeloLen+1),
}

// An EHLO/HELO argument with control characters (or not UTF-8, or too
// long) gets 501 5.5.2 and is never echoed; the client may try again. A
// plain odd name is fine.
func TestEHLOArgument(t *testing.T) {
	f := start(t, RoleMX, nil)
	r := dialRaw(t, f.addr)
	for _, h := range badHelos {
		for _, verb := range []string{"EHLO", "HELO"} {
			reply := r.rawCmd(verb + " " + h)
			wantNoControl(t, verb+" "+h, reply)
			if len(reply) != 1 || !strings.HasPrefix(reply[0], "501 5.5.2 ") {
				t.Errorf("%s %q: reply %q, want 501 5.5.2", verb, h, reply)
			}
		}
	}
	r.cmd(503, "MAIL FROM:<a@remote.example>") // no session yet: bad sequence
	for _, h := range []string{"DESKTOP_4F2", "[192.0.2.1]", "[IPv6:2001:db8::1]", "bücher.example", "x"} {
		r.cmd(250, "EHLO %s", h)
	}
	r.cmd(250, "MAIL FROM:<a@remote.example>")
	r.cmd(250, "RCPT TO:<ann@example.test>")
	r.cmd(354, "DATA")
	r.write(simpleMsg + ".\r\n")
	r.expect(250)
	if got := f.deliv.last(t).env.Helo; got != "x" {
		t.Errorf("Helo %q, want the last EHLO's x", got)
	}
	logs := f.logs.String()
	if !hasLine(logs, "EHLO refused") {
		t.Error("refused EHLO not logged")
	}
	if strings.ContainsAny(logs, "\x00\x1b\x7f\r") {
		t.Errorf("raw control characters in the log:\n%q", logs)
	}
}

// A repeated EHLO with a bad argument: go-smtp has taken it before our
// code runs and would echo it, so the server answers 501 itself and
// closes; commands pipelined after it are not acted on.
func TestRepeatedEHLOArgument(t *testing.T) {
	f := start(t, RoleMX, nil)
	for _, h := range badHelos {
		r := dialRaw(t, f.addr)
		r.cmd(250, "EHLO client.example.net")
		r.write("EHLO " + h + "\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<ann@example.test>\r\nDATA\r\n" + simpleMsg + ".\r\n")
		reply := r.replyLines()
		wantNoControl(t, "EHLO "+h, reply)
		if len(reply) != 1 || !strings.HasPrefix(reply[0], "501 5.5.2 ") {
			t.Errorf("repeated EHLO %q: reply %q, want 501 5.5.2", h, reply)
		}
		rest, err := io.ReadAll(r.tp.R)
		if len(rest) > 0 || err != nil {
			t.Fatalf("after the refused EHLO %q the server sent %q (%v), want the connection closed", h, rest, err)
		}
	}
	if n := len(f.deliv.all()); n != 0 {
		t.Fatalf("%d messages delivered from connections that were hung up", n)
	}

	// The same inside STARTTLS, where go-smtp starts a new session.
	r := dialRaw(t, f.addr)
	r.cmd(250, "EHLO client.example.net")
	r.cmd(220, "STARTTLS")
	tc := tls.Client(r.nc, clientTLS)
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	s := &rawConn{t: t, nc: tc, tp: textproto.NewConn(tc)}
	wantNoControl(t, "EHLO over TLS", s.rawCmd("EHLO a\x1bb"))
	s.cmd(250, "EHLO client.example.net")
	reply := s.rawCmd("EHLO a\x1bb")
	if wantNoControl(t, "repeated EHLO over TLS", reply); !strings.HasPrefix(reply[0], "501 5.5.2 ") {
		t.Fatalf("repeated EHLO over TLS: %q", reply)
	}
	if !s.closed() {
		t.Fatal("connection left open after a refused repeated EHLO over TLS")
	}
}

// One connection's refusals cost at most maxRefusalLogs+1 log lines;
// another connection has its own allowance.
func TestRefusalLogsAreBounded(t *testing.T) {
	f := start(t, RoleMX, nil)
	r := dialRaw(t, f.addr)
	for range 10 {
		r.rawCmd("EHLO bad\x01")
	}
	r.cmd(250, "EHLO client.example.net")
	r.cmd(250, "MAIL FROM:<a@remote.example>")
	for range maxRcptErrors - 1 { // the 20th would end the connection
		r.cmd(554, "RCPT TO:<x@elsewhere.example>")
	}
	r.cmd(221, "QUIT")
	waitFor(t, "the connection to close", func() bool { return f.srv.activeConns() == 0 })
	logs := f.logs.String()
	refused := strings.Count(logs, "EHLO refused") + strings.Count(logs, "RCPT refused")
	if refused != maxRefusalLogs || strings.Count(logs, "further refusals on this connection are not logged") != 1 {
		t.Fatalf("%d refusals logged, want %d and one line saying the rest are not:\n%s", refused, maxRefusalLogs, logs)
	}
	s := dialRaw(t, f.addr)
	s.cmd(250, "EHLO client.example.net")
	s.cmd(250, "MAIL FROM:<a@remote.example>")
	s.cmd(554, "RCPT TO:<y@elsewhere.example>")
	if !hasLine(f.logs.String(), "to=y@elsewhere.example") {
		t.Fatal("a new connection's refusal was not logged")
	}
}

// Addresses with control characters are refused with 501, never echoed
// in a 250: envelope's rules let C1 controls, and any control inside an
// address literal, through.
func TestAddressesWithControls(t *testing.T) {
	f := start(t, RoleSubmission, nil)
	r := dialRaw(t, f.addr)
	r.cmd(250, "EHLO client.example.net")
	r.cmd(235, "AUTH PLAIN %s", b64("\x00ann@example.test\x00secret"))
	for _, from := range []string{"ann\u0085@example.test", "ann@example.test\u009b"} {
		reply := r.rawCmd("MAIL FROM:<" + from + ">")
		if wantNoControl(t, "MAIL "+from, reply); !strings.HasPrefix(reply[0], "501 ") {
			t.Errorf("MAIL FROM:<%q>: %q, want 501", from, reply)
		}
	}
	r.cmd(250, "MAIL FROM:<ann@example.test>")
	for _, to := range []string{"x@[192.0.2.1\x01]", "x@[\x1b[31m]", "x\u0080@elsewhere.example", "x@elsewhere\u009f.example"} {
		reply := r.rawCmd("RCPT TO:<" + to + ">")
		if wantNoControl(t, "RCPT "+to, reply); !strings.HasPrefix(reply[0], "501 ") {
			t.Errorf("RCPT TO:<%q>: %q, want 501", to, reply)
		}
	}
	r.cmd(250, "RCPT TO:<x@[192.0.2.1]>")
	if strings.ContainsAny(f.logs.String(), "\x01\x1b\u0080\u0085\u009b\u009f") {
		t.Errorf("raw control characters in the log:\n%q", f.logs)
	}
}

// A malformed SASL PLAIN response is the client's error: 501 5.5.2, not
// go-smtp's 454 4.7.0 (temporary). It is no failed password either.
func TestAuthMalformedResponse(t *testing.T) {
	f := start(t, RoleSubmission, nil)
	r := dialRaw(t, f.addr)
	r.cmd(250, "EHLO client.example.net")
	for range 4 {
		if msg := r.cmd(501, "AUTH PLAIN %s", b64("no separators")); !strings.HasPrefix(msg, "5.5.2") {
			t.Fatalf("malformed PLAIN: %q", msg)
		}
	}
	r.cmd(334, "AUTH PLAIN")
	r.cmd(501, "=")
	r.cmd(334, "AUTH PLAIN")
	r.cmd(501, "%s", b64("a\x00b"))
	r.cmd(235, "AUTH PLAIN %s", b64("\x00ann@example.test\x00secret"))
	f.auth.mu.Lock()
	n := len(f.auth.logins)
	f.auth.mu.Unlock()
	if n != 1 {
		t.Fatalf("Login called %d times, want once", n)
	}
}

// Commands pipelined after QUIT reach go-smtp after it has closed the
// session, and it panics on the nil Session (and recovers) for each one.
// That is go-smtp's bug and harmless, but it must not cost an error line
// with a stack trace per command: a few bytes of input would write
// hundreds of them.
func TestCommandsAfterQUIT(t *testing.T) {
	f := start(t, RoleMX, nil)
	r := dialRaw(t, f.addr)
	r.write("EHLO client.example.net\r\nMAIL FROM:<a@remote.example>\r\nQUIT\r\n" +
		strings.Repeat("MAIL FROM:<a@remote.example>\r\nRCPT TO:<ann@example.test>\r\nDATA\r\nBDAT 1 LAST\r\nx", 20))
	r.replyLines()
	r.expect(250)
	r.expect(221)
	if !r.closed() {
		t.Fatal("connection open after QUIT")
	}
	waitFor(t, "the connection to end", func() bool { return f.srv.activeConns() == 0 })
	logs := f.logs.String()
	if n := strings.Count(logs, "level=ERROR") + strings.Count(logs, "level=WARN"); n > 0 {
		t.Fatalf("%d error or warning lines for commands after QUIT:\n%.2000s", n, logs)
	}
	if n := len(f.deliv.all()); n != 0 {
		t.Fatalf("%d messages delivered after QUIT", n)
	}
}
