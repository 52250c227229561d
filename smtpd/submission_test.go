package smtpd

import (
	"encoding/base64"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"postie/envelope"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// login opens a loopback plaintext client and authenticates.
func login(t *testing.T, addr, user, pass string) *smtp.Client {
	t.Helper()
	c := dial(t, addr)
	wantCode(t, "AUTH", c.Auth(sasl.NewPlainClient("", user, pass)), 0, "")
	return c
}

func TestSubmissionNoOpenRelay(t *testing.T) {
	f := start(t, RoleSubmission, nil)
	c := dial(t, f.addr)
	wantCode(t, "MAIL before AUTH", c.Mail("ann@example.test", nil), 530, "5.7.0")
	r := dialRaw(t, f.addr)
	r.cmd(250, "EHLO client.example.net")
	r.cmd(530, "MAIL FROM:<ann@example.test>")
	r.cmd(503, "RCPT TO:<someone@elsewhere.example>")
	r.cmd(503, "DATA")
	if len(f.deliv.all()) != 0 {
		t.Fatal("unauthenticated mail delivered")
	}
}

func TestSubmissionSTARTTLSBeforeAuth(t *testing.T) {
	f := start(t, RoleSubmission, nil)
	addr := f.serveAs(t, "192.0.2.7") // not loopback
	c := dial(t, addr)
	if ok, _ := c.Extension("AUTH"); ok {
		t.Fatal("AUTH advertised in plaintext to a remote client")
	}
	if ok, _ := c.Extension("STARTTLS"); !ok {
		t.Fatal("STARTTLS not advertised")
	}
	r := dialRaw(t, addr)
	r.cmd(250, "EHLO client.example.net")
	if msg := r.cmd(530, "AUTH PLAIN %s", b64("\x00ann@example.test\x00secret")); !strings.HasPrefix(msg, "5.7.0") {
		t.Fatalf("AUTH in plaintext: %q", msg)
	}
	r.cmd(530, "AUTH LOGIN")
	r.cmd(530, "MAIL FROM:<ann@example.test>")
	if len(f.auth.logins) != 0 {
		t.Fatal("a plaintext password reached Login")
	}

	tc := dialStartTLS(t, addr)
	if !tc.SupportsAuth("PLAIN") || !tc.SupportsAuth("LOGIN") {
		t.Fatal("AUTH PLAIN LOGIN not advertised after STARTTLS")
	}
	wantCode(t, "AUTH", tc.Auth(sasl.NewPlainClient("", "ann@example.test", "secret")), 0, "")
	_, err := send(tc, "ann@example.test", []string{"friend@elsewhere.example"}, simpleMsg)
	wantCode(t, "send", err, 0, "")
	e := f.deliv.last(t).env
	if e.Protocol != "ESMTPSA" || e.AuthUser != "ann@example.test" || e.TLS == "" || e.RemoteAddr != "192.0.2.7" {
		t.Fatalf("envelope %+v", e)
	}
}

func TestSubmissionImplicitTLS(t *testing.T) {
	f := start(t, RoleSubmission, nil)
	c, err := smtp.DialTLS(f.serveTLS(t), clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	wantCode(t, "EHLO", c.Hello("client.example.net"), 0, "")
	if ok, _ := c.Extension("STARTTLS"); ok {
		t.Error("STARTTLS advertised on implicit TLS")
	}
	wantCode(t, "AUTH", c.Auth(sasl.NewPlainClient("", "ann@example.test", "secret")), 0, "")
	_, err = send(c, "ann@example.test", []string{"bob@example.test"}, simpleMsg)
	wantCode(t, "send", err, 0, "")
	if e := f.deliv.last(t).env; e.Protocol != "ESMTPSA" || !strings.HasPrefix(e.TLS, "TLS1.3") {
		t.Fatalf("envelope %+v", e)
	}
}

func TestAuthLoginDialog(t *testing.T) {
	f := start(t, RoleSubmission, nil)
	r := dialRaw(t, f.addr)
	if ehlo := r.cmd(250, "EHLO client.example.net"); !strings.Contains(ehlo, "AUTH PLAIN LOGIN") {
		t.Fatalf("EHLO on loopback: %q", ehlo)
	}
	if ch := r.cmd(334, "AUTH LOGIN"); ch != "VXNlcm5hbWU6" {
		t.Fatalf("first challenge %q", ch)
	}
	if ch := r.cmd(334, "%s", b64("ann@example.test")); ch != "UGFzc3dvcmQ6" {
		t.Fatalf("second challenge %q", ch)
	}
	r.cmd(235, "%s", b64("secret"))
	r.cmd(503, "AUTH LOGIN")
	r.cmd(250, "MAIL FROM:<ann@example.test>")

	// The initial-response form (Outlook, Python's smtplib).
	r = dialRaw(t, f.addr)
	r.cmd(250, "EHLO client.example.net")
	r.cmd(334, "AUTH LOGIN %s", b64("bob@example.test"))
	r.cmd(235, "%s", b64("hunter2"))

	// Failures: a wrong password, a cancel, a PLAIN authzid that is not
	// the user; the third failure closes the connection.
	r = dialRaw(t, f.addr)
	r.cmd(250, "EHLO client.example.net")
	r.cmd(334, "AUTH LOGIN")
	r.cmd(334, "%s", b64("ann@example.test"))
	if msg := r.cmd(535, "%s", b64("wrongpass")); !strings.HasPrefix(msg, "5.7.8") {
		t.Fatalf("bad password: %q", msg)
	}
	r.cmd(334, "AUTH LOGIN")
	r.cmd(501, "*")
	r.cmd(535, "AUTH PLAIN %s", b64("bob@example.test\x00ann@example.test\x00secret"))
	r.cmd(421, "AUTH PLAIN %s", b64("\x00ann@example.test\x00wrong2"))
	if !r.closed() {
		t.Fatal("connection open after three failures")
	}
	// One Login per password tried (the authzid mismatch fails before).
	f.auth.mu.Lock()
	logins := strings.Join(f.auth.logins, ", ")
	f.auth.mu.Unlock()
	if want := "submission ann@example.test, submission bob@example.test, submission ann@example.test, submission ann@example.test"; logins != want {
		t.Fatalf("Login calls: %s, want %s", logins, want)
	}
	logs := f.logs.String()
	for _, pw := range []string{"secret", "hunter2", "wrongpass", "wrong2", b64("secret")} {
		if strings.Contains(logs, pw) {
			t.Fatalf("a password (%s) reached the log:\n%s", pw, logs)
		}
	}
}

func TestAuthTemporaryFailure(t *testing.T) {
	f := start(t, RoleSubmission, nil)
	f.auth.temp = true
	c := dial(t, f.addr)
	wantCode(t, "AUTH", c.Auth(sasl.NewPlainClient("", "ann@example.test", "secret")), 454, "4.7.0")
}

func TestSubmissionSenderBinding(t *testing.T) {
	f := start(t, RoleSubmission, nil)
	c := login(t, f.addr, "ann@example.test", "secret")
	wantCode(t, "MAIL as bob", c.Mail("bob@example.test", nil), 553, "5.7.1")
	wantCode(t, "MAIL <>", c.Mail("", nil), 553, "5.7.1")
	wantCode(t, "MAIL as an alias", c.Mail("Sales@Example.TEST", nil), 0, "")
	wantCode(t, "RSET", c.Reset(), 0, "")

	for _, tc := range []struct {
		name, header string
		code         int
	}{
		{"own address", "From: Ann <ann@example.test>\r\n", 0},
		{"alias, encoded name", "From: =?windows-1252?Q?Ann=E9?= <SALES@example.test>\r\n", 0},
		{"someone else", "From: bob@example.test\r\n", 553},
		{"two addresses", "From: ann@example.test, bob@example.test\r\n", 553},
		{"two fields", "From: ann@example.test\r\nFrom: ann@example.test\r\n", 553},
		{"no From", "Subject: anonymous\r\n", 553},
		{"garbage", "From: <<<\r\n", 553},
	} {
		msg := tc.header + "To: bob@example.test\r\n\r\nbody\r\n"
		_, err := send(c, "ann@example.test", []string{"bob@example.test"}, msg)
		if tc.code == 0 {
			wantCode(t, tc.name, err, 0, "")
		} else {
			wantCode(t, tc.name, err, tc.code, "5.7.1")
		}
	}
	if n := len(f.deliv.all()); n != 2 {
		t.Fatalf("%d messages delivered, want 2", n)
	}
}

func TestSubmissionHeaderChecks(t *testing.T) {
	f := start(t, RoleSubmission, nil)
	c := login(t, f.addr, "ann@example.test", "secret")
	_, err := send(c, "ann@example.test", []string{"bob@example.test"}, "From: ann@example.test\r\n bad\r\nthis is no header\r\n\r\nbody\r\n")
	wantCode(t, "malformed header", err, 554, "5.6.0")
	huge := "From: ann@example.test\r\n" + strings.Repeat("X-Filler: "+strings.Repeat("f", 900)+"\r\n", 1200) + "\r\nbody\r\n"
	_, err = send(c, "ann@example.test", []string{"bob@example.test"}, huge)
	wantCode(t, "huge header", err, 552, "5.3.4")
	if len(f.deliv.all()) != 0 {
		t.Fatal("a refused message was delivered")
	}
}

func TestSubmissionAddsMessageIDAndDate(t *testing.T) {
	f := start(t, RoleSubmission, nil)
	c := login(t, f.addr, "ann@example.test", "secret")
	body := "\r\nbody line\r\n" + strings.Repeat("more body\r\n", 2000)
	_, err := send(c, "ann@example.test", []string{"bob@example.test"}, "From: ann@example.test\r\nSubject: s\r\n"+body)
	wantCode(t, "send", err, 0, "")
	d := f.deliv.last(t)
	m, err := mail.ReadMessage(strings.NewReader(string(d.body)))
	if err != nil {
		t.Fatal(err)
	}
	id := m.Header.Get("Message-Id")
	if !strings.HasPrefix(id, "<") || !strings.HasSuffix(id, "@mx.example.test>") {
		t.Errorf("Message-ID %q", id)
	}
	if date, err := m.Header.Date(); err != nil || !date.Equal(testNow) {
		t.Errorf("Date %q: %v", m.Header.Get("Date"), err)
	}
	if !strings.HasSuffix(string(d.body), "From: ann@example.test\r\nSubject: s\r\n"+body) {
		t.Errorf("original message not kept intact:\n%q", d.body[:200])
	}
	if e := d.env; e.Protocol != "ESMTPA" || e.AuthUser != "ann@example.test" || e.TLS != "" {
		t.Errorf("envelope %+v", e)
	}

	// Present headers are kept, not doubled.
	orig := "Date: Mon, 01 Jan 2024 00:00:00 +0000\r\nMessage-ID: <mine@client>\r\nFrom: ann@example.test\r\n\r\nx\r\n"
	_, err = send(c, "ann@example.test", []string{"bob@example.test"}, orig)
	wantCode(t, "send with headers", err, 0, "")
	if got := string(f.deliv.last(t).body); got != orig {
		t.Errorf("message changed: %q", got)
	}
}

func TestSubmissionRecipients(t *testing.T) {
	f := start(t, RoleSubmission, func(o *Options) { o.MaxRecipients = 3 })
	f.rcpts.errs = map[string]error{"gone@example.test": envelope.ErrUnknownUser}
	c := login(t, f.addr, "ann@example.test", "secret")
	wantCode(t, "MAIL", c.Mail("ann@example.test", nil), 0, "")
	wantCode(t, "remote", c.Rcpt("friend@elsewhere.example", nil), 0, "")
	wantCode(t, "local unknown", c.Rcpt("gone@example.test", nil), 550, "5.1.1")
	wantCode(t, "postmaster", c.Rcpt("postmaster@example.test", nil), 0, "")
	wantCode(t, "local", c.Rcpt("bob@example.test", nil), 0, "")
	wantCode(t, "fourth", c.Rcpt("carol@example.test", nil), 452, "4.5.3")
}

func TestSubmissionHourlyLimit(t *testing.T) {
	now := testNow
	f := start(t, RoleSubmission, func(o *Options) {
		o.MaxMessagesPerHour = 2
		o.Now = func() time.Time { return now }
	})
	ann := login(t, f.addr, "ann@example.test", "secret")
	for i := 0; i < 2; i++ {
		_, err := send(ann, "ann@example.test", []string{"bob@example.test"}, simpleMsg)
		wantCode(t, "send", err, 0, "")
	}
	wantCode(t, "third MAIL", ann.Mail("ann@example.test", nil), 450, "4.7.1")
	// On another connection too: the limit is the user's.
	ann2 := login(t, f.addr, "ann@example.test", "secret")
	wantCode(t, "MAIL on a second connection", ann2.Mail("ann@example.test", nil), 450, "4.7.1")
	// bob's own limit (1) overrides the default.
	bob := login(t, f.addr, "bob@example.test", "hunter2")
	_, err := send(bob, "bob@example.test", []string{"ann@example.test"}, "From: bob@example.test\r\n\r\nx\r\n")
	wantCode(t, "bob", err, 0, "")
	wantCode(t, "bob again", bob.Mail("bob@example.test", nil), 450, "4.7.1")
}

// TestSubmissionOnlyLoopbackPlaintext checks the loopback test itself:
// an IPv6 loopback client may authenticate in plaintext, a v4-mapped
// remote one may not.
func TestSubmissionOnlyLoopbackPlaintext(t *testing.T) {
	f := start(t, RoleSubmission, nil)
	for remote, want := range map[string]bool{"::1": true, "::ffff:192.0.2.1": false, "10.0.0.1": false} {
		c := dial(t, f.serveAs(t, remote))
		if ok, _ := c.Extension("AUTH"); ok != want {
			t.Errorf("%s: AUTH advertised = %v", remote, ok)
		}
	}
}
