package imapd

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"postie/maildir"
)

// events collects a client's unilateral data.
type events struct {
	mu       sync.Mutex
	expunged []uint32
	flags    map[uint32][]imap.Flag
	exists   []uint32
	signal   chan struct{}
}

func newEvents() *events {
	return &events{flags: make(map[uint32][]imap.Flag), signal: make(chan struct{}, 100)}
}

func (e *events) handler() *imapclient.UnilateralDataHandler {
	note := func() {
		select {
		case e.signal <- struct{}{}:
		default:
		}
	}
	return &imapclient.UnilateralDataHandler{
		Expunge: func(seq uint32) { e.mu.Lock(); e.expunged = append(e.expunged, seq); e.mu.Unlock(); note() },
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				e.mu.Lock()
				e.exists = append(e.exists, *d.NumMessages)
				e.mu.Unlock()
				note()
			}
		},
		Fetch: func(m *imapclient.FetchMessageData) {
			buf, err := m.Collect()
			if err == nil {
				e.mu.Lock()
				e.flags[buf.SeqNum] = buf.Flags
				e.mu.Unlock()
			}
			note()
		},
	}
}

// wait polls cond until it holds or the deadline passes.
func (e *events) wait(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.After(d)
	for {
		e.mu.Lock()
		ok := cond()
		e.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-e.signal:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestTwoSessionsSeeEachOther(t *testing.T) {
	ts := newTestServer(t)
	for i := 1; i <= 4; i++ {
		ts.deliver(testMessage(i, "s"))
	}
	a := ts.dial(nil)
	ev := newEvents()
	b := ts.dial(ev.handler())
	mustSelect(t, a, "INBOX", false)
	mustSelect(t, b, "INBOX", false)

	// A flag change reaches the other session at its next command...
	if err := a.Store(imap.SeqSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged, "$label2"}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	ev.wait(t, "FETCH FLAGS after NOOP", 2*time.Second, func() bool { return hasFlag(ev.flags[2], "$label2") })

	// ...and, during IDLE, at once: flags, expunges and new mail.
	idle, err := b.Idle()
	if err != nil {
		t.Fatal(err)
	}
	a.Store(imap.SeqSetNum(3), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagSeen}}, nil).Close()
	ev.wait(t, "FETCH FLAGS in IDLE", 2*time.Second, func() bool { return hasFlag(ev.flags[3], imap.FlagSeen) })
	a.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close()
	if _, err := a.Expunge().Collect(); err != nil {
		t.Fatal(err)
	}
	ev.wait(t, "EXPUNGE in IDLE", 2*time.Second, func() bool { return len(ev.expunged) == 1 && ev.expunged[0] == 1 })
	ts.deliver(testMessage(5, "new"))
	ev.wait(t, "EXISTS in IDLE", 2*time.Second, func() bool { return len(ev.exists) > 0 && ev.exists[len(ev.exists)-1] == 4 })
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
	// Both sessions now agree on the sequence numbers (a learns of the new message with NOOP first:
	// FETCH 1:* covers only the messages a client has been told about).
	a.Noop().Wait()
	ma := fetchAll(t, a, imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true})
	mb := fetchAll(t, b, imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true})
	if len(ma) != 4 || len(mb) != 4 || ma[3].UID != mb[3].UID || mb[0].UID != 2 {
		t.Errorf("views differ: %d/%d", len(ma), len(mb))
	}
}

// A plain FETCH must not announce expunges (RFC 9051 §7.5.1); sequence numbers stay those the
// client knows until a command that may.
func TestExpungeNotDuringFetch(t *testing.T) {
	ts := newTestServer(t)
	for i := 1; i <= 3; i++ {
		ts.deliver(testMessage(i, "f"))
	}
	a := ts.dial(nil)
	ev := newEvents()
	b := ts.dial(ev.handler())
	mustSelect(t, a, "INBOX", false)
	mustSelect(t, b, "INBOX", false)
	a.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close()
	a.Expunge().Close()
	msgs := fetchAll(t, b, imap.SeqSet{{Start: 2, Stop: 3}}, &imap.FetchOptions{UID: true})
	if len(msgs) != 2 || msgs[0].SeqNum != 2 || msgs[0].UID != 2 || msgs[1].UID != 3 {
		t.Errorf("FETCH used new numbers before EXPUNGE was sent: %+v", msgs)
	}
	ev.mu.Lock()
	n := len(ev.expunged)
	ev.mu.Unlock()
	if n != 0 {
		t.Error("EXPUNGE sent during FETCH")
	}
	if err := b.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	ev.wait(t, "EXPUNGE after NOOP", time.Second, func() bool { return len(ev.expunged) == 1 })
}

// Mail written by another process (postie deliver) shows up in IDLE within seconds.
func TestIdleSeesOtherProcessDelivery(t *testing.T) {
	ts := newTestServer(t)
	ts.deliver(testMessage(1, "first"))
	ev := newEvents()
	c := ts.dial(ev.handler())
	mustSelect(t, c, "INBOX", false)
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	other := maildir.NewStore(ts.dir, maildir.StoreOptions{Hostname: "other"})
	u, err := other.User("example.test", "alice")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	if _, err := u.Deliver(strings.NewReader(testMessage(2, "from elsewhere")), maildir.DeliverOptions{}); err != nil {
		t.Fatal(err)
	}
	ev.wait(t, "EXISTS for a delivery by another process", 5*time.Second, func() bool {
		return len(ev.exists) > 0 && ev.exists[len(ev.exists)-1] == 2
	})
	t.Logf("seen after %v", time.Since(start).Round(time.Millisecond))
	idle.Close()
	idle.Wait()
	msgs := fetchAll(t, c, imap.SeqSetNum(2), &imap.FetchOptions{Envelope: true, UID: true})
	if len(msgs) != 1 || msgs[0].Envelope.Subject != "from elsewhere" || msgs[0].UID != 2 {
		t.Errorf("%+v", msgs)
	}
}

func TestUIDsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	ts := startTestServer(t, dir)
	for i := 1; i <= 3; i++ {
		ts.deliver(testMessage(i, "r"))
	}
	c := ts.dial(nil)
	sd := mustSelect(t, c, "INBOX", false)
	c.Store(imap.SeqSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted, "$Important"}}, nil).Close()
	c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{"$Junk"}}, nil).Close()
	c.Expunge().Close()
	before := fetchAll(t, c, imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Flags: true})
	c.Logout().Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ts.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	ts2 := startTestServer(t, dir) // a new Server and a new Store on the same directory
	ts2.deliver(testMessage(4, "after restart"))
	c2 := ts2.dial(nil)
	sd2 := mustSelect(t, c2, "INBOX", false)
	if sd2.UIDValidity != sd.UIDValidity || sd2.UIDNext != 5 {
		t.Errorf("UIDVALIDITY %d→%d, UIDNEXT %d", sd.UIDValidity, sd2.UIDValidity, sd2.UIDNext)
	}
	after := fetchAll(t, c2, imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Flags: true})
	if len(after) != 3 || after[0].UID != before[0].UID || after[1].UID != before[1].UID || after[2].UID != 4 {
		t.Fatalf("UIDs before %+v after %+v", before, after)
	}
	if !hasFlag(after[0].Flags, "$Junk") {
		t.Errorf("keyword lost: %v", after[0].Flags)
	}
}

func TestShutdownSaysBye(t *testing.T) {
	ts := newTestServer(t)
	c := ts.dial(nil)
	mustSelect(t, c, "INBOX", false)
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ts.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Closed():
	case <-time.After(5 * time.Second):
		t.Fatal("connection still open after Shutdown")
	}
	_ = idle
	if _, err := imapclient.DialInsecure(ts.addr, nil); err == nil {
		// The listener is closed: dialing may still succeed on some systems only if reused; a
		// greeting must not come.
		t.Log("dial succeeded after shutdown")
	}
}
