package smtpd

import (
	"net"
	"net/netip"
	"net/textproto"
	"strings"
	"testing"
	"time"
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
	for _, c := range f.rcpts.checkedList() {
		if strings.HasPrefix(c, "postmaster@") {
			t.Errorf("CheckRecipient asked about %s: postmaster is always ours", c)
		}
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
