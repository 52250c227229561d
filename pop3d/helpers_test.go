package pop3d

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/textproto"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeStore is an in-memory mailStore.
type fakeStore struct {
	mu    sync.Mutex
	boxes map[string]*fakeBox
}

func newFakeStore() *fakeStore { return &fakeStore{boxes: make(map[string]*fakeBox)} }

func (s *fakeStore) box(domain, local string) *fakeBox {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := strings.ToLower(local + "@" + domain)
	b := s.boxes[key]
	if b == nil {
		b = &fakeBox{uidValidity: 1700000000, nextUID: 1}
		s.boxes[key] = b
	}
	return b
}

func (s *fakeStore) Inbox(domain, local string) (maildrop, error) {
	return s.box(domain, local), nil
}

type fakeMsg struct {
	uid  uint32
	data []byte
	seen bool
}

type fakeBox struct {
	mu          sync.Mutex
	uidValidity uint32
	nextUID     uint32
	msgs        []fakeMsg
	expunges    int // Expunge calls
	opens       int // Open calls
	markSeen    int // MarkSeen calls
}

func (b *fakeBox) deliver(data []byte) uint32 {
	b.mu.Lock()
	defer b.mu.Unlock()
	uid := b.nextUID
	b.nextUID++
	b.msgs = append(b.msgs, fakeMsg{uid: uid, data: data})
	return uid
}

func (b *fakeBox) contents() []fakeMsg {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.msgs)
}

func (b *fakeBox) Refresh() error { return nil }

func (b *fakeBox) Snapshot() (uint32, []entry) {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]entry, len(b.msgs))
	for i, m := range b.msgs {
		out[i] = entry{uid: m.uid, size: int64(len(m.data)), seen: m.seen}
	}
	return b.uidValidity, out
}

func (b *fakeBox) find(uid uint32) int {
	for i, m := range b.msgs {
		if m.uid == uid {
			return i
		}
	}
	return -1
}

func (b *fakeBox) Open(uid uint32) (io.ReadCloser, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.opens++
	i := b.find(uid)
	if i < 0 {
		return nil, errGone
	}
	return io.NopCloser(bytes.NewReader(b.msgs[i].data)), nil
}

func (b *fakeBox) MarkSeen(uids []uint32, origin any) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.markSeen++
	for _, uid := range uids {
		if i := b.find(uid); i >= 0 {
			b.msgs[i].seen = true
		}
	}
	return nil
}

func (b *fakeBox) Expunge(uids []uint32, origin any) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.expunges++
	b.msgs = slices.DeleteFunc(b.msgs, func(m fakeMsg) bool { return slices.Contains(uids, m.uid) })
	return nil
}

// fakeAuth knows address → password.
type fakeAuth struct {
	mu     sync.Mutex
	users  map[string]string
	logins []string // every name tried
}

func (a *fakeAuth) login(ctx context.Context, remoteIP, username, password string) (account, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.logins = append(a.logins, username)
	want, ok := a.users[strings.ToLower(username)]
	if !ok || want != password || password == "" {
		return account{}, errBadCredentials
	}
	local, domain, _ := strings.Cut(strings.ToLower(username), "@")
	return account{address: strings.ToLower(username), domain: domain, local: local}, nil
}

const (
	testUser = "alice@example.test"
	testPass = "s3cret pass"
)

// testServer is a running server on 127.0.0.1 with a fake store.
type testServer struct {
	srv   *Server
	store *fakeStore
	auth  *fakeAuth
	addr  string
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// startServer runs a server with a fake store; edit lets a test adjust the
// configuration before the server is built.
func startServer(t testing.TB, edit func(*serverConfig)) *testServer {
	t.Helper()
	ts := &testServer{
		store: newFakeStore(),
		auth:  &fakeAuth{users: map[string]string{testUser: testPass, "bob@example.test": "bobpw"}},
	}
	cfg := serverConfig{store: ts.store, auth: ts.auth, hostname: "pop.example.test", log: testLogger(t)}
	if edit != nil {
		edit(&cfg)
	}
	ts.srv = newServer(cfg)
	ts.addr = ts.listen(t, false)
	return ts
}

// listen serves on a new 127.0.0.1 listener and stops the server at the
// end of the test.
func (ts *testServer) listen(t testing.TB, implicitTLS bool) string {
	return serve(t, ts.srv, implicitTLS)
}

// serve runs srv on a new 127.0.0.1 listener until the end of the test,
// and checks that it shuts down cleanly.
func serve(t testing.TB, srv *Server, implicitTLS bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		if implicitTLS {
			done <- srv.ServeTLS(ln)
		} else {
			done <- srv.Serve(ln)
		}
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return ln.Addr().String()
}

func (ts *testServer) inbox(user string) *fakeBox {
	local, domain, _ := strings.Cut(user, "@")
	return ts.store.box(domain, local)
}

// client is a POP3 client on net/textproto.
type client struct {
	t    testing.TB
	conn net.Conn
	*textproto.Conn
	br *bufio.Reader // the reader under textproto, for raw multi-line bodies
}

func dial(t testing.TB, addr string) *client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := wrapClient(t, conn)
	c.expectOK("")
	return c
}

func wrapClient(t testing.TB, conn net.Conn) *client {
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(conn)
	tc := &textproto.Conn{Reader: *textproto.NewReader(br), Writer: *textproto.NewWriter(bufio.NewWriter(conn)), Pipeline: textproto.Pipeline{}}
	return &client{t: t, conn: conn, Conn: tc, br: br}
}

// cmd sends a line and returns the status line.
func (c *client) cmd(format string, args ...any) string {
	c.t.Helper()
	if err := c.PrintfLine(format, args...); err != nil {
		c.t.Fatalf("send %q: %v", format, err)
	}
	return c.line()
}

func (c *client) line() string {
	c.t.Helper()
	l, err := c.ReadLine()
	if err != nil {
		c.t.Fatalf("read reply: %v", err)
	}
	return l
}

// expectOK reads a reply that must be +OK and start with prefix after it.
func (c *client) expectOK(prefix string) string {
	c.t.Helper()
	l := c.line()
	if !strings.HasPrefix(l, "+OK") || !strings.HasPrefix(strings.TrimPrefix(strings.TrimPrefix(l, "+OK"), " "), prefix) {
		c.t.Fatalf("got %q, want +OK %s", l, prefix)
	}
	return l
}

func (c *client) ok(format string, args ...any) string {
	c.t.Helper()
	l := c.cmd(format, args...)
	if !strings.HasPrefix(l, "+OK") {
		c.t.Fatalf("%s: got %q, want +OK", fmt.Sprintf(format, args...), l)
	}
	return l
}

func (c *client) err(want string, format string, args ...any) {
	c.t.Helper()
	l := c.cmd(format, args...)
	if !strings.HasPrefix(l, "-ERR") || !strings.Contains(l, want) {
		c.t.Fatalf("%s: got %q, want -ERR with %q", fmt.Sprintf(format, args...), l, want)
	}
}

// lines reads the rest of a multi-line reply, un-stuffed, CRLF dropped.
func (c *client) lines() []string {
	c.t.Helper()
	ls, err := c.ReadDotLines()
	if err != nil {
		c.t.Fatalf("read multi-line reply: %v", err)
	}
	return ls
}

// body reads the rest of a multi-line reply byte for byte, undoing only the
// dot-stuffing.
func (c *client) body() []byte {
	c.t.Helper()
	b, err := readDotBody(c.br)
	if err != nil {
		c.t.Fatalf("read body: %v", err)
	}
	return b
}

func readDotBody(r *bufio.Reader) ([]byte, error) {
	var out []byte
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return out, fmt.Errorf("body cut after %d octets: %w", len(out), err)
		}
		if string(line) == ".\r\n" {
			return out, nil
		}
		if line[0] == '.' {
			line = line[1:]
		}
		out = append(out, line...)
	}
}

func (c *client) login(user, pass string) string {
	c.t.Helper()
	c.ok("USER %s", user)
	return c.ok("PASS %s", pass)
}

func clientTLS(t testing.TB, server *tls.Config) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(server.Certificates[0].Leaf)
	return &tls.Config{RootCAs: pool, ServerName: "pop.example.test"}
}

// remoteOnly makes the server treat every peer as remote (not loopback).
func remoteOnly(s *Server) { s.trusted = func(netip.Addr) bool { return false } }

// mixedMessages returns messages that exercise the edges: dot lines, a
// dot-only line, empty body, long lines, 8-bit octets, a header line
// starting with a dot and a large multipart body.
func mixedMessages() [][]byte {
	long := strings.Repeat("x", 5000)
	return [][]byte{
		[]byte("From: a@example.test\r\nTo: alice@example.test\r\nSubject: hello\r\n\r\nHello Alice.\r\n"),
		[]byte("Subject: dots\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nmiddle\r\n. \r\n...\r\nend\r\n"),
		[]byte("Subject: empty body\r\n\r\n"),
		[]byte("Subject: long line\r\n\r\n" + long + "\r\n" + long + long + "\r\nshort\r\n"),
		[]byte("Subject: =?utf-8?q?caf=C3=A9?=\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\ncaf\xc3\xa9 \xe2\x82\xac \x01\x7f\xff\r\n"),
		[]byte(".Subject: header starting with a dot\r\n\r\nbody\r\n.\r\n"),
		[]byte("Subject: big\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n" + strings.Repeat("line of a larger body with some text in it\r\n", 3000) + "--b--\r\n"),
	}
}
