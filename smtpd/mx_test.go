package smtpd

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"postie/envelope"
	"postie/netconn"
)

func TestMXBannerAndEHLO(t *testing.T) {
	f := start(t, RoleMX, func(o *Options) { o.MaxMessageBytes = 1 << 20 })
	if msg := dialRawNoBanner(t, f.addr).expect(220); !strings.HasPrefix(msg, "mx.example.test ") {
		t.Fatalf("banner %q lacks the hostname", msg)
	}
	c := dial(t, f.addr)
	for _, ext := range []string{"PIPELINING", "8BITMIME", "SMTPUTF8", "SIZE", "ENHANCEDSTATUSCODES", "STARTTLS", "CHUNKING"} {
		if ok, _ := c.Extension(ext); !ok {
			t.Errorf("EHLO lacks %s", ext)
		}
	}
	if _, p := c.Extension("SIZE"); p != "1048576" {
		t.Errorf("SIZE %q, want 1048576", p)
	}
	if ok, _ := c.Extension("AUTH"); ok {
		t.Error("the MX role advertises AUTH")
	}
	// Not after STARTTLS either.
	tc := dialStartTLS(t, f.addr)
	if ok, _ := tc.Extension("AUTH"); ok {
		t.Error("the MX role advertises AUTH over TLS")
	}
	if ok, _ := tc.Extension("STARTTLS"); ok {
		t.Error("STARTTLS advertised inside TLS")
	}
	// AUTH is not a command of this role: 502, not a TLS or temporary error.
	r := dialRaw(t, f.addr)
	r.cmd(250, "EHLO client.example.net")
	if msg := r.cmd(502, "AUTH PLAIN %s", b64("\x00ann@example.test\x00secret")); !strings.HasPrefix(msg, "5.7.0") {
		t.Errorf("AUTH on the MX: %q", msg)
	}
}

func TestMXRecipients(t *testing.T) {
	f := start(t, RoleMX, nil)
	f.rcpts.errs = map[string]error{
		"gone@example.test": envelope.ErrUnknownUser,
		"full@example.test": envelope.ErrQuotaExceeded,
		"busy@example.test": envelope.Temp(errors.New("disk")),
		"odd@example.test":  errors.New("a plain error"),
	}
	c := dial(t, f.addr)
	wantCode(t, "MAIL", c.Mail("sender@remote.example", nil), 0, "")
	for _, tc := range []struct {
		rcpt     string
		code     int
		enhanced string
	}{
		{"ann@example.test", 0, ""},
		{"Ann@EXAMPLE.ORG", 0, ""},
		{"someone@elsewhere.example", 554, "5.7.1"},
		{"someone@example.test.evil.example", 554, "5.7.1"},
		{"gone@example.test", 550, "5.1.1"},
		{"full@example.test", 552, "5.2.2"},
		{"busy@example.test", 451, "4.3.0"},
		{"odd@example.test", 451, "4.3.0"},
		{"../../etc/passwd@example.test", 501, "5.1.3"},
		{"PostMaster@example.org", 0, ""},
		{"postmaster@example.test", 0, ""},
		{"postmaster@elsewhere.example", 554, "5.7.1"},
	} {
		wantCode(t, "RCPT "+tc.rcpt, c.Rcpt(tc.rcpt, nil), tc.code, tc.enhanced)
	}
	// Exactly the local, non-postmaster recipients are looked up, once
	// each (postmaster is always ours; the rest fail before).
	want := "ann@example.test Ann@example.org gone@example.test full@example.test busy@example.test odd@example.test"
	if got := strings.Join(f.rcpts.checkedList(), " "); got != want {
		t.Errorf("CheckRecipient asked about %s, want %s", got, want)
	}
	if !hasLine(f.logs.String(), "RCPT refused") {
		t.Error("refused RCPT not logged")
	}
}

func TestMXDeliver(t *testing.T) {
	f := start(t, RoleMX, nil)
	c := dial(t, f.addr)
	msg := "Subject: one\r\n\r\nline 1\r\n.leading dot\r\n"
	resp, err := send(c, "Sender@Remote.Example", []string{"ann@example.test", "Bob@Example.TEST", "ann@example.test"}, msg)
	wantCode(t, "send", err, 0, "")
	d := f.deliv.last(t)
	if !strings.Contains(resp.StatusText, d.env.ID) || d.env.ID == "" {
		t.Errorf("reply %q does not carry the id %q", resp.StatusText, d.env.ID)
	}
	if string(d.body) != msg {
		t.Errorf("body %q, want %q", d.body, msg)
	}
	e := d.env
	if e.From != "Sender@remote.example" || strings.Join(e.To, ",") != "ann@example.test,Bob@example.test" {
		t.Errorf("envelope from %q to %q", e.From, e.To)
	}
	if e.RemoteAddr != "127.0.0.1" || e.Helo != "client.example.net" || e.Protocol != "ESMTP" || e.TLS != "" || !e.Received.Equal(testNow) || e.AuthUser != "" {
		t.Errorf("trace fields %+v", e)
	}
	// A second transaction on the same connection gets its own id; the
	// null sender is fine on the MX.
	_, err = send(c, "", []string{"ann@example.test"}, msg)
	wantCode(t, "second send", err, 0, "")
	all := f.deliv.all()
	if len(all) != 2 || all[0].env.ID == all[1].env.ID || all[1].env.From != "" {
		t.Fatalf("deliveries %+v", all)
	}
	logs := f.logs.String()
	if !hasLine(logs, "id="+e.ID) || !hasLine(logs, "outcome=accepted") {
		t.Errorf("no message log line:\n%s", logs)
	}
}

func TestMXDeliverOverTLS(t *testing.T) {
	f := start(t, RoleMX, nil)
	c := dialStartTLS(t, f.addr)
	_, err := send(c, "a@remote.example", []string{"ann@example.test"}, simpleMsg)
	wantCode(t, "send", err, 0, "")
	e := f.deliv.last(t).env
	if e.Protocol != "ESMTPS" || !strings.HasPrefix(e.TLS, "TLS1.3 TLS_") {
		t.Errorf("protocol %q tls %q", e.Protocol, e.TLS)
	}
}

func TestMXBadSender(t *testing.T) {
	f := start(t, RoleMX, nil)
	r := dialRaw(t, f.addr)
	r.cmd(250, "EHLO client.example.net")
	r.cmd(501, "MAIL FROM:<a@bad_domain!>")
	r.cmd(501, "MAIL FROM:<\"a\\\rb\"@remote.example>")
	r.cmd(250, "MAIL FROM:<odd/but+legal@remote.example>")
	r.cmd(503, "MAIL FROM:<again@remote.example>")
}

// TestDataResults: the DATA reply and the log for each shape of
// per-recipient results, including a Delivery that returns too few (a
// missing result is a failure for that recipient, never a success).
func TestDataResults(t *testing.T) {
	for _, tc := range []struct {
		name     string
		result   func(*envelope.Envelope) []error
		code     int
		enhanced string
		logs     []string // each must be on some line of the log
	}{
		{"plain error is temporary", func(e *envelope.Envelope) []error {
			return []error{errors.New("disk full"), errors.New("disk full")}
		}, 451, "4.3.0", []string{"outcome=refused code=451"}},
		{"all permanent", func(e *envelope.Envelope) []error {
			return []error{envelope.ErrQuotaExceeded, envelope.ErrQuotaExceeded}
		}, 552, "5.2.2", []string{"outcome=refused code=552"}},
		{"temporary wins over permanent", func(e *envelope.Envelope) []error {
			return []error{envelope.ErrQuotaExceeded, envelope.ErrTempLocal}
		}, 451, "4.3.0", []string{"outcome=refused code=451"}},
		{"partial success is accepted", func(e *envelope.Envelope) []error {
			return []error{nil, envelope.ErrQuotaExceeded}
		}, 0, "", []string{"not delivered to one recipient", "to=bob@example.test", "outcome=partial code=250", "failed=1"}},
		{"missing results are not successes", func(e *envelope.Envelope) []error {
			return []error{nil}
		}, 0, "", []string{"wrong number of results", "not delivered to one recipient", "to=bob@example.test", "outcome=partial code=250", "failed=1"}},
		{"too few results, none ok", func(e *envelope.Envelope) []error { return nil }, 451, "4.3.0",
			[]string{"wrong number of results", "outcome=refused code=451"}},
		{"extra results are ignored", func(e *envelope.Envelope) []error {
			return []error{nil, envelope.ErrQuotaExceeded, nil}
		}, 0, "", []string{"wrong number of results", "to=bob@example.test", "outcome=partial code=250", "failed=1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := start(t, RoleMX, nil)
			f.deliv.result = tc.result
			c := dial(t, f.addr)
			_, err := send(c, "a@remote.example", []string{"ann@example.test", "bob@example.test"}, simpleMsg)
			wantCode(t, "DATA", err, tc.code, tc.enhanced)
			logs := f.logs.String()
			for _, want := range tc.logs {
				if !hasLine(logs, want) {
					t.Errorf("no log line with %q:\n%s", want, logs)
				}
			}
		})
	}
}

func TestSizeLimit(t *testing.T) {
	f := start(t, RoleMX, func(o *Options) { o.MaxMessageBytes = 1000 })
	c := dial(t, f.addr)
	wantCode(t, "MAIL SIZE", c.Mail("a@remote.example", &smtp.MailOptions{Size: 5000}), 552, "5.3.4")
	big := simpleMsg + strings.Repeat("x", 78) + "\r\n"
	big = big + strings.Repeat(strings.Repeat("y", 78)+"\r\n", 20)
	_, err := send(c, "a@remote.example", []string{"ann@example.test"}, big)
	wantCode(t, "DATA too large", err, 552, "5.3.4")
	if n := len(f.deliv.all()); n != 0 {
		t.Fatalf("%d deliveries recorded for an oversized message", n)
	}
	// The connection goes on.
	_, err = send(c, "a@remote.example", []string{"ann@example.test"}, simpleMsg)
	wantCode(t, "send after", err, 0, "")
	// BDAT is limited too.
	r := dialRaw(t, f.addr)
	r.cmd(250, "EHLO client.example.net")
	r.cmd(250, "MAIL FROM:<a@remote.example>")
	r.cmd(250, "RCPT TO:<ann@example.test>")
	r.write("BDAT 1500 LAST\r\n" + strings.Repeat("z", 1500))
	r.expect(552)
}

func TestMaxRecipients(t *testing.T) {
	f := start(t, RoleMX, func(o *Options) { o.MaxRecipients = 2 })
	c := dial(t, f.addr)
	wantCode(t, "MAIL", c.Mail("a@remote.example", nil), 0, "")
	wantCode(t, "RCPT 1", c.Rcpt("a1@example.test", nil), 0, "")
	wantCode(t, "RCPT 2", c.Rcpt("a2@example.test", nil), 0, "")
	wantCode(t, "RCPT 3", c.Rcpt("a3@example.test", nil), 452, "4.5.3")
}

// "\n.\n" (and the other bare-LF/CR forms) must not end the message: that
// is SMTP smuggling. Only CRLF.CRLF does.
func TestNoSmugglingInData(t *testing.T) {
	f := start(t, RoleMX, nil)
	r := dialRaw(t, f.addr)
	r.cmd(250, "EHLO client.example.net")
	r.cmd(250, "MAIL FROM:<a@remote.example>")
	r.cmd(250, "RCPT TO:<ann@example.test>")
	r.cmd(354, "DATA")
	smuggled := "Subject: x\r\n\r\nbody\n.\nMAIL FROM:<evil@remote.example>\nRCPT TO:<bob@example.test>\r.\rend\r\n.\n"
	r.write(smuggled + "tail\r\n.\r\n")
	r.expect(250)
	r.cmd(221, "QUIT")
	all := f.deliv.all()
	if len(all) != 1 {
		t.Fatalf("%d messages delivered, want 1", len(all))
	}
	// go-smtp removes the dot after a CRLF as dot-stuffing (".\n" → "\n").
	want := "Subject: x\r\n\r\nbody\n.\nMAIL FROM:<evil@remote.example>\nRCPT TO:<bob@example.test>\r.\rend\r\n\ntail\r\n"
	if got := string(all[0].body); got != want {
		t.Fatalf("body %q, want %q", got, want)
	}
}

func TestConnectionLimits(t *testing.T) {
	f := start(t, RoleMX, func(o *Options) { o.MaxConnectionsPerIP = 2 })
	a := dialRaw(t, f.addr)
	dialRaw(t, f.addr)
	third := dialRawNoBanner(t, f.addr)
	if msg := third.expect(421); !strings.HasPrefix(msg, "4.7.0") {
		t.Fatalf("over the limit: %q", msg)
	}
	if !third.closed() {
		t.Fatal("refused connection left open")
	}
	// One goes, another may come.
	a.cmd(221, "QUIT")
	waitFor(t, "the slot to free", func() bool { return f.srv.activeConns() == 1 })
	dialRaw(t, f.addr)

	// The total limit, with nothing idle long enough to be shed.
	noShed := netconn.Deadlines{ShedAfter: time.Hour}
	g := start(t, RoleMX, func(o *Options) { o.MaxConnections = 1; o.Deadlines = noShed })
	dialRaw(t, g.addr)
	over := dialRawNoBanner(t, g.addr)
	over.expect(421)

	// Implicit TLS: the refusal comes through TLS.
	h := start(t, RoleSubmission, func(o *Options) { o.MaxConnections = 1; o.Deadlines = noShed })
	tlsAddr := h.serveTLS(t)
	first, err := smtp.DialTLS(tlsAddr, clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if err := first.Hello("client.example.net"); err != nil {
		t.Fatal(err)
	}
	second, err := smtp.DialTLS(tlsAddr, clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	wantCode(t, "TLS over the limit", second.Hello("client.example.net"), 421, "4.7.0")
}

func TestRateLimitPerIP(t *testing.T) {
	var mu sync.Mutex
	now := testNow
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	f := start(t, RoleMX, func(o *Options) { o.MessagesPerMinutePerIP = 2; o.Now = clock })
	c := dial(t, f.addr)
	// A transaction that delivers nothing does not count.
	wantCode(t, "MAIL", c.Mail("a@remote.example", nil), 0, "")
	wantCode(t, "RSET", c.Reset(), 0, "")
	for i := 0; i < 2; i++ {
		_, err := send(c, "a@remote.example", []string{"ann@example.test"}, simpleMsg)
		wantCode(t, "send", err, 0, "")
	}
	wantCode(t, "MAIL over the rate", c.Mail("a@remote.example", nil), 450, "4.7.1")
	mu.Lock()
	now = now.Add(61 * time.Second)
	mu.Unlock()
	_, err := send(c, "a@remote.example", []string{"ann@example.test"}, simpleMsg)
	wantCode(t, "send a minute later", err, 0, "")
}

func TestIdleTimeout(t *testing.T) {
	f := start(t, RoleMX, func(o *Options) { o.IdleTimeout = 300 * time.Millisecond })
	// A silent client is told and dropped.
	silent := dialRaw(t, f.addr)
	silent.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if msg := silent.expect(421); !strings.Contains(msg, "4.4.2") {
		t.Fatalf("idle reply %q", msg)
	}
	if !silent.closed() {
		t.Fatal("idle connection left open")
	}

	// A slow but steady DATA (1.5 s in all, a line every 100 ms) is fine.
	r := dialRaw(t, f.addr)
	r.cmd(250, "EHLO client.example.net")
	r.cmd(250, "MAIL FROM:<a@remote.example>")
	r.cmd(250, "RCPT TO:<ann@example.test>")
	r.cmd(354, "DATA")
	r.write("Subject: slow\r\n\r\n")
	for i := 0; i < 15; i++ {
		time.Sleep(100 * time.Millisecond)
		r.write("line\r\n")
	}
	r.write(".\r\n")
	r.expect(250)

	// Silence in the middle of DATA: dropped, and nothing delivered.
	before := len(f.deliv.all())
	s := dialRaw(t, f.addr)
	s.cmd(250, "EHLO client.example.net")
	s.cmd(250, "MAIL FROM:<a@remote.example>")
	s.cmd(250, "RCPT TO:<ann@example.test>")
	s.cmd(354, "DATA")
	s.write("Subject: stalled\r\n\r\npart")
	s.expect(451)
	s.expect(421)
	if !s.closed() {
		t.Fatal("stalled DATA connection left open")
	}
	if len(f.deliv.all()) != before {
		t.Fatal("a stalled message was delivered")
	}
}

func TestShutdownWaitsForTransaction(t *testing.T) {
	f := start(t, RoleMX, nil)
	f.deliv.block = make(chan struct{})
	f.deliv.reads = make(chan struct{}, 1)

	idle := dialRaw(t, f.addr)
	idle.cmd(250, "EHLO idle.example.net")

	busy := dialRaw(t, f.addr)
	busy.cmd(250, "EHLO busy.example.net")
	busy.cmd(250, "MAIL FROM:<a@remote.example>")
	busy.cmd(250, "RCPT TO:<ann@example.test>")
	busy.cmd(354, "DATA")
	busy.write(simpleMsg + ".\r\n")
	<-f.deliv.reads // the transaction is in Deliver

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- f.srv.Shutdown(ctx)
	}()
	// The idle connection is told at once.
	idle.expect(421)
	if !idle.closed() {
		t.Fatal("idle connection not closed by Shutdown")
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with a transaction in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(f.deliv.block)
	busy.expect(250) // the message in flight is accepted...
	busy.expect(421) // ...and then the connection ends
	if !busy.closed() {
		t.Fatal("busy connection not closed after its transaction")
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-f.serve; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve returned %v", err)
	}
	if len(f.deliv.all()) != 1 {
		t.Fatal("the message in flight was lost")
	}
}

func TestShutdownDeadline(t *testing.T) {
	f := start(t, RoleMX, nil)
	busy := dialRaw(t, f.addr)
	busy.cmd(250, "EHLO busy.example.net")
	busy.cmd(250, "MAIL FROM:<a@remote.example>") // and then nothing
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := f.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want the deadline", err)
	}
	if !busy.closed() {
		t.Fatal("connection survived a forced shutdown")
	}
	if err := f.srv.Shutdown(context.Background()); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("second Shutdown = %v", err)
	}
}

// Lines far over RFC 5321's 1000 octets occur in real mail (HTML without
// line breaks) and are taken; a line over our bound is refused for good,
// not with a 451 that would have the sender retry for days.
func TestMXLongLines(t *testing.T) {
	f := start(t, RoleMX, nil)
	c := dial(t, f.addr)
	long := "Subject: long\r\n\r\n" + strings.Repeat("x", 20000) + "\r\n"
	_, err := send(c, "a@remote.example", []string{"ann@example.test"}, long)
	wantCode(t, "a 20,000-octet line", err, 0, "")
	if got := f.deliv.last(t).body; string(got) != long {
		t.Errorf("the long line changed: %d octets stored, want %d", len(got), len(long))
	}
	c = dial(t, f.addr)
	_, err = send(c, "a@remote.example", []string{"ann@example.test"}, "Subject: too long\r\n\r\n"+strings.Repeat("y", maxLineLength+10)+"\r\n")
	wantCode(t, "a line over the bound", err, 554, "5.6.0")
}

// TestMXRecipientProbing: the 20th refused RCPT on one connection ends it
// with a 421; a connection that had fewer goes on.
func TestMXRecipientProbing(t *testing.T) {
	f := start(t, RoleMX, nil)
	f.rcpts.errs = map[string]error{}
	for i := range maxRcptErrors {
		f.rcpts.errs[fmt.Sprintf("guess%d@example.test", i)] = envelope.ErrUnknownUser
	}
	r := dialRaw(t, f.addr)
	r.cmd(250, "EHLO client.example.net")
	r.cmd(250, "MAIL FROM:<probe@remote.example>")
	for i := range maxRcptErrors - 1 {
		r.cmd(550, "RCPT TO:<guess%d@example.test>", i)
	}
	r.cmd(250, "RCPT TO:<ann@example.test>")
	r.cmd(550, "RCPT TO:<guess%d@example.test>", maxRcptErrors-1)
	if msg := r.expect(421); !strings.HasPrefix(msg, "4.7.0") {
		t.Fatalf("after %d refusals: 421 %q", maxRcptErrors, msg)
	}
	if !r.closed() {
		t.Fatal("connection left open after the 421")
	}
}
