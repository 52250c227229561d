package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"postie/accounts"
	"postie/envelope"
	"postie/internal/testutil"
)

// fakeRecipients knows the domains example.test and example.org; in them,
// recipients listed in errs get that error, every other one is accepted.
type fakeRecipients struct {
	mu      sync.Mutex
	errs    map[string]error
	checked []string
}

func (f *fakeRecipients) IsLocalDomain(d string) bool {
	return d == "example.test" || d == "example.org"
}

func (f *fakeRecipients) CheckRecipient(_ context.Context, rcpt string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.checked = append(f.checked, rcpt)
	return f.errs[envelope.Key(rcpt)]
}

func (f *fakeRecipients) checkedList() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.checked...)
}

// delivered is one call to fakeDelivery.
type delivered struct {
	env  envelope.Envelope
	body []byte
}

// fakeDelivery reads the whole body and records it. result, when set,
// chooses the per-recipient errors; block, when set, is waited on before
// answering (after the body was read).
type fakeDelivery struct {
	mu     sync.Mutex
	got    []delivered
	result func(env *envelope.Envelope) []error
	block  chan struct{}
	reads  chan struct{} // signalled once the body is read, if non-nil
}

func (f *fakeDelivery) Deliver(_ context.Context, env *envelope.Envelope, body io.Reader) []error {
	b, err := io.ReadAll(body)
	errs := make([]error, len(env.To))
	if err != nil {
		for i := range errs {
			errs[i] = envelope.Temp(err)
		}
		return errs
	}
	if f.reads != nil {
		f.reads <- struct{}{}
	}
	if f.block != nil {
		<-f.block
	}
	f.mu.Lock()
	f.got = append(f.got, delivered{*env, b})
	f.mu.Unlock()
	if f.result != nil {
		return f.result(env)
	}
	return errs
}

func (f *fakeDelivery) all() []delivered {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]delivered(nil), f.got...)
}

func (f *fakeDelivery) last(t *testing.T) delivered {
	t.Helper()
	all := f.all()
	if len(all) == 0 {
		t.Fatal("nothing was delivered")
	}
	return all[len(all)-1]
}

// fakeAuth has ann@example.test (password "secret"), who may also send as
// sales@example.test, and bob@example.test ("hunter2", 1 message an hour).
type fakeAuth struct {
	mu     sync.Mutex
	logins []string // "service user" of every attempt
	temp   bool     // answer every login with a temporary error
}

var (
	userAnn = &accounts.User{Address: "ann@example.test", Local: "ann", Domain: "example.test"}
	userBob = &accounts.User{Address: "bob@example.test", Local: "bob", Domain: "example.test", MaxMessagesPerHour: 1}
)

func (f *fakeAuth) Login(_ context.Context, remoteIP, service, username, password string) (*accounts.User, error) {
	f.mu.Lock()
	f.logins = append(f.logins, service+" "+username)
	f.mu.Unlock()
	if f.temp {
		return nil, errors.New("database unavailable")
	}
	switch {
	case username == "ann@example.test" && password == "secret":
		return userAnn, nil
	case username == "bob@example.test" && password == "hunter2":
		return userBob, nil
	}
	return nil, accounts.ErrAuthFailed
}

func (f *fakeAuth) CanSendAs(u *accounts.User, addr string) bool {
	key := envelope.Key(addr)
	return key == u.Address || u == userAnn && key == "sales@example.test"
}

// fixture is one running server with its fakes.
type fixture struct {
	srv   *Server
	addr  string // plaintext listener
	rcpts *fakeRecipients
	deliv *fakeDelivery
	auth  *fakeAuth
	logs  *testutil.SyncBuffer
	serve chan error // Serve's result
}

var testNow = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)

// start runs a server for role on 127.0.0.1. edit may change the options
// before NewServer. The server is shut down at the end of the test.
func start(t testing.TB, role Role, edit func(*Options)) *fixture {
	t.Helper()
	f := &fixture{rcpts: &fakeRecipients{}, deliv: &fakeDelivery{}, auth: &fakeAuth{}, logs: &testutil.SyncBuffer{}, serve: make(chan error, 1)}
	opts := Options{
		Role: role, Hostname: "mx.example.test", TLSConfig: testutil.ServerTLS(t),
		Recipients: f.rcpts, Delivery: f.deliv,
		Logger: slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:    func() time.Time { return testNow },
	}
	if role == RoleSubmission {
		opts.Auth = f.auth
	}
	if edit != nil {
		edit(&opts)
	}
	f.srv = NewServer(opts)
	ln := listen(t)
	f.addr = ln.Addr().String()
	go func() { f.serve <- f.srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		f.srv.Shutdown(ctx)
	})
	return f
}

// serveTLS adds an implicit-TLS listener and returns its address.
func (f *fixture) serveTLS(t testing.TB) string {
	ln := listen(t)
	go f.srv.ServeTLS(ln)
	return ln.Addr().String()
}

// serveAs adds a plaintext listener whose connections claim to come from
// remote (to test what is refused to non-loopback clients).
func (f *fixture) serveAs(t testing.TB, remote string) string {
	ln := listen(t)
	go f.srv.Serve(fakeAddrListener{ln, &net.TCPAddr{IP: net.ParseIP(remote), Port: 40000}})
	return ln.Addr().String()
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

type fakeAddrListener struct {
	net.Listener
	remote net.Addr
}

func (l fakeAddrListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return fakeAddrConn{c, l.remote}, nil
}

type fakeAddrConn struct {
	net.Conn
	remote net.Addr
}

func (c fakeAddrConn) RemoteAddr() net.Addr { return c.remote }

var clientTLS = &tls.Config{InsecureSkipVerify: true}

// dial opens a go-smtp client and says EHLO.
func dial(t testing.TB, addr string) *smtp.Client {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Hello("client.example.net"); err != nil {
		t.Fatal(err)
	}
	return c
}

// dialStartTLS opens a go-smtp client over STARTTLS.
func dialStartTLS(t testing.TB, addr string) *smtp.Client {
	t.Helper()
	c, err := smtp.DialStartTLS(addr, clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Hello("client.example.net"); err != nil {
		t.Fatal(err)
	}
	return c
}

// wantCode checks that err is an SMTP reply with code and enhanced code
// "x.y.z" ("" to skip that check); code 0 means success (err == nil).
func wantCode(t testing.TB, what string, err error, code int, enhanced string) {
	t.Helper()
	if code == 0 {
		if err != nil {
			t.Fatalf("%s: %v, want success", what, err)
		}
		return
	}
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		t.Fatalf("%s: %v, want a %d reply", what, err, code)
	}
	got := fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
	if se.Code != code || enhanced != "" && got != enhanced {
		t.Fatalf("%s: got %d %s %q, want %d %s", what, se.Code, got, se.Message, code, enhanced)
	}
}

// send runs one transaction and returns the DATA reply (or the first
// failing command's error).
func send(c *smtp.Client, from string, to []string, msg string) (*smtp.DataResponse, error) {
	if err := c.Mail(from, nil); err != nil {
		return nil, err
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			return nil, err
		}
	}
	w, err := c.Data()
	if err != nil {
		return nil, err
	}
	if _, err := io.WriteString(w, msg); err != nil {
		return nil, err
	}
	return w.CloseWithResponse()
}

// rawConn is a hand-driven SMTP dialog.
type rawConn struct {
	t  testing.TB
	nc net.Conn
	tp *textproto.Conn
}

func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	r := dialRawNoBanner(t, addr)
	r.expect(220)
	return r
}

func dialRawNoBanner(t testing.TB, addr string) *rawConn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawConn{t: t, nc: nc, tp: textproto.NewConn(nc)}
}

// expect reads one (possibly multi-line) reply and checks its code; it
// returns the text.
func (r *rawConn) expect(code int) string {
	r.t.Helper()
	got, msg, err := r.tp.ReadResponse(0)
	if err != nil && got == 0 {
		r.t.Fatalf("reading reply: %v", err)
	}
	if got != code {
		r.t.Fatalf("got %d %q, want %d", got, msg, code)
	}
	return msg
}

// cmd sends one line and checks the reply code.
func (r *rawConn) cmd(code int, format string, args ...any) string {
	r.t.Helper()
	if err := r.tp.PrintfLine(format, args...); err != nil {
		r.t.Fatalf("writing %q: %v", format, err)
	}
	return r.expect(code)
}

// write sends raw bytes.
func (r *rawConn) write(s string) {
	r.t.Helper()
	if _, err := io.WriteString(r.nc, s); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// closed reports whether the server closed the connection (reading EOF).
func (r *rawConn) closed() bool {
	r.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := r.tp.R.ReadByte()
	return err != nil && !isTimeout(err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// waitFor polls cond for up to 5 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

const simpleMsg = "From: ann@example.test\r\nTo: bob@example.test\r\nSubject: hi\r\n\r\nHello.\r\n"

func hasLine(logs, substr string) bool {
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, substr) {
			return true
		}
	}
	return false
}
