package imapd

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"postie/maildir"
)

var (
	reHighest  = regexp.MustCompile(`\[HIGHESTMODSEQ (\d+)\]`)
	reFetchUID = regexp.MustCompile(`^\* (\d+) FETCH \(.*UID (\d+)`)
	reModSeq   = regexp.MustCompile(`MODSEQ \((\d+)\)`)
	reVanished = regexp.MustCompile(`^\* VANISHED (\(EARLIER\) )?(\S+)`)
	reValidity = regexp.MustCompile(`\[UIDVALIDITY (\d+)\]`)
)

// highestIn finds OK [HIGHESTMODSEQ n] in a command's answer.
func highestIn(t *testing.T, lines []string) uint64 {
	t.Helper()
	for _, l := range lines {
		if m := reHighest.FindStringSubmatch(l); m != nil {
			n, _ := strconv.ParseUint(m[1], 10, 64)
			return n
		}
	}
	t.Fatalf("no HIGHESTMODSEQ in %q", lines)
	return 0
}

func uidValidityIn(t *testing.T, lines []string) string {
	t.Helper()
	for _, l := range lines {
		if m := reValidity.FindStringSubmatch(l); m != nil {
			return m[1]
		}
	}
	t.Fatalf("no UIDVALIDITY in %q", lines)
	return ""
}

// fetched lists the UIDs of the FETCH responses in lines and their MODSEQ (0 when absent).
func fetched(lines []string) (uids []uint32, modseqs map[uint32]uint64) {
	modseqs = make(map[uint32]uint64)
	for _, l := range lines {
		m := reFetchUID.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		uid, _ := strconv.ParseUint(m[2], 10, 32)
		uids = append(uids, uint32(uid))
		if ms := reModSeq.FindStringSubmatch(l); ms != nil {
			modseqs[uint32(uid)], _ = strconv.ParseUint(ms[1], 10, 64)
		}
	}
	return uids, modseqs
}

// vanishedIn returns the set of the VANISHED response in lines ("" when none) and whether it said
// EARLIER.
func vanishedIn(lines []string) (set string, earlier bool) {
	for _, l := range lines {
		if m := reVanished.FindStringSubmatch(strings.TrimSpace(l)); m != nil {
			return m[2], m[1] != ""
		}
	}
	return "", false
}

func expectOK(t *testing.T, lines []string) {
	t.Helper()
	if tagged := last(lines); !strings.Contains(tagged, " OK") {
		t.Fatalf("answer %q", lines)
	}
}

// TestCondStoreRaw follows RFC 7162's CONDSTORE examples (§3.1), with our UIDs: SELECT (CONDSTORE),
// FETCH MODSEQ and CHANGEDSINCE, STORE (UNCHANGEDSINCE) with [MODIFIED], SEARCH MODSEQ, STATUS
// HIGHESTMODSEQ, and MODSEQ in the FETCH responses another session's change causes.
func TestCondStoreRaw(t *testing.T) {
	ts := newTestServer(t)
	for i := 1; i <= 4; i++ {
		ts.deliver(testMessage(i, fmt.Sprint("message ", i)))
	}
	r := ts.raw(true)
	if caps := strings.Join(r.cmd("c CAPABILITY"), ""); !strings.Contains(caps, " CONDSTORE") || !strings.Contains(caps, " QRESYNC") {
		t.Fatalf("capabilities %q", caps)
	}
	sel := r.cmd("a1 SELECT INBOX (CONDSTORE)")
	expectOK(t, sel)
	h0 := highestIn(t, sel)

	if got := r.cmd(fmt.Sprintf("a2 FETCH 1:* (FLAGS) (CHANGEDSINCE %d)", h0)); len(got) != 1 {
		t.Errorf("nothing changed, yet %q", got)
	}
	got := r.cmd(`a3 STORE 2 +FLAGS (\Seen)`)
	expectOK(t, got)
	uids, ms := fetched(got)
	if !slices.Equal(uids, []uint32{2}) || ms[2] <= h0 || !strings.Contains(got[0], `FLAGS (\Seen`) {
		t.Fatalf("STORE answer %q", got)
	}
	h1 := ms[2]
	got = r.cmd(fmt.Sprintf("a4 FETCH 1:* (UID FLAGS) (CHANGEDSINCE %d)", h0))
	if uids, ms := fetched(got); !slices.Equal(uids, []uint32{2}) || ms[2] != h1 {
		t.Errorf("CHANGEDSINCE %d: %q", h0, got)
	}
	if got := r.cmd("a5 FETCH 3 (MODSEQ)"); !reModSeq.MatchString(got[0]) {
		t.Errorf("FETCH MODSEQ: %q", got)
	}

	// RFC 7162 §3.1.3 example: 2 changed since h0, so it fails; .SILENT still reports the new MODSEQ.
	got = r.cmd(fmt.Sprintf(`a6 STORE 1:3 (UNCHANGEDSINCE %d) +FLAGS.SILENT (\Deleted)`, h0))
	if !strings.Contains(last(got), "OK [MODIFIED 2]") {
		t.Fatalf("conditional STORE: %q", got)
	}
	uids, ms = fetched(append([]string{}, got...))
	if len(uids) != 0 { // .SILENT: no UID item; the MODSEQ lines are by sequence number
		t.Errorf("silent answer has UIDs: %q", got)
	}
	if n := strings.Count(strings.Join(got, ""), "MODSEQ ("); n != 2 || !strings.HasPrefix(got[0], "* 1 FETCH (MODSEQ (") || !strings.HasPrefix(got[1], "* 3 FETCH (MODSEQ (") {
		t.Errorf("silent conditional STORE reports %q", got)
	}
	if got := r.cmd(`a7 UID STORE 2 (UNCHANGEDSINCE 0) +FLAGS (\Flagged)`); !strings.Contains(last(got), "OK [MODIFIED 2]") || len(got) != 1 {
		t.Errorf("UNCHANGEDSINCE 0: %q", got)
	}

	got = r.cmd(fmt.Sprintf("a8 SEARCH MODSEQ %d", h1))
	if len(got) != 2 || !regexp.MustCompile(`^\* SEARCH 1 2 3 \(MODSEQ \d+\)`).MatchString(got[0]) {
		t.Errorf("SEARCH MODSEQ: %q", got)
	}
	got = r.cmd(fmt.Sprintf(`a9 SEARCH RETURN (MIN) MODSEQ "/flags/\\seen" all %d`, h1))
	if len(got) != 2 || !strings.Contains(got[0], fmt.Sprintf("MIN 1 MODSEQ ")) {
		t.Errorf("ESEARCH MODSEQ: %q", got)
	}
	highest := highestIn(t, r.cmd("b1 SELECT INBOX"))
	if got := r.cmd("b2 STATUS Sent (HIGHESTMODSEQ MESSAGES)"); !regexp.MustCompile(`^\* STATUS "?Sent"? \(MESSAGES 0 HIGHESTMODSEQ \d+\)`).MatchString(got[0]) {
		t.Errorf("STATUS: %q", got)
	}

	// Another session's change reaches this one with MODSEQ.
	other := ts.raw(true)
	other.cmd("o1 SELECT INBOX")
	other.cmd(`o2 STORE 4 +FLAGS (\Answered)`)
	got = r.cmd("b3 NOOP")
	if uids, ms := fetched(got); !slices.Equal(uids, []uint32{4}) || ms[4] <= highest {
		t.Errorf("unsolicited update: %q", got)
	}
}

// TestCondStoreEnablingFetch: a CONDSTORE-enabling command on a mailbox selected without it first
// sends OK [HIGHESTMODSEQ] (RFC 7162 §3.1, imaptest's esearch-condstore).
func TestCondStoreEnablingFetch(t *testing.T) {
	ts := newTestServer(t)
	ts.deliver(testMessage(1, "one"))
	r := ts.raw(true)
	r.cmd("a1 SELECT INBOX")
	got := r.cmd("a2 FETCH 1 MODSEQ")
	highestIn(t, got)
	expectOK(t, got)
	if got := r.cmd("a3 FETCH 1 MODSEQ"); reHighest.MatchString(strings.Join(got, "")) {
		t.Errorf("HIGHESTMODSEQ sent again: %q", got)
	}
	if got := r.cmd("a4 FETCH 1 (FLAGS) (CHANGEDSINCE 1 VANISHED)"); !strings.Contains(last(got), "BAD") {
		t.Errorf("VANISHED without UID FETCH and QRESYNC: %q", got)
	}
	if got := r.cmd("a5 SELECT INBOX (QRESYNC (1 1))"); !strings.Contains(last(got), "BAD") {
		t.Errorf("QRESYNC without ENABLE: %q", got)
	}
}

// TestQResyncRaw: a client that knew the mailbox at some modseq resynchronises in one SELECT
// (RFC 7162 §3.2.5) after flag changes and an expunge by other sessions, a flag change and a
// delivery by another process, and gets exactly those changes; then, with QRESYNC on, expunges come
// as VANISHED, and UID FETCH (CHANGEDSINCE n VANISHED) gives the same answer; and it all holds
// after a restart.
func TestQResyncRaw(t *testing.T) {
	dir := t.TempDir()
	ts := startTestServer(t, dir)
	for i := 1; i <= 6; i++ {
		ts.deliver(testMessage(i, fmt.Sprint("message ", i)))
	}
	first := ts.raw(true)
	sel := first.cmd("a1 SELECT INBOX")
	validity, h0 := uidValidityIn(t, sel), highestIn(t, sel)
	first.cmd("a2 LOGOUT")

	// Changes while the client is away.
	other := ts.raw(true)
	other.cmd("o1 SELECT INBOX")
	expectOK(t, other.cmd(`o2 STORE 2 +FLAGS (\Seen)`))
	expectOK(t, other.cmd(`o3 STORE 3 +FLAGS (\Deleted)`))
	expectOK(t, other.cmd("o4 EXPUNGE")) // UID 3
	other.cmd("o5 LOGOUT")
	// Another process (postie deliver, or a second server) on the same tree.
	proc := maildir.NewStore(dir, maildir.StoreOptions{Hostname: "other"})
	pu, err := proc.User("example.test", "alice")
	if err != nil {
		t.Fatal(err)
	}
	pbox, err := pu.Mailbox("INBOX")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pbox.SetFlags([]uint32{5}, maildir.FlagsAdd, maildir.FlagFlagged, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := pu.Deliver(strings.NewReader(testMessage(7, "delivered by another process")), maildir.DeliverOptions{}); err != nil {
		t.Fatal(err)
	}

	time.Sleep(pollRefreshGap + 50*time.Millisecond) // the mailbox is re-read at most that often
	c := ts.raw(true)
	if got := c.cmd("b1 ENABLE QRESYNC"); !strings.HasPrefix(got[0], "* ENABLED QRESYNC") {
		t.Fatalf("ENABLE: %q", got)
	}
	got := c.cmd(fmt.Sprintf("b2 SELECT INBOX (QRESYNC (%s %d 1:6))", validity, h0))
	expectOK(t, got)
	if set, earlier := vanishedIn(got); set != "3" || !earlier {
		t.Errorf("VANISHED %q (earlier %v) in %q", set, earlier, got)
	}
	uids, ms := fetched(got)
	slices.Sort(uids)
	if !slices.Equal(uids, []uint32{2, 5}) { // UID 7 is not among the known UIDs
		t.Errorf("changed UIDs %v, want [2 5]: %q", uids, got)
	}
	highest := highestIn(t, got)
	for uid, m := range ms {
		if m <= h0 || m > highest {
			t.Errorf("UID %d modseq %d outside (%d, %d]", uid, m, h0, highest)
		}
	}
	got = c.cmd(fmt.Sprintf("b3 SELECT INBOX (QRESYNC (%s %d))", validity, h0))
	if uids, _ := fetched(got); !slices.Equal(sorted(uids), []uint32{2, 5, 7}) {
		t.Errorf("without known-uids: %q", got)
	}
	if got := c.cmd(fmt.Sprintf("b4 SELECT INBOX (QRESYNC (%s %d))", validity, highest)); len(got) == 0 || strings.Contains(strings.Join(got, ""), "FETCH") || strings.Contains(strings.Join(got, ""), "VANISHED") {
		t.Errorf("up to date, yet %q", got)
	}
	if got := c.cmd(fmt.Sprintf("b5 SELECT INBOX (QRESYNC (%d %d))", 12345, h0)); strings.Contains(strings.Join(got, ""), "VANISHED") {
		t.Errorf("other UIDVALIDITY, yet %q", got)
	}
	got = c.cmd(fmt.Sprintf("b6 UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)", h0))
	if set, earlier := vanishedIn(got); set != "3" || !earlier {
		t.Errorf("UID FETCH VANISHED: %q", got)
	}
	if uids, _ := fetched(got); !slices.Equal(uids, []uint32{2, 5, 7}) {
		t.Errorf("UID FETCH CHANGEDSINCE: %q", got)
	}

	// With QRESYNC on, another session's expunge arrives as VANISHED, not EXPUNGE.
	other = ts.raw(true)
	other.cmd("o6 SELECT INBOX")
	other.cmd(`o7 UID STORE 4,6 +FLAGS.SILENT (\Deleted)`)
	other.cmd("o8 EXPUNGE")
	got = c.cmd("b7 NOOP")
	all := strings.Join(got, "")
	if set, earlier := vanishedIn(got); set != "4,6" || earlier || strings.Contains(all, "EXPUNGE") {
		t.Errorf("NOOP after an expunge: %q", got)
	}
	if uids, _ := fetched(got); len(uids) != 0 {
		// the \Deleted flag changes are left out: the messages are gone, VANISHED says so
		t.Errorf("flag updates of expunged messages: %q", got)
	}
	highest = highestIn(t, c.cmd("b8 SELECT INBOX"))
	c.cmd("b9 LOGOUT")

	// A restart: the same modseqs, the same answers.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ts.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	ts2 := startTestServer(t, dir)
	c2 := ts2.raw(true)
	c2.cmd("d1 ENABLE QRESYNC")
	got = c2.cmd(fmt.Sprintf("d2 SELECT INBOX (QRESYNC (%s %d 1:7))", validity, h0))
	if h := highestIn(t, got); h != highest {
		t.Errorf("HIGHESTMODSEQ after restart %d, before %d", h, highest)
	}
	if set, _ := vanishedIn(got); set != "3:4,6" {
		t.Errorf("after restart VANISHED %q: %q", set, got)
	}
	if uids, _ := fetched(got); !slices.Equal(sorted(uids), []uint32{2, 5, 7}) {
		t.Errorf("after restart changed %v: %q", uids, got)
	}
}

func sorted(s []uint32) []uint32 { slices.Sort(s); return s }

// TestCondStoreClient drives CONDSTORE with go-imap's own client: SELECT (CONDSTORE), FETCH
// (CHANGEDSINCE) with MODSEQ, STORE (UNCHANGEDSINCE).
func TestCondStoreClient(t *testing.T) {
	ts := newTestServer(t)
	for i := 1; i <= 3; i++ {
		ts.deliver(testMessage(i, "m"))
	}
	c := ts.dial(nil)
	sd, err := c.Select("INBOX", &imap.SelectOptions{CondStore: true}).Wait()
	if err != nil || sd.HighestModSeq == 0 {
		t.Fatalf("select: %+v %v", sd, err)
	}
	if err := c.Store(imap.UIDSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}, Silent: true}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	msgs := fetchAll(t, c, imap.SeqSetNum(1, 2, 3), &imap.FetchOptions{UID: true, Flags: true, ModSeq: true, ChangedSince: sd.HighestModSeq})
	if len(msgs) != 1 || msgs[0].UID != 1 || msgs[0].ModSeq <= sd.HighestModSeq || !hasFlag(msgs[0].Flags, imap.FlagFlagged) {
		t.Fatalf("CHANGEDSINCE: %+v", msgs)
	}
	ms := msgs[0].ModSeq
	// Unchanged since ms: allowed.
	if _, err := c.Store(imap.UIDSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagSeen}}, &imap.StoreOptions{UnchangedSince: ms}).Collect(); err != nil {
		t.Fatalf("conditional store: %v", err)
	}
	after := fetchAll(t, c, imap.UIDSetNum(1), &imap.FetchOptions{UID: true, Flags: true, ModSeq: true})
	if len(after) != 1 || after[0].ModSeq <= ms || !hasFlag(after[0].Flags, imap.FlagSeen) {
		t.Fatalf("after conditional store: %+v", after)
	}
	// Now it changed since ms: refused for that message, and nothing is changed.
	if _, err := c.Store(imap.UIDSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagAnswered}}, &imap.StoreOptions{UnchangedSince: ms}).Collect(); err != nil {
		t.Fatalf("conditional store (modified): %v", err)
	}
	again := fetchAll(t, c, imap.UIDSetNum(1), &imap.FetchOptions{UID: true, Flags: true, ModSeq: true})
	if hasFlag(again[0].Flags, imap.FlagAnswered) || again[0].ModSeq != after[0].ModSeq {
		t.Errorf("a refused conditional store changed the message: %+v", again[0])
	}
}

// TestCondStoreNoModSeqGoingBack: another session's change, queued for this one, is left out when this
// session has since been shown a newer state of the message (its own FETCH answer): sent after it, the
// older FETCH would take the flags back and the MODSEQ down (imaptest's "MODSEQ dropped").
func TestCondStoreNoModSeqGoingBack(t *testing.T) {
	ts := newTestServer(t)
	ts.deliver(testMessage(1, "one"))
	ts.deliver(testMessage(2, "two"))
	a, b := ts.raw(true), ts.raw(true)
	a.cmd("a1 SELECT INBOX (CONDSTORE)")
	b.cmd("b1 SELECT INBOX")
	expectOK(t, b.cmd(`b2 STORE 1 +FLAGS (\Flagged)`))  // queued for a
	expectOK(t, b.cmd(`b3 STORE 1 +FLAGS (\Answered)`)) // queued too
	got := a.cmd(`a2 FETCH 1:2 (UID FLAGS)`)            // the newest state, before the queued ones
	_, fresh := fetched(got)
	got = append(got, a.cmd("a3 NOOP")...)
	var seen []uint64
	for _, l := range got {
		if m := reModSeq.FindStringSubmatch(l); m != nil && strings.HasPrefix(l, "* 1 FETCH") {
			n, _ := strconv.ParseUint(m[1], 10, 64)
			seen = append(seen, n)
		}
	}
	if !slices.IsSorted(seen) || len(seen) == 0 || seen[len(seen)-1] != fresh[1] {
		t.Errorf("MODSEQ of message 1 went %v (FETCH answered %d): %q", seen, fresh[1], got)
	}
}

// TestMissingUIDs is the answer when the expunges since a client's modseq are no longer remembered:
// every UID of its known set below UIDNEXT that no message has.
func TestMissingUIDs(t *testing.T) {
	var msgs []maildir.Message
	for _, uid := range []uint32{2, 5, 6, 9, 12} {
		msgs = append(msgs, maildir.Message{UID: uid})
	}
	for _, c := range []struct {
		set  imap.UIDSet
		want string
	}{
		{imap.UIDSet{{Start: 1, Stop: 10}}, "1,3:4,7:8,10"},
		{imap.UIDSet{{Start: 5, Stop: 6}}, ""},
		{imap.UIDSet{{Start: 3, Stop: 20}}, "3:4,7:8,10:11"}, // up to UIDNEXT-1 (12 exists)
		{imap.UIDSet{{Start: 12, Stop: 12}, {Start: 1, Stop: 1}}, "1"},
	} {
		got := missingUIDs(c.set, msgs, 13)
		if got.String() != c.want && !(c.want == "" && len(got) == 0) {
			t.Errorf("missingUIDs(%v) = %v, want %s", c.set, got, c.want)
		}
	}
}
