package pop3d

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"strings"
	"sync"
	"testing"

	"postie/accounts"
	"postie/envelope"
	"postie/maildir"
)

// The tests here run the server over the real maildir store, as New
// builds it.

// accounts.Authenticator is what cmd/postie passes.
var _ Authenticator = (*accounts.Authenticator)(nil)

// staticAuth is an Authenticator with fixed passwords.
type staticAuth map[string]string

func (a staticAuth) Login(ctx context.Context, remoteIP, service, username, password string) (*accounts.User, error) {
	key := envelope.Key(username)
	if want, ok := a[key]; !ok || want != password || service != "pop3" {
		return nil, accounts.ErrAuthFailed
	}
	local, domain := envelope.Split(key)
	return &accounts.User{Address: key, Local: local, Domain: domain}, nil
}

type realServer struct {
	dir   string
	store *maildir.Store
	srv   *Server
	addr  string
	inbox *maildir.Mailbox
}

// startReal runs a server over a maildir store rooted at dir.
func startReal(t testing.TB, dir string, tlsConfig *tls.Config) *realServer {
	t.Helper()
	store := maildir.NewStore(dir, maildir.StoreOptions{Hostname: "pop.example.test", Logger: testLogger(t)})
	srv := New(Options{
		Store:     store,
		Auth:      staticAuth{testUser: testPass, "bob@example.test": "bobpw"},
		TLSConfig: tlsConfig,
		Hostname:  "pop.example.test",
		Logger:    testLogger(t),
	})
	rs := &realServer{dir: dir, store: store, srv: srv}
	rs.addr = serve(t, srv, false)
	u, err := store.User("example.test", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if rs.inbox, err = u.Mailbox("INBOX"); err != nil {
		t.Fatal(err)
	}
	return rs
}

func (rs *realServer) deliver(t testing.TB, msgs ...[]byte) {
	t.Helper()
	u, err := rs.store.User("example.test", "alice")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if _, err := u.Deliver(bytes.NewReader(m), maildir.DeliverOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// messages returns the INBOX as the store sees it now.
func (rs *realServer) messages(t testing.TB) []maildir.Message {
	t.Helper()
	if err := rs.inbox.Refresh(); err != nil {
		t.Fatal(err)
	}
	var out []maildir.Message
	rs.inbox.View(func(ms []maildir.Message) { out = append(out, ms...) })
	return out
}

func (rs *realServer) uidls(t testing.TB) []string {
	var out []string
	for i, m := range rs.messages(t) {
		out = append(out, fmt.Sprintf("%d %08x%08x", i+1, rs.inbox.UIDValidity(), m.UID))
	}
	return out
}

func TestRealStoreRetrDeleQuit(t *testing.T) {
	rs := startReal(t, t.TempDir(), nil)
	msgs := mixedMessages()
	rs.deliver(t, msgs...)

	// What an IMAP session on the same INBOX is told.
	var mu sync.Mutex
	changes := map[maildir.ChangeKind]int{}
	cancel := rs.inbox.Watch(func(ch maildir.Change) {
		mu.Lock()
		changes[ch.Kind]++
		mu.Unlock()
	})
	defer cancel()

	c := dial(t, rs.addr)
	c.login(testUser, testPass)
	if l, want := c.ok("STAT"), fmt.Sprintf("+OK %d %d", len(msgs), totalSize(msgs)); l != want {
		t.Errorf("STAT = %q, want %q", l, want)
	}
	c.ok("LIST")
	for i, l := range c.lines() {
		if want := fmt.Sprintf("%d %d", i+1, len(msgs[i])); l != want {
			t.Errorf("LIST line %q, want %q", l, want)
		}
	}
	for i, m := range msgs {
		c.ok("RETR %d", i+1)
		if got := c.body(); !bytes.Equal(got, m) {
			t.Errorf("RETR %d: %s", i+1, firstDiff(got, m))
		}
	}
	c.ok("TOP 2 2")
	if got := string(c.body()); got != "Subject: dots\r\n\r\n.leading dot\r\n..two dots\r\n" {
		t.Errorf("TOP 2 2 = %q", got)
	}
	// RETR made every message \Seen, for IMAP too, within a second.
	eventually(t, "RETR marks messages seen", func() bool {
		for _, m := range rs.messages(t) {
			if m.Flags&maildir.FlagSeen == 0 {
				return false
			}
		}
		return true
	})
	c.ok("DELE 1")
	c.ok("DELE 4")
	c.conn.Close() // dropped: nothing deleted
	c = loginEventually(t, rs.addr, testUser, testPass)
	if got := len(rs.messages(t)); got != len(msgs) {
		t.Fatalf("%d messages after a dropped session, want %d", got, len(msgs))
	}
	before := rs.messages(t)
	c.ok("DELE 1")
	c.ok("DELE 4")
	c.ok("QUIT")
	after := rs.messages(t)
	if len(after) != len(msgs)-2 || after[0].UID != before[1].UID || after[2].UID != before[4].UID {
		t.Errorf("after QUIT: %v", after)
	}
	mu.Lock()
	defer mu.Unlock()
	if changes[maildir.FlagsChanged] != len(msgs) || changes[maildir.Expunged] != 2 {
		t.Errorf("IMAP watcher saw %v, want %d FlagsChanged and 2 Expunged", changes, len(msgs))
	}
}

func TestRealStoreSnapshotAndUIDL(t *testing.T) {
	dir := t.TempDir()
	rs := startReal(t, dir, nil)
	msgs := mixedMessages()
	rs.deliver(t, msgs[:3]...)

	c := dial(t, rs.addr)
	c.login(testUser, testPass)
	rs.deliver(t, msgs[3]) // not in this session's maildrop
	c.ok("UIDL")
	first := c.lines()
	if len(first) != 3 {
		t.Fatalf("UIDL during the session: %q", first)
	}
	c.err("no such message", "RETR 4")
	c.ok("QUIT")
	want := rs.uidls(t)
	if len(want) != 4 || !slicesEqualPrefix(want, first) {
		t.Fatalf("UIDL %q is not the store's %q", first, want)
	}

	// A restart: new Store, new Server, same directory.
	ctx := context.Background()
	if err := rs.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	rs2 := startReal(t, dir, nil)
	c = dial(t, rs2.addr)
	c.login(testUser, testPass)
	c.ok("UIDL")
	if got := c.lines(); !slicesEqualPrefix(got, want) || len(got) != len(want) {
		t.Errorf("UIDL after restart %q, want %q", got, want)
	}
	for _, l := range want {
		if uid := strings.Fields(l)[1]; len(uid) > 70 || strings.ContainsAny(uid, " \t") {
			t.Errorf("bad unique-id %q", uid)
		}
	}
}

func slicesEqualPrefix(long, short []string) bool {
	if len(short) > len(long) {
		return false
	}
	for i := range short {
		if long[i] != short[i] {
			return false
		}
	}
	return true
}

func TestRealStoreInUseAndExpungedByIMAP(t *testing.T) {
	rs := startReal(t, t.TempDir(), nil)
	rs.deliver(t, mixedMessages()[:3]...)
	c := dial(t, rs.addr)
	c.login(testUser, testPass)
	c2 := dial(t, rs.addr)
	c2.ok("USER %s", testUser)
	c2.err("-ERR [IN-USE]", "PASS %s", testPass)

	// An IMAP session expunges message 2 meanwhile.
	ms := rs.messages(t)
	if _, err := rs.inbox.Expunge([]uint32{ms[1].UID}, "imap"); err != nil {
		t.Fatal(err)
	}
	c.err("removed", "RETR 2")
	c.ok("DELE 2")
	c.ok("DELE 3")
	c.ok("QUIT")
	if left := rs.messages(t); len(left) != 1 || left[0].UID != ms[0].UID {
		t.Errorf("left: %v", left)
	}
	c2.login(testUser, testPass)
}
