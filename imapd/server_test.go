package imapd

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"postie/accounts"
	"postie/internal/testutil"
	"postie/maildir"
)

// fakeAuth knows a few users; it records the service and remote IP it was called with.
type fakeAuth struct {
	mu       sync.Mutex
	users    map[string]string // address → password
	services []string
	ips      []string
}

func (a *fakeAuth) Login(ctx context.Context, remoteIP, service, username, password string) (*accounts.User, error) {
	a.mu.Lock()
	a.services = append(a.services, service)
	a.ips = append(a.ips, remoteIP)
	a.mu.Unlock()
	if pw, ok := a.users[strings.ToLower(username)]; !ok || pw != password {
		return nil, accounts.ErrAuthFailed
	}
	local, domain, _ := strings.Cut(strings.ToLower(username), "@")
	return &accounts.User{Address: strings.ToLower(username), Local: local, Domain: domain}, nil
}

type testServer struct {
	t       testing.TB
	dir     string
	store   *maildir.Store
	srv     *Server
	addr    string // plaintext (STARTTLS)
	tlsAddr string // implicit TLS
	auth    *fakeAuth
	tlsConf *tls.Config
}

const (
	testUser = "alice@example.test"
	testPass = "secret"
)

func newTestServer(t testing.TB, tweak ...func(*Options)) *testServer {
	t.Helper()
	return startTestServer(t, t.TempDir(), tweak...)
}

func startTestServer(t testing.TB, dir string, tweak ...func(*Options)) *testServer {
	t.Helper()
	ts := &testServer{t: t, dir: dir, auth: &fakeAuth{users: map[string]string{testUser: testPass, "bob@example.test": "pw2", "small@example.test": "pw"}}}
	ts.store = maildir.NewStore(dir, maildir.StoreOptions{Hostname: "test"})
	ts.tlsConf = testutil.ServerTLS(t, "mail.example.test")
	opts := Options{Store: ts.store, Auth: ts.auth, TLSConfig: ts.tlsConf, Hostname: "mail.example.test"}
	if testing.Verbose() && os.Getenv("IMAPD_DEBUG") != "" {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	for _, f := range tweak {
		f(&opts)
	}
	ts.srv = New(opts)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts.addr, ts.tlsAddr = ln.Addr().String(), tln.Addr().String()
	errs := make(chan error, 2)
	go func() { errs <- ts.srv.Serve(ln) }()
	go func() { errs <- ts.srv.ServeTLS(tln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := ts.srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		for range 2 {
			if err := <-errs; !errors.Is(err, ErrServerClosed) {
				t.Errorf("serve returned %v", err)
			}
		}
	})
	return ts
}

// dial connects without TLS (allowed: loopback) and logs in as alice.
func (ts *testServer) dial(handler *imapclient.UnilateralDataHandler) *imapclient.Client {
	ts.t.Helper()
	c, err := imapclient.DialInsecure(ts.addr, &imapclient.Options{UnilateralDataHandler: handler})
	if err != nil {
		ts.t.Fatal(err)
	}
	ts.t.Cleanup(func() { c.Close() })
	if err := c.Login(testUser, testPass).Wait(); err != nil {
		ts.t.Fatalf("login: %v", err)
	}
	return c
}

func (ts *testServer) user() *maildir.User {
	ts.t.Helper()
	u, err := ts.store.User("example.test", "alice")
	if err != nil {
		ts.t.Fatal(err)
	}
	return u
}

// deliver stores a message in alice's INBOX the way the MDA does.
func (ts *testServer) deliver(msg string) {
	ts.t.Helper()
	if _, err := ts.user().Deliver(strings.NewReader(msg), maildir.DeliverOptions{}); err != nil {
		ts.t.Fatal(err)
	}
}

func testMessage(i int, subject string) string {
	return fmt.Sprintf("From: Sender %d <sender%d@example.org>\r\nTo: alice@example.test\r\nSubject: %s\r\n"+
		"Date: Mon, 23 Nov 2026 10:%02d:00 +0000\r\nMessage-ID: <msg%d@example.org>\r\nContent-Type: text/plain\r\n\r\n"+
		"Body of message %d.\r\nSecond line.\r\n", i, i, subject, i%60, i, i)
}

func mustSelect(t testing.TB, c *imapclient.Client, name string, ro bool) *imap.SelectData {
	t.Helper()
	d, err := c.Select(name, &imap.SelectOptions{ReadOnly: ro}).Wait()
	if err != nil {
		t.Fatalf("select %s: %v", name, err)
	}
	return d
}

func fetchAll(t testing.TB, c *imapclient.Client, set imap.NumSet, o *imap.FetchOptions) []*imapclient.FetchMessageBuffer {
	t.Helper()
	msgs, err := c.Fetch(set, o).Collect()
	if err != nil {
		t.Fatalf("fetch %v: %v", set, err)
	}
	return msgs
}

func hasFlag(fl []imap.Flag, f imap.Flag) bool {
	for _, x := range fl {
		if strings.EqualFold(string(x), string(f)) {
			return true
		}
	}
	return false
}

func imapCode(err error) imap.ResponseCode {
	var ie *imap.Error
	if errors.As(err, &ie) {
		return ie.Code
	}
	return ""
}

// rawConn is a line-level client for what imapclient will not send.
type rawConn struct {
	t  testing.TB
	c  net.Conn
	br *bytesReader
}

type bytesReader struct {
	c   net.Conn
	buf []byte
}

func (ts *testServer) raw(login bool) *rawConn {
	ts.t.Helper()
	c, err := net.Dial("tcp", ts.addr)
	if err != nil {
		ts.t.Fatal(err)
	}
	ts.t.Cleanup(func() { c.Close() })
	r := &rawConn{t: ts.t, c: c, br: &bytesReader{c: c}}
	r.line() // greeting
	if login {
		r.cmd("a0 LOGIN " + testUser + " " + testPass)
	}
	return r
}

func (b *bytesReader) readLine() (string, error) {
	for {
		if i := bytes.IndexByte(b.buf, '\n'); i >= 0 {
			l := string(b.buf[:i+1])
			b.buf = b.buf[i+1:]
			return l, nil
		}
		tmp := make([]byte, 4096)
		b.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := b.c.Read(tmp)
		b.buf = append(b.buf, tmp[:n]...)
		if err != nil {
			return "", err
		}
	}
}

func (r *rawConn) line() string {
	r.t.Helper()
	l, err := r.br.readLine()
	if err != nil {
		r.t.Fatalf("read: %v", err)
	}
	return l
}

func (r *rawConn) send(s string) {
	r.t.Helper()
	if _, err := io.WriteString(r.c, s); err != nil {
		r.t.Fatal(err)
	}
}

// cmd sends a tagged command and returns every line up to and including the tagged answer.
func (r *rawConn) cmd(line string) []string {
	r.t.Helper()
	tag, _, _ := strings.Cut(line, " ")
	r.send(line + "\r\n")
	var out []string
	for {
		l := r.line()
		out = append(out, l)
		if strings.HasPrefix(l, tag+" ") {
			return out
		}
	}
}

func last(lines []string) string { return lines[len(lines)-1] }
