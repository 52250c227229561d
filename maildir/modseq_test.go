package maildir

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"postie/safeio"
)

// msgByUID returns the message with uid (fails the test if absent).
func msgByUID(t *testing.T, m *Mailbox, uid uint32) Message {
	t.Helper()
	for _, x := range messages(m) {
		if x.UID == uid {
			return x
		}
	}
	t.Fatalf("%s: no UID %d", m.Name(), uid)
	return Message{}
}

func vanishedSince(t *testing.T, m *Mailbox, ms uint64) []uint32 {
	t.Helper()
	uids, complete := m.Vanished(ms)
	if !complete {
		t.Errorf("Vanished(%d) not complete", ms)
	}
	return uids
}

// TestModSeqEveryChange: arrival, flag change and expunge each move
// HIGHESTMODSEQ up; the changed message carries the new modseq; the
// expunge is remembered; all of it survives a restart.
func TestModSeqEveryChange(t *testing.T) {
	u, root := testUser(t)
	for i := range 3 {
		deliver(t, u, body(i))
	}
	inbox := mailbox(t, u, "INBOX")
	h0 := inbox.HighestModSeq()
	if h0 < 1 {
		t.Fatalf("HIGHESTMODSEQ %d", h0)
	}
	for _, x := range messages(inbox) {
		if x.ModSeq < 1 || x.ModSeq > h0 {
			t.Errorf("UID %d modseq %d, highest %d", x.UID, x.ModSeq, h0)
		}
	}
	if _, err := inbox.SetFlags([]uint32{2}, FlagsAdd, FlagSeen, nil); err != nil {
		t.Fatal(err)
	}
	h1 := inbox.HighestModSeq()
	if m2 := msgByUID(t, inbox, 2); h1 <= h0 || m2.ModSeq != h1 {
		t.Fatalf("after STORE: highest %d (was %d), UID 2 modseq %d", h1, h0, m2.ModSeq)
	}
	if m1 := msgByUID(t, inbox, 1); m1.ModSeq > h0 {
		t.Errorf("UID 1 unchanged but modseq %d > %d", m1.ModSeq, h0)
	}
	if _, err := inbox.Expunge([]uint32{1}, nil); err != nil {
		t.Fatal(err)
	}
	h2 := inbox.HighestModSeq()
	if h2 <= h1 {
		t.Fatalf("after EXPUNGE highest %d, was %d", h2, h1)
	}
	if got := vanishedSince(t, inbox, h1); !slices.Equal(got, []uint32{1}) {
		t.Errorf("vanished since %d: %v", h1, got)
	}
	if got := vanishedSince(t, inbox, h2); len(got) != 0 {
		t.Errorf("vanished since %d: %v", h2, got)
	}
	appended, err := inbox.Append(strings.NewReader(body(7)), FlagDraft, testDate, nil)
	if err != nil {
		t.Fatal(err)
	}
	h3 := inbox.HighestModSeq()
	if m := msgByUID(t, inbox, appended); h3 <= h2 || m.ModSeq != h3 {
		t.Fatalf("after APPEND highest %d, message modseq %d", h3, m.ModSeq)
	}
	before := messages(inbox)

	again := mailbox(t, reopen(t, root), "INBOX")
	if got := again.HighestModSeq(); got != h3 {
		t.Errorf("after restart HIGHESTMODSEQ %d, want %d", got, h3)
	}
	if got := messages(again); !slices.Equal(got, before) {
		t.Errorf("after restart\n got %+v\nwant %+v", got, before)
	}
	if got := vanishedSince(t, again, h1); !slices.Equal(got, []uint32{1}) {
		t.Errorf("after restart, vanished since %d: %v", h1, got)
	}
}

// TestModSeqOtherProcess: flag changes, an expunge and a delivery made by
// another process (another Store on the same tree) reach this one with
// exactly the modseqs that process recorded, each above what was shown.
func TestModSeqOtherProcess(t *testing.T) {
	u, root := testUser(t)
	for i := range 4 {
		deliver(t, u, body(i))
	}
	a := mailbox(t, u, "INBOX")
	shown := a.HighestModSeq()

	ub := reopen(t, root)
	b := mailbox(t, ub, "INBOX")
	if _, err := b.SetFlags([]uint32{2}, FlagsAdd, FlagFlagged, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Expunge([]uint32{3}, nil); err != nil {
		t.Fatal(err)
	}
	deliver(t, ub, body(9)) // B has INBOX loaded: it numbers the message
	if err := a.Refresh(); err != nil {
		t.Fatal(err)
	}
	if got, want := messages(a), messages(b); !slices.Equal(got, want) {
		t.Fatalf("process A\n got %+v\nB has %+v", got, want)
	}
	if a.HighestModSeq() != b.HighestModSeq() {
		t.Errorf("HIGHESTMODSEQ A %d, B %d", a.HighestModSeq(), b.HighestModSeq())
	}
	var changed []uint32
	for _, x := range messages(a) {
		if x.ModSeq > shown {
			changed = append(changed, x.UID)
		}
	}
	if !slices.Equal(changed, []uint32{2, 5}) {
		t.Errorf("changed since %d: %v, want [2 5]", shown, changed)
	}
	if got := vanishedSince(t, a, shown); !slices.Equal(got, []uint32{3}) {
		t.Errorf("vanished since %d: %v, want [3]", shown, got)
	}
}

// TestModSeqBehindOurBack: a file renamed or removed by another tool, while
// we run or while we do not, is a change with a new modseq.
func TestModSeqBehindOurBack(t *testing.T) {
	u, root := testUser(t)
	for i := range 3 {
		deliver(t, u, body(i))
	}
	inbox := mailbox(t, u, "INBOX")
	cur := filepath.Join(root, "example.test", "alice", "cur")
	rename := func(uid uint32, info string) {
		t.Helper()
		i, _ := inbox.indexLocked(uid)
		old := inbox.fileNameLocked(i)
		if err := os.Rename(filepath.Join(cur, old), filepath.Join(cur, inbox.keys[i]+info)); err != nil {
			t.Fatal(err)
		}
	}
	shown := inbox.HighestModSeq()
	rename(1, ":2,F")
	if i, _ := inbox.indexLocked(2); os.Remove(filepath.Join(cur, inbox.fileNameLocked(i))) != nil {
		t.Fatal("remove UID 2")
	}
	inbox.cur.valid = false // as after the mtime tick a real tool's change leaves
	if err := inbox.Refresh(); err != nil {
		t.Fatal(err)
	}
	m1 := msgByUID(t, inbox, 1)
	if m1.Flags != FlagFlagged || m1.ModSeq <= shown {
		t.Errorf("renamed: flags %v modseq %d (shown %d)", m1.Flags, m1.ModSeq, shown)
	}
	if got := vanishedSince(t, inbox, shown); !slices.Equal(got, []uint32{2}) {
		t.Errorf("vanished since %d: %v", shown, got)
	}

	// While no Postie runs.
	shown = inbox.HighestModSeq()
	rename(3, ":2,S")
	again := mailbox(t, reopen(t, root), "INBOX")
	if m3 := msgByUID(t, again, 3); m3.Flags != FlagSeen || m3.ModSeq <= shown {
		t.Errorf("renamed while stopped: flags %v modseq %d (shown %d)", m3.Flags, m3.ModSeq, shown)
	}
	if m1 := msgByUID(t, again, 1); m1.ModSeq > shown {
		t.Errorf("UID 1 unchanged, modseq %d > %d", m1.ModSeq, shown)
	}
}

// TestModSeqFaults fails the UID list append (write, then fsync) under each
// operation: the operation fails, nothing of it is shown, HIGHESTMODSEQ does
// not move; after a restart every change that was acknowledged is there,
// and whatever was not acknowledged but happened anyway (an expunge's files
// are gone) carries a modseq above everything shown.
func TestModSeqFaults(t *testing.T) {
	ops := []struct {
		name string
		run  func(m *Mailbox) error
	}{
		{"store", func(m *Mailbox) error { _, err := m.SetFlags([]uint32{1}, FlagsAdd, FlagAnswered, nil); return err }},
		{"expunge", func(m *Mailbox) error { _, err := m.Expunge([]uint32{3}, nil); return err }},
		{"append", func(m *Mailbox) error {
			_, err := m.Append(strings.NewReader(body(8)), 0, testDate, nil)
			return err
		}},
	}
	for _, op := range ops {
		for _, step := range []safeio.Op{safeio.OpWrite, safeio.OpSync} {
			t.Run(op.name+"/"+string(step), func(t *testing.T) {
				root := t.TempDir()
				f := &faults{}
				s := NewStore(root, StoreOptions{Hostname: "mx.test", Logger: slog.New(slog.DiscardHandler), FS: &safeio.FS{Fault: f.fault}})
				u, err := s.User("example.test", "alice")
				if err != nil {
					t.Fatal(err)
				}
				for i := range 3 {
					deliver(t, u, body(i))
				}
				inbox := mailbox(t, u, "INBOX")
				before, shown := messages(inbox), inbox.HighestModSeq()
				shown0 := shown
				f.arm(step, suffix(uidlistFile), 0)
				err = op.run(inbox)
				f.disarm()
				if !errors.Is(err, safeio.ErrInjected) {
					t.Fatalf("err %v, want the injected fault", err)
				}
				if got := messages(inbox); !slices.Equal(got, before) || inbox.HighestModSeq() != shown {
					t.Errorf("after the failure: highest %d (was %d)\n got %+v\nwant %+v", inbox.HighestModSeq(), shown, got, before)
				}
				// Acknowledged now: must survive.
				if _, err := inbox.SetFlags([]uint32{2}, FlagsAdd, FlagFlagged, nil); err != nil {
					t.Fatal(err)
				}
				acked := msgByUID(t, inbox, 2)
				shown = inbox.HighestModSeq()
				again := mailbox(t, reopen(t, root), "INBOX")
				if got := msgByUID(t, again, 2); got != acked {
					t.Errorf("acknowledged change after restart: %+v, want %+v", got, acked)
				}
				if again.HighestModSeq() < shown {
					t.Errorf("HIGHESTMODSEQ went back: %d < %d", again.HighestModSeq(), shown)
				}
				for _, x := range messages(again) {
					if x.UID != 2 && x.ModSeq > shown0 && x.ModSeq <= shown {
						t.Errorf("UID %d changed with modseq %d, not above the %d shown", x.UID, x.ModSeq, shown)
					}
				}
				if op.name == "expunge" {
					if got, _ := again.Vanished(shown0); !slices.Equal(got, []uint32{3}) {
						t.Errorf("the expunge that happened: vanished since %d: %v", shown0, got)
					}
				}
			})
		}
	}
}

// modseqProcess is the second process of TestModSeqSecondProcess: it
// delivers, changes flags and expunges in INBOX.
func modseqProcess(root string) int {
	u, err := NewStore(root, StoreOptions{Hostname: "helper.test"}).User("example.test", "alice")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	inbox, err := u.Mailbox("INBOX")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	r := rand.New(rand.NewPCG(7, 7))
	for i := range 40 {
		if _, err := u.Deliver(strings.NewReader(body(3000+i)), DeliverOptions{}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		uids := uidsOf(inbox)
		uid := uids[r.IntN(len(uids))]
		op := FlagsAdd
		if i%2 == 1 {
			op = FlagsRemove
		}
		if _, err := inbox.SetFlags([]uint32{uid}, op, FlagFlagged, nil); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if i%5 == 4 {
			if _, err := inbox.Expunge([]uint32{uids[r.IntN(len(uids))]}, nil); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
	}
	return 0
}

// TestModSeqSecondProcess: while a real second process delivers, changes
// flags and expunges, this one changes flags too. Every change gets its
// own modseq (no two messages or expunges share one), both processes and a
// fresh one agree on every message's modseq, and a client that took a
// snapshot midway resynchronises exactly: every message whose flags moved
// since, and every new one, has a modseq above the snapshot's
// HIGHESTMODSEQ, and every message gone is in Vanished.
func TestModSeqSecondProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a process")
	}
	u, root := testUser(t)
	for i := range 20 {
		deliver(t, u, body(i))
	}
	inbox := mailbox(t, u, "INBOX")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "POSTIE_MAILDIR_HELPER="+root, "POSTIE_MAILDIR_MODSEQ=1")
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 1))
	var snapHighest uint64
	var snap map[uint32]Message
	for i := range 60 {
		if err := inbox.Refresh(); err != nil {
			t.Fatal(err)
		}
		uids := uidsOf(inbox)
		op := FlagsAdd
		if i%2 == 1 {
			op = FlagsRemove
		}
		if _, err := inbox.SetFlags([]uint32{uids[r.IntN(len(uids))]}, op, FlagSeen, nil); err != nil {
			t.Fatal(err)
		}
		if i == 20 {
			snapHighest = inbox.HighestModSeq() // before the view, as imapd's SELECT does
			snap = make(map[uint32]Message)
			for _, m := range messages(inbox) {
				snap[m.UID] = m
			}
		}
		time.Sleep(time.Millisecond)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	if err := inbox.Refresh(); err != nil {
		t.Fatal(err)
	}
	final := messages(inbox)
	fresh := messages(mailbox(t, reopen(t, root), "INBOX"))
	if !slices.Equal(final, fresh) {
		t.Errorf("this process and a fresh one disagree:\n%+v\n%+v", final, fresh)
	}
	seen := make(map[uint64]uint32)
	now := make(map[uint32]bool)
	for _, m := range final {
		now[m.UID] = true
		if other, dup := seen[m.ModSeq]; dup {
			t.Errorf("modseq %d on UIDs %d and %d", m.ModSeq, other, m.UID)
		}
		seen[m.ModSeq] = m.UID
		if m.ModSeq > inbox.HighestModSeq() {
			t.Errorf("UID %d modseq %d above HIGHESTMODSEQ %d", m.UID, m.ModSeq, inbox.HighestModSeq())
		}
		if old, ok := snap[m.UID]; (!ok || old.Flags != m.Flags) && m.ModSeq <= snapHighest {
			t.Errorf("UID %d changed (%v → %v) with modseq %d, not above the snapshot's %d", m.UID, old.Flags, m.Flags, m.ModSeq, snapHighest)
		}
	}
	gone, complete := inbox.Vanished(snapHighest)
	if !complete {
		t.Fatal("vanished not complete")
	}
	for uid := range snap {
		if !now[uid] && !slices.Contains(gone, uid) {
			t.Errorf("UID %d expunged, not in Vanished(%d) = %v", uid, snapHighest, gone)
		}
	}
	for _, v := range inbox.vanished {
		if other, dup := seen[v.ms]; dup {
			t.Errorf("modseq %d on expunged UID %d and UID %d", v.ms, v.uid, other)
		}
		seen[v.ms] = v.uid
	}
}

// TestModSeqListStaysBounded: every flag change appends a line to the UID
// list; superseded lines count as dead, so the list is compacted and does
// not grow with the number of changes. Modseqs survive the compaction.
func TestModSeqListStaysBounded(t *testing.T) {
	u, root := testUser(t)
	for i := range 10 {
		deliver(t, u, body(i))
	}
	inbox := mailbox(t, u, "INBOX")
	for i := range 3000 {
		op := FlagsAdd
		if i/10%2 == 1 {
			op = FlagsRemove
		}
		if _, err := inbox.SetFlags([]uint32{uint32(1 + i%10)}, op, FlagSeen, nil); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(filepath.Join(root, "example.test", "alice", uidlistFile))
	if err != nil {
		t.Fatal(err)
	}
	n := strings.Count(string(data), "\n")
	if n > 1100 {
		t.Errorf("UID list has %d lines after 3000 flag changes of 10 messages", n)
	}
	before, highest := messages(inbox), inbox.HighestModSeq()
	again := mailbox(t, reopen(t, root), "INBOX")
	if got := messages(again); !slices.Equal(got, before) || again.HighestModSeq() != highest {
		t.Errorf("after compaction and restart: highest %d (was %d)\n got %+v\nwant %+v", again.HighestModSeq(), highest, got, before)
	}
}

// TestModSeqVanishedBounded: past maxVanished expunges the oldest are
// forgotten, and Vanished says so for a modseq below what is remembered.
func TestModSeqVanishedBounded(t *testing.T) {
	u, _ := testUser(t)
	m := mailbox(t, u, "INBOX")
	m.mu.Lock()
	for i := range maxVanished + maxVanished/4 {
		m.noteVanishedLocked(uint32(i+1), uint64(i+2))
	}
	m.mu.Unlock()
	if len(m.vanished) > maxVanished+maxVanished/8 {
		t.Errorf("%d expunges remembered", len(m.vanished))
	}
	if _, complete := m.Vanished(1); complete {
		t.Error("Vanished(1) complete, though the oldest expunges were forgotten")
	}
	uids, complete := m.Vanished(m.floor)
	if !complete || len(uids) != len(m.vanished) {
		t.Errorf("Vanished(floor %d): %d UIDs, complete %v", m.floor, len(uids), complete)
	}
}
