package pop3d

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"postie/internal/testutil"
)

func TestCapa(t *testing.T) {
	ts := startServer(t, func(cfg *serverConfig) { cfg.tlsConfig = testutil.ServerTLS(t, "pop.example.test") })
	c := dial(t, ts.addr)
	c.ok("CAPA")
	got := c.lines()
	for _, want := range []string{"TOP", "UIDL", "USER", "SASL PLAIN", "STLS", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "IMPLEMENTATION Postie"} {
		if !slices.Contains(got, want) {
			t.Errorf("CAPA lacks %q: %q", want, got)
		}
	}
	c.login(testUser, testPass)
	c.ok("capa")
	got = c.lines()
	if slices.Contains(got, "STLS") || slices.Contains(got, "USER") || !slices.Contains(got, "TOP") {
		t.Errorf("CAPA in TRANSACTION: %q", got)
	}
	c.err("", "CAPA x")
}

func TestLoginAndStat(t *testing.T) {
	ts := startServer(t, nil)
	box := ts.inbox(testUser)
	var total int
	for _, m := range mixedMessages() {
		box.deliver(m)
		total += len(m)
	}
	c := dial(t, ts.addr)
	c.ok("USER %s", strings.ToUpper(testUser))
	if l := c.ok("PASS %s", testPass); !strings.Contains(l, fmt.Sprintf("%d messages (%d octets)", len(mixedMessages()), total)) {
		t.Errorf("PASS reply %q", l)
	}
	if l := c.ok("STAT"); l != fmt.Sprintf("+OK %d %d", len(mixedMessages()), total) {
		t.Errorf("STAT = %q", l)
	}
	c.err("", "STAT 1")
	c.ok("QUIT")
	if _, err := c.ReadLine(); err != io.EOF {
		t.Errorf("after QUIT: %v, want EOF", err)
	}
}

func TestAuthFailures(t *testing.T) {
	ts := startServer(t, nil)
	c := dial(t, ts.addr)
	c.err("", "PASS x")                                       // no USER
	c.ok("USER nobody@example.test")                          // unknown user: not revealed here...
	c.err("-ERR [AUTH] invalid credentials", "PASS whatever") // ...nor here
	c.ok("USER %s", testUser)
	c.err("-ERR [AUTH] invalid credentials", "PASS wrong")
	c.err("", "USER")
	c.err("not supported", "APOP alice@example.test 0123456789abcdef0123456789abcdef")
	// The failed session can still log in.
	c.login(testUser, testPass)
	c.err("not valid in this state", "USER %s", testUser)
	c.err("not valid in this state", "PASS x")
	c.err("not valid in this state", "AUTH PLAIN")
}

func plainIR(authz, user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte(authz + "\x00" + user + "\x00" + pass))
}

func TestAuthPlain(t *testing.T) {
	ts := startServer(t, nil)

	c := dial(t, ts.addr)
	c.ok("AUTH")
	if got := c.lines(); !slices.Equal(got, []string{"PLAIN"}) {
		t.Errorf("AUTH list = %q", got)
	}
	c.err("unsupported", "AUTH CRAM-MD5")
	c.err("-ERR [AUTH] invalid credentials", "AUTH PLAIN %s", plainIR("", testUser, "bad"))
	c.err("-ERR [AUTH] invalid credentials", "AUTH PLAIN %s", plainIR("bob@example.test", testUser, testPass))
	c.err("-ERR", "AUTH PLAIN !!!notbase64")
	c.err("-ERR", "AUTH PLAIN %s", base64.StdEncoding.EncodeToString([]byte("no-nuls")))
	c.err("malformed", "AUTH PLAIN =") // empty response
	// Without an initial response: a "+ " challenge, then the response.
	if l := c.cmd("AUTH PLAIN"); l != "+ " {
		t.Fatalf("challenge = %q", l)
	}
	c.err("canceled", "*")
	if l := c.cmd("AUTH plain"); l != "+ " {
		t.Fatalf("challenge = %q", l)
	}
	c.ok("%s", plainIR("", testUser, testPass))
	c.ok("STAT")

	c2 := dial(t, ts.addr)
	c2.ok("AUTH PLAIN %s", plainIR("bob@example.test", "bob@example.test", "bobpw"))
	c2.ok("QUIT")
}

func TestStateRules(t *testing.T) {
	ts := startServer(t, nil)
	c := dial(t, ts.addr)
	for _, cmd := range []string{"STAT", "LIST", "LIST 1", "UIDL", "RETR 1", "TOP 1 1", "DELE 1", "NOOP", "RSET"} {
		c.err("not valid in this state", "%s", cmd)
	}
	c = dial(t, ts.addr) // the first one has used 9 of its 10 errors
	c.err("unknown command", "XYZZY")
	c.err("unknown command", "")
	c.err("STLS not available", "STLS")
	c.login(testUser, testPass)
	c.err("unknown command", "HELO")
	c.ok("NOOP")
	c.err("", "NOOP x")
	c.err("", "RSET x")
}

func TestListUidlRetrTop(t *testing.T) {
	ts := startServer(t, nil)
	box := ts.inbox(testUser)
	msgs := mixedMessages()
	var uids []uint32
	for _, m := range msgs {
		uids = append(uids, box.deliver(m))
	}
	c := dial(t, ts.addr)
	c.login(testUser, testPass)

	c.ok("LIST")
	lines := c.lines()
	if len(lines) != len(msgs) {
		t.Fatalf("LIST: %d lines, want %d", len(lines), len(msgs))
	}
	for i, m := range msgs {
		if want := fmt.Sprintf("%d %d", i+1, len(m)); lines[i] != want {
			t.Errorf("LIST line %q, want %q", lines[i], want)
		}
	}
	if l := c.ok("LIST 2"); l != fmt.Sprintf("+OK 2 %d", len(msgs[1])) {
		t.Errorf("LIST 2 = %q", l)
	}
	c.err("no such message", "LIST 0")
	c.err("no such message", "LIST 99")
	c.err("no such message", "LIST -1")
	c.err("no such message", "LIST +1")
	c.err("no such message", "LIST 1x")

	c.ok("UIDL")
	lines = c.lines()
	for i, uid := range uids {
		if want := fmt.Sprintf("%d %08x%08x", i+1, box.uidValidity, uid); lines[i] != want {
			t.Errorf("UIDL line %q, want %q", lines[i], want)
		}
	}
	if l := c.ok("UIDL 3"); l != fmt.Sprintf("+OK 3 %08x%08x", box.uidValidity, uids[2]) {
		t.Errorf("UIDL 3 = %q", l)
	}

	for i, m := range msgs {
		if l := c.ok("RETR %d", i+1); l != fmt.Sprintf("+OK %d octets", len(m)) {
			t.Errorf("RETR %d = %q", i+1, l)
		}
		if got := c.body(); !bytes.Equal(got, m) {
			t.Errorf("RETR %d: got %q, want %q", i+1, got, m)
		}
	}

	// TOP: header, blank line, k body lines.
	c.ok("TOP 2 0")
	if got := string(c.body()); got != "Subject: dots\r\n\r\n" {
		t.Errorf("TOP 2 0 = %q", got)
	}
	c.ok("TOP 2 3")
	if got := string(c.body()); got != "Subject: dots\r\n\r\n.leading dot\r\n..two dots\r\n.\r\n" {
		t.Errorf("TOP 2 3 = %q", got)
	}
	c.ok("TOP 2 1000")
	if got := c.body(); !bytes.Equal(got, msgs[1]) {
		t.Errorf("TOP 2 1000 = %q", got)
	}
	c.ok("TOP 3 5")
	if got := c.body(); !bytes.Equal(got, msgs[2]) {
		t.Errorf("TOP 3 5 = %q", got)
	}
	c.ok("TOP 4 1")
	if got, want := c.body(), msgs[3][:len("Subject: long line\r\n\r\n")+5002]; !bytes.Equal(got, want) {
		t.Errorf("TOP 4 1: %d octets, want %d", len(got), len(want))
	}
	c.err("usage", "TOP 1")
	c.err("usage", "TOP 1 -1")
	c.err("no such message", "TOP 9 1")
}

func TestDeleRsetQuit(t *testing.T) {
	ts := startServer(t, nil)
	box := ts.inbox(testUser)
	msgs := mixedMessages()
	for _, m := range msgs {
		box.deliver(m)
	}
	c := dial(t, ts.addr)
	c.login(testUser, testPass)
	c.ok("DELE 1")
	c.err("already deleted", "DELE 1")
	c.err("already deleted", "RETR 1")
	c.err("already deleted", "LIST 1")
	c.ok("DELE 3")
	if l, want := c.ok("STAT"), fmt.Sprintf("+OK %d %d", len(msgs)-2, totalSize(msgs)-len(msgs[0])-len(msgs[2])); l != want {
		t.Errorf("STAT after DELE = %q, want %q", l, want)
	}
	c.ok("LIST")
	if lines := c.lines(); len(lines) != len(msgs)-2 || !strings.HasPrefix(lines[0], "2 ") || !strings.HasPrefix(lines[1], "4 ") {
		t.Errorf("LIST after DELE: %q", lines)
	}
	c.ok("RSET")
	if l, want := c.ok("STAT"), fmt.Sprintf("+OK %d %d", len(msgs), totalSize(msgs)); l != want {
		t.Errorf("STAT after RSET = %q, want %q", l, want)
	}
	c.ok("DELE 2")
	c.ok("DELE 5")
	if n := len(box.contents()); n != len(msgs) {
		t.Fatalf("deleted before QUIT: %d messages left", n)
	}
	if l := c.ok("QUIT"); !strings.Contains(l, fmt.Sprintf("(%d messages left)", len(msgs)-2)) {
		t.Errorf("QUIT = %q", l)
	}
	left := box.contents()
	if len(left) != len(msgs)-2 || !bytes.Equal(left[1].data, msgs[2]) || !bytes.Equal(left[3].data, msgs[5]) {
		t.Errorf("after QUIT: %d messages", len(left))
	}
}

func totalSize(msgs [][]byte) int {
	n := 0
	for _, m := range msgs {
		n += len(m)
	}
	return n
}

func TestDroppedConnectionDeletesNothing(t *testing.T) {
	ts := startServer(t, nil)
	box := ts.inbox(testUser)
	for _, m := range mixedMessages() {
		box.deliver(m)
	}
	c := dial(t, ts.addr)
	c.login(testUser, testPass)
	for i := range mixedMessages() {
		c.ok("DELE %d", i+1)
	}
	c.conn.Close()
	// The lock is released when the server notices; a new session then
	// sees every message.
	c2 := loginEventually(t, ts.addr, testUser, testPass)
	if l := c2.ok("STAT"); !strings.HasPrefix(l, fmt.Sprintf("+OK %d ", len(mixedMessages()))) {
		t.Errorf("STAT = %q", l)
	}
	if box.expunges != 0 {
		t.Errorf("Expunge called %d times", box.expunges)
	}
}

// loginEventually logs in, retrying while the mailbox is still locked by
// a session the server has not yet seen closed.
func loginEventually(t *testing.T, addr, user, pass string) *client {
	t.Helper()
	for range 100 {
		c := dial(t, addr)
		c.ok("USER %s", user)
		l := c.cmd("PASS %s", pass)
		if strings.HasPrefix(l, "+OK") {
			return c
		}
		if !strings.Contains(l, "[IN-USE]") {
			t.Fatalf("PASS = %q", l)
		}
		c.conn.Close()
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("mailbox stays locked")
	return nil
}

func TestInUse(t *testing.T) {
	ts := startServer(t, nil)
	ts.inbox(testUser).deliver(mixedMessages()[0])
	c1 := dial(t, ts.addr)
	c1.login(testUser, testPass)
	c2 := dial(t, ts.addr)
	c2.ok("USER %s", testUser)
	c2.err("-ERR [IN-USE]", "PASS %s", testPass)
	c2.err("-ERR [IN-USE]", "AUTH PLAIN %s", plainIR("", strings.ToUpper(testUser), testPass))
	// Another user is not affected.
	c3 := dial(t, ts.addr)
	c3.login("bob@example.test", "bobpw")
	c1.ok("QUIT")
	// QUIT released the lock before its reply was sent.
	c2.login(testUser, testPass)

	// The lock belongs to the server, not the package: a second server on
	// the same store has its own table.
	other := newServer(serverConfig{store: ts.store, auth: ts.auth, log: testLogger(t)})
	if _, ok := other.lockMailbox(mailboxKey(account{local: "alice", domain: "example.test"})); !ok {
		t.Error("lock shared between servers")
	}
}

func TestSnapshotAndSeen(t *testing.T) {
	ts := startServer(t, nil)
	box := ts.inbox(testUser)
	msgs := mixedMessages()
	box.deliver(msgs[0])
	box.deliver(msgs[1])
	c := dial(t, ts.addr)
	c.login(testUser, testPass)
	box.deliver(msgs[2]) // during the session: not in this maildrop
	if l := c.ok("STAT"); l != fmt.Sprintf("+OK 2 %d", len(msgs[0])+len(msgs[1])) {
		t.Errorf("STAT = %q", l)
	}
	c.err("no such message", "RETR 3")
	c.ok("TOP 1 0")
	c.body()
	if box.contents()[0].seen {
		t.Error("TOP marked the message seen")
	}
	c.ok("RETR 2")
	c.body()
	// Marked by the batch timer, while the session goes on.
	eventually(t, "RETR 2 marks it seen", func() bool { return box.contents()[1].seen })
	if box.contents()[0].seen {
		t.Error("message 1 seen without RETR")
	}
	c.ok("DELE 1")
	c.ok("QUIT")
	c = dial(t, ts.addr)
	c.login(testUser, testPass)
	if l := c.ok("STAT"); l != fmt.Sprintf("+OK 2 %d", len(msgs[1])+len(msgs[2])) {
		t.Errorf("STAT in the next session = %q", l)
	}
}

func TestMessageGoneDuringSession(t *testing.T) {
	ts := startServer(t, nil)
	box := ts.inbox(testUser)
	uid := box.deliver(mixedMessages()[0])
	box.deliver(mixedMessages()[1])
	c := dial(t, ts.addr)
	c.login(testUser, testPass)
	box.Expunge([]uint32{uid}, nil) // as an IMAP session would
	c.err("removed", "RETR 1")
	c.err("removed", "TOP 1 0")
	c.ok("RETR 2")
	c.body()
	c.ok("DELE 1")
	c.ok("QUIT")
	if n := len(box.contents()); n != 1 {
		t.Errorf("%d messages left, want 1", n)
	}
}

func TestPlaintextRefusedWithoutTLS(t *testing.T) {
	serverTLS := testutil.ServerTLS(t, "pop.example.test")
	ts := startServer(t, func(cfg *serverConfig) { cfg.tlsConfig = serverTLS })
	remoteOnly(ts.srv)
	ts.inbox(testUser).deliver(mixedMessages()[0])
	c := dial(t, ts.addr)
	c.ok("CAPA")
	if got := c.lines(); slices.Contains(got, "USER") || slices.Contains(got, "SASL PLAIN") || !slices.Contains(got, "STLS") {
		t.Errorf("CAPA on a remote plaintext connection: %q", got)
	}
	c.err("-ERR [AUTH] plaintext", "USER %s", testUser)
	c.err("-ERR [AUTH] plaintext", "AUTH PLAIN %s", plainIR("", testUser, testPass))
	c.err("-ERR", "PASS %s", testPass)
	if n := len(ts.auth.logins); n != 0 {
		t.Errorf("%d logins tried on plaintext", n)
	}
	// Under TLS the same is allowed.
	c.ok("STLS")
	tc := tls.Client(c.conn, clientTLS(t, serverTLS))
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c = wrapClient(t, tc)
	c.ok("CAPA")
	if got := c.lines(); !slices.Contains(got, "USER") || slices.Contains(got, "STLS") {
		t.Errorf("CAPA under TLS: %q", got)
	}
	c.err("already under TLS", "STLS")
	c.login(testUser, testPass)
	c.ok("RETR 1")
	if got := c.body(); !bytes.Equal(got, mixedMessages()[0]) {
		t.Errorf("RETR under TLS = %q", got)
	}
	c.ok("QUIT")
}

// TestSTLSDropsInjectedPlaintext sends commands after STLS in the same
// packet; they must not run as if they came under TLS (RFC 2595 §4).
func TestSTLSDropsInjectedPlaintext(t *testing.T) {
	serverTLS := testutil.ServerTLS(t, "pop.example.test")
	ts := startServer(t, func(cfg *serverConfig) { cfg.tlsConfig = serverTLS })
	conn, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := wrapClient(t, conn)
	c.expectOK("")
	if _, err := io.WriteString(conn, "STLS\r\nUSER "+testUser+"\r\n"); err != nil {
		t.Fatal(err)
	}
	c.expectOK("begin TLS")
	tc := tls.Client(conn, clientTLS(t, serverTLS))
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c = wrapClient(t, tc)
	c.err("USER first", "PASS %s", testPass)
	c.login(testUser, testPass)
}

func TestImplicitTLS(t *testing.T) {
	serverTLS := testutil.ServerTLS(t, "pop.example.test")
	ts := startServer(t, func(cfg *serverConfig) { cfg.tlsConfig = serverTLS })
	remoteOnly(ts.srv)
	addr := ts.listen(t, true)
	ts.inbox(testUser).deliver(mixedMessages()[1])
	conn, err := tls.Dial("tcp", addr, clientTLS(t, serverTLS))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := wrapClient(t, conn)
	c.expectOK("pop.example.test")
	c.ok("CAPA")
	if got := c.lines(); slices.Contains(got, "STLS") || !slices.Contains(got, "USER") {
		t.Errorf("CAPA on implicit TLS: %q", got)
	}
	c.err("already under TLS", "STLS")
	c.ok("AUTH PLAIN %s", plainIR("", testUser, testPass))
	c.ok("RETR 1")
	if got := c.body(); !bytes.Equal(got, mixedMessages()[1]) {
		t.Errorf("RETR = %q", got)
	}
	// A plaintext client on the TLS port gets nowhere.
	raw := dialRaw(t, addr)
	io.WriteString(raw, "USER "+testUser+"\r\n")
	buf := make([]byte, 100)
	raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, _ := raw.Read(buf); n > 0 && bytes.HasPrefix(buf[:n], []byte("+OK")) {
		t.Errorf("plaintext on TLS port answered %q", buf[:n])
	}
}

func dialRaw(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestLongLinesAndTooManyErrors(t *testing.T) {
	ts := startServer(t, nil)
	c := dial(t, ts.addr)
	// 253 octets + CRLF = 255: allowed; one more is not.
	c.ok("USER %s", strings.Repeat("u", 253-len("USER ")))
	c.err("too long", "USER %s", strings.Repeat("u", 254-len("USER ")))
	c.err("too long", "USER %s", strings.Repeat("a", 300))
	c.err("too long", "NOOP %s", strings.Repeat("a", 10000)) // beyond the read buffer
	c.login(testUser, testPass)                              // the session is still in step
	for range 6 {
		c.err("", "BOGUS")
	}
	c.err("unknown command", "BOGUS") // the 10th error, and the last
	if _, err := c.ReadLine(); err != io.EOF {
		t.Errorf("after too many errors: %v, want EOF", err)
	}
}

func TestIdleTimeout(t *testing.T) {
	ts := startServer(t, func(cfg *serverConfig) { cfg.idleTimeout = 200 * time.Millisecond })
	c := dial(t, ts.addr)
	c.err("", "NOOP")
	start := time.Now()
	if _, err := c.ReadLine(); err != io.EOF {
		t.Errorf("idle connection: %v, want EOF", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("closed after %v", d)
	}
}

func TestConnectionLimits(t *testing.T) {
	ts := startServer(t, func(cfg *serverConfig) { cfg.maxPerIP = 2; cfg.maxConns = 3 })
	c1 := dial(t, ts.addr)
	dial(t, ts.addr)
	refused := wrapClient(t, dialRaw(t, ts.addr))
	if l := refused.line(); l != "-ERR [SYS/TEMP] too many connections from your address" {
		t.Errorf("third connection from one IP: %q", l)
	}
	c1.ok("QUIT")
	// A slot frees when a session ends.
	for range 100 {
		c := wrapClient(t, dialRaw(t, ts.addr))
		if l := c.line(); strings.HasPrefix(l, "+OK") {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Error("slot not freed after QUIT")
}

// The total limit is its own refusal (every test client shares one IP,
// so the per-IP limit is switched off here).
func TestConnectionLimitTotal(t *testing.T) {
	ts := startServer(t, func(cfg *serverConfig) {
		cfg.maxPerIP, cfg.maxConns = -1, 1
		cfg.deadlines.ShedAfter = time.Hour // the first is not idle long enough to be shed
	})
	dial(t, ts.addr)
	refused := wrapClient(t, dialRaw(t, ts.addr))
	if l := refused.line(); l != "-ERR [SYS/TEMP] too many connections" {
		t.Errorf("second connection with max 1: %q", l)
	}
}

func TestShutdown(t *testing.T) {
	ts := startServer(t, nil)
	box := ts.inbox(testUser)
	box.deliver(mixedMessages()[0])
	idle := dial(t, ts.addr)
	busy := dial(t, ts.addr)
	busy.login(testUser, testPass)
	busy.ok("DELE 1")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ts.srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	for _, c := range []*client{idle, busy} {
		if l, err := c.ReadLine(); err != nil || l != "-ERR [SYS/TEMP] server shutting down" {
			t.Errorf("at shutdown: %q, %v", l, err)
		}
		if _, err := c.ReadLine(); err != io.EOF {
			t.Errorf("after the shutdown notice: %v, want EOF", err)
		}
	}
	if n := len(box.contents()); n != 1 {
		t.Errorf("shutdown applied a DELE: %d messages left", n)
	}
	if _, err := net.Dial("tcp", ts.addr); err == nil {
		t.Error("still accepting after Shutdown")
	}
}

func TestPipelining(t *testing.T) {
	ts := startServer(t, nil)
	box := ts.inbox(testUser)
	msgs := mixedMessages()
	for _, m := range msgs {
		box.deliver(m)
	}
	conn := dialRaw(t, ts.addr)
	var batch strings.Builder
	fmt.Fprintf(&batch, "USER %s\r\nPASS %s\r\nSTAT\r\n", testUser, testPass)
	for i := range msgs {
		fmt.Fprintf(&batch, "RETR %d\r\nDELE %d\r\n", i+1, i+1)
	}
	batch.WriteString("QUIT\r\nNOOP\r\n") // nothing after QUIT runs, its reply still comes
	if _, err := io.WriteString(conn, batch.String()); err != nil {
		t.Fatal(err)
	}
	c := wrapClient(t, conn)
	c.expectOK("")
	c.expectOK("send PASS")
	c.expectOK("maildrop")
	c.expectOK(fmt.Sprint(len(msgs)))
	for i, m := range msgs {
		c.expectOK(fmt.Sprintf("%d octets", len(m)))
		if got := c.body(); !bytes.Equal(got, m) {
			t.Errorf("pipelined RETR %d differs", i+1)
		}
		c.expectOK("message")
	}
	c.expectOK("pop.example.test")
	if n := len(box.contents()); n != 0 {
		t.Errorf("%d messages left", n)
	}
}

// panicStore makes the session code panic, to show that a bug costs one
// connection and not the server.
type panicStore struct{}

func (panicStore) Inbox(domain, local string) (maildrop, error) { panic("bug in the store") }

func TestPanicCostsOneConnection(t *testing.T) {
	ts := startServer(t, func(cfg *serverConfig) { cfg.store = panicStore{} })
	c := dial(t, ts.addr)
	c.ok("USER %s", testUser)
	c.PrintfLine("PASS %s", testPass)
	if _, err := c.ReadLine(); err == nil {
		t.Error("a reply after a panic")
	}
	c = dial(t, ts.addr)
	c.ok("CAPA")
	c.lines()
	// The session's mailbox lock went with it.
	key := mailboxKey(account{local: "alice", domain: "example.test"})
	for range 100 {
		if unlock, ok := ts.srv.lockMailbox(key); ok {
			unlock()
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Error("lock leaked by the panicking session")
}

// TestLargeMaildrop lists 100,000 messages: STAT, LIST and UIDL must come
// from the snapshot, without opening a single message.
func TestLargeMaildrop(t *testing.T) {
	ts := startServer(t, nil)
	box := ts.inbox(testUser)
	const n = 100_000
	blob := bytes.Repeat([]byte("x"), 200)
	var total int
	for i := range n {
		size := 50 + i%150
		box.msgs = append(box.msgs, fakeMsg{uid: uint32(i*2 + 1), data: blob[:size]})
		total += size
	}
	c := dial(t, ts.addr)
	c.login(testUser, testPass)
	if l, want := c.ok("STAT"), fmt.Sprintf("+OK %d %d", n, total); l != want {
		t.Errorf("STAT = %q, want %q", l, want)
	}
	c.ok("LIST")
	lines := c.lines()
	if len(lines) != n || lines[n-1] != fmt.Sprintf("%d %d", n, 50+(n-1)%150) {
		t.Errorf("LIST: %d lines, last %q", len(lines), lines[len(lines)-1])
	}
	c.ok("UIDL")
	lines = c.lines()
	if len(lines) != n || lines[n-1] != fmt.Sprintf("%d %08x%08x", n, box.uidValidity, 2*n-1) {
		t.Errorf("UIDL: %d lines, last %q", len(lines), lines[len(lines)-1])
	}
	if box.opens != 0 {
		t.Errorf("%d message files opened", box.opens)
	}
}

// eventually waits up to 5 s for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
	}
}

// TestSeenBatched retrieves many messages: they are marked \Seen in a
// few batches, at the latest when the session ends, even without QUIT.
func TestSeenBatched(t *testing.T) {
	ts := startServer(t, nil)
	box := ts.inbox(testUser)
	for range 50 {
		box.deliver(mixedMessages()[0])
	}
	c := dial(t, ts.addr)
	c.login(testUser, testPass)
	for i := range 50 {
		c.ok("RETR %d", i+1)
		c.body()
	}
	c.conn.Close()
	eventually(t, "all seen after the session", func() bool {
		for _, m := range box.contents() {
			if !m.seen {
				return false
			}
		}
		return true
	})
	if box.markSeen > 3 {
		t.Errorf("%d MarkSeen calls for 50 RETRs", box.markSeen)
	}
}

func TestServeErrors(t *testing.T) {
	srv := newServer(serverConfig{store: newFakeStore(), auth: &fakeAuth{}, log: testLogger(t)})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := srv.ServeTLS(ln); err == nil {
		t.Error("ServeTLS without a TLS configuration succeeded")
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(ln); err != ErrServerClosed {
		t.Errorf("Serve after Shutdown = %v", err)
	}
}
