package imapd

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"postie/maildir"
)

// trained is one Train call the fake saw.
type trained struct {
	spam     bool
	subjects []string
	dir      string
}

func (tr trained) String() string {
	kind := "ham"
	if tr.spam {
		kind = "spam"
	}
	return kind + " " + strings.Join(tr.subjects, ",")
}

// fakeTrainer records every Train call on got. With block set, each call first says so on started
// and then waits for block to close.
type fakeTrainer struct {
	got     chan trained
	block   chan struct{}
	started chan struct{}
}

var subjectRE = regexp.MustCompile(`(?m)^Subject: (.*?)\r?$`)

func (f *fakeTrainer) Train(ctx context.Context, mail *maildir.User, spam bool, msgs ...*io.SectionReader) error {
	if f.block != nil {
		select {
		case f.started <- struct{}{}:
		default:
		}
		select {
		case <-f.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	tr := trained{spam: spam, dir: mail.Dir()}
	for _, m := range msgs {
		// Read twice, as the real trainer does (junk filter, then rspamd).
		a, _ := io.ReadAll(io.NewSectionReader(m, 0, m.Size()))
		b, _ := io.ReadAll(m)
		if !bytes.Equal(a, b) || len(a) == 0 {
			return fmt.Errorf("message read twice differs (%d, %d bytes)", len(a), len(b))
		}
		if sm := subjectRE.FindSubmatch(a); sm != nil {
			tr.subjects = append(tr.subjects, string(sm[1]))
		}
	}
	f.got <- tr
	return nil
}

func newTrainServer(t *testing.T, f *fakeTrainer, tweak ...func(*Options)) *testServer {
	return newTestServer(t, append([]func(*Options){func(o *Options) { o.Trainer = f }}, tweak...)...)
}

// expectTrained waits for the next Train call and checks it.
func expectTrained(t *testing.T, f *fakeTrainer, want string) {
	t.Helper()
	select {
	case tr := <-f.got:
		if tr.String() != want {
			t.Fatalf("trained %q, want %q", tr, want)
		}
		if !strings.HasSuffix(tr.dir, "/example.test/alice") {
			t.Fatalf("trained for the user at %s", tr.dir)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no training, want %q", want)
	}
}

// uidOf finds the UID of the message with subject in the selected mailbox.
func uidOf(t *testing.T, c *imapclient.Client, subject string) imap.UIDSet {
	t.Helper()
	d, err := c.UIDSearch(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: subject}}}, nil).Wait()
	if err != nil || len(d.AllUIDs()) != 1 {
		t.Fatalf("search %q: %v %v", subject, err, d.AllUIDs())
	}
	return imap.UIDSetNum(d.AllUIDs()...)
}

func move(t *testing.T, c *imapclient.Client, from, subject, to string) {
	t.Helper()
	mustSelect(t, c, from, false)
	if _, err := c.Move(uidOf(t, c, subject), to).Wait(); err != nil {
		t.Fatalf("move %q %s → %s: %v", subject, from, to, err)
	}
}

func store(t *testing.T, c *imapclient.Client, subject string, op imap.StoreFlagsOp, flags ...imap.Flag) {
	t.Helper()
	if _, err := c.Store(uidOf(t, c, subject), &imap.StoreFlags{Op: op, Silent: true, Flags: flags}, nil).Collect(); err != nil {
		t.Fatalf("store %v %v on %q: %v", op, flags, subject, err)
	}
}

// TestJunkTraining: each signal of issue 10 reaches the Trainer with the message's bytes, and the
// moves that are no signal reach it not at all (checked by the next signal being the next call:
// there is one worker, in order).
func TestJunkTraining(t *testing.T) {
	f := &fakeTrainer{got: make(chan trained, 100)}
	ts := newTrainServer(t, f)
	for i := 1; i <= 9; i++ {
		ts.deliver(testMessage(i, fmt.Sprintf("s%d", i)))
	}
	c := ts.dial(nil)
	if err := c.Create("Junk/Sub", nil).Wait(); err != nil {
		t.Fatal(err)
	}

	move(t, c, "INBOX", "s1", "Junk")
	expectTrained(t, f, "spam s1")
	mustSelect(t, c, "INBOX", false)
	if _, err := c.Copy(uidOf(t, c, "s2"), "Junk").Wait(); err != nil {
		t.Fatal(err)
	}
	expectTrained(t, f, "spam s2")

	move(t, c, "Junk", "s1", "Trash") // thrown away: no verdict
	move(t, c, "Junk", "s2", "INBOX")
	expectTrained(t, f, "ham s2")

	// Sub-folders of Junk are Junk; moves within Junk say nothing.
	move(t, c, "INBOX", "s3", "Junk/Sub")
	expectTrained(t, f, "spam s3")
	move(t, c, "Junk/Sub", "s3", "Junk")
	move(t, c, "Junk", "s3", "Junk/Sub")
	move(t, c, "Junk/Sub", "s3", "Archive")
	expectTrained(t, f, "ham s3")
	move(t, c, "INBOX", "s4", "Archive") // neither side is Junk
	mustSelect(t, c, "Archive", false)
	if _, err := c.Copy(uidOf(t, c, "s3"), "Junk/Sub").Wait(); err != nil {
		t.Fatal(err)
	}
	expectTrained(t, f, "spam s3")

	// Keywords, as Thunderbird sets them.
	mustSelect(t, c, "INBOX", false)
	store(t, c, "s5", imap.StoreFlagsAdd, "$Junk")
	expectTrained(t, f, "spam s5")
	store(t, c, "s5", imap.StoreFlagsAdd, imap.FlagSeen, "$junk") // had it already
	store(t, c, "s5", imap.StoreFlagsDel, "$Junk")
	store(t, c, "s6", imap.StoreFlagsAdd, "$Junk", "$NotJunk") // contradicts itself
	store(t, c, "s7", imap.StoreFlagsAdd, imap.FlagFlagged)
	store(t, c, "s5", imap.StoreFlagsSet, imap.FlagSeen, "$NotJunk")
	expectTrained(t, f, "ham s5")
	store(t, c, "s7", imap.StoreFlagsAdd, "NonJunk")
	expectTrained(t, f, "ham s7")

	// APPEND into Junk is spam; elsewhere it says nothing unless it carries a keyword.
	appendMsg(t, c, "INBOX", []byte(testMessage(20, "a1")), nil)
	appendMsg(t, c, "Junk/Sub", []byte(testMessage(21, "a2")), nil)
	expectTrained(t, f, "spam a2")
	appendMsg(t, c, "Archive", []byte(testMessage(22, "a3")), &imap.AppendOptions{Flags: []imap.Flag{"$NotJunk"}})
	expectTrained(t, f, "ham a3")

	// The folder is found by its special use; the default Junk gives the role up.
	if err := c.Create("Spam", &imap.CreateOptions{SpecialUse: []imap.MailboxAttr{imap.MailboxAttrJunk}}).Wait(); err != nil {
		t.Fatal(err)
	}
	move(t, c, "INBOX", "s8", "Spam")
	expectTrained(t, f, "spam s8")
	move(t, c, "INBOX", "s9", "Junk") // an ordinary folder now
	move(t, c, "Spam", "s8", "Trash")
	move(t, c, "Trash", "s8", "INBOX") // out of Trash is no verdict either
	move(t, c, "INBOX", "s8", "Spam")
	expectTrained(t, f, "spam s8")

	select {
	case tr := <-f.got:
		t.Fatalf("unexpected training %q", tr)
	default:
	}
}

// TestJunkTrainingQueueFull: with the Trainer stuck, commands still answer at once, training past
// the queue's bound is dropped with one log line, and training resumes when the queue drains.
func TestJunkTrainingQueueFull(t *testing.T) {
	f := &fakeTrainer{got: make(chan trained, 100), block: make(chan struct{}), started: make(chan struct{}, 1)}
	var logBuf syncBuffer
	ts := newTrainServer(t, f, func(o *Options) {
		o.TrainQueue = 1
		o.Logger = slog.New(slog.NewTextHandler(&logBuf, nil))
	})
	for i := 1; i <= 5; i++ {
		ts.deliver(testMessage(i, fmt.Sprintf("s%d", i)))
	}
	c := ts.dial(nil)
	move(t, c, "INBOX", "s1", "Junk")
	select {
	case <-f.started: // the worker holds s1
	case <-time.After(10 * time.Second):
		t.Fatal("training never started")
	}
	var sets []imap.UIDSet
	for _, s := range []string{"s2", "s3", "s4"} { // s2 is queued, s3 and s4 dropped
		sets = append(sets, uidOf(t, c, s))
	}
	moved := make(chan error, 1)
	go func() {
		var err error
		for _, set := range sets {
			if _, err = c.Move(set, "Junk").Wait(); err != nil {
				break
			}
		}
		moved <- err
	}()
	select {
	case err := <-moved:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("MOVE waits for the stuck Trainer")
	}
	if n := strings.Count(logBuf.String(), "training queue full"); n != 1 {
		t.Fatalf("%d log lines about the full queue, want 1:\n%s", n, logBuf.String())
	}
	close(f.block)
	expectTrained(t, f, "spam s1")
	expectTrained(t, f, "spam s2")
	move(t, c, "INBOX", "s5", "Junk")
	expectTrained(t, f, "spam s5")
}

// syncBuffer is a bytes.Buffer for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestTrainingCounts: moves that involve no Junk queue nothing and read the folder roles once (not
// once per command); a MOVE of many messages into Junk is one job, read trainBatch messages at a
// time.
func TestTrainingCounts(t *testing.T) {
	f := &fakeTrainer{got: make(chan trained, 100), block: make(chan struct{}), started: make(chan struct{}, 1)}
	ts := newTrainServer(t, f)
	const n = 150
	for i := 1; i <= n; i++ {
		ts.deliver(testMessage(i, fmt.Sprintf("m%03d", i)))
	}
	q := ts.srv.train
	var mu sync.Mutex
	reads := 0
	q.readRoles = func(u *maildir.User) (maildir.Roles, error) {
		mu.Lock()
		reads++
		mu.Unlock()
		return u.Roles()
	}
	c := ts.dial(nil)
	// One training holds the worker, so that what the commands queue stays in the queue.
	move(t, c, "INBOX", "m001", "Junk")
	<-f.started
	// The folder list is as it stays from now on, and not too young to trust.
	old := time.Now().Add(-time.Minute)
	if err := os.Chtimes(ts.user().Dir(), old, old); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	reads = 0
	mu.Unlock()
	mustSelect(t, c, "INBOX", false)
	for i := 2; i <= 21; i++ {
		uid := uidOf(t, c, fmt.Sprintf("m%03d", i))
		if _, err := c.Copy(uid, "Archive").Wait(); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	got := reads
	mu.Unlock()
	if got != 1 || len(q.jobs) != 0 {
		t.Errorf("20 copies INBOX → Archive: roles read %d times, %d jobs queued; want 1 and 0", got, len(q.jobs))
	}
	// The other 129 messages into Junk at once: one job.
	if _, err := c.Move(imap.UIDSet{imap.UIDRange{Start: 22, Stop: n}}, "Junk").Wait(); err != nil {
		t.Fatal(err)
	}
	if len(q.jobs) != 1 {
		t.Fatalf("a MOVE of %d messages queued %d jobs, want 1", n-21, len(q.jobs))
	}
	close(f.block)
	expectTrained(t, f, "spam m001")
	calls, msgs := 0, 0
	for msgs < n-21 {
		select {
		case tr := <-f.got:
			calls++
			msgs += len(tr.subjects)
			if !tr.spam || len(tr.subjects) > trainBatch {
				t.Fatalf("trained %v", tr)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%d messages trained in %d calls, want %d", msgs, calls, n-21)
		}
	}
	if want := (n - 21 + trainBatch - 1) / trainBatch; calls != want {
		t.Errorf("%d Train calls, want %d", calls, want)
	}
}

func TestToRanges(t *testing.T) {
	r, cut := toRanges([]uint32{7, 3, 4, 5, 9, 4, 10})
	if fmt.Sprint(r) != "[{3 5} {7 7} {9 10}]" || cut {
		t.Errorf("toRanges = %v, %v", r, cut)
	}
	big := make([]uint32, maxTrainMessages+5)
	for i := range big {
		big[i] = uint32(2*i + 1) // no two adjacent: the worst case
	}
	r, cut = toRanges(big)
	if len(r) != maxTrainMessages || !cut {
		t.Errorf("toRanges of %d UIDs: %d ranges, cut %v", len(big), len(r), cut)
	}
}

// A MULTIAPPEND into Junk trains as one command: one job, not one per message.
func TestMultiAppendTrainsOnce(t *testing.T) {
	f := &fakeTrainer{got: make(chan trained, 100), block: make(chan struct{}), started: make(chan struct{}, 1)}
	ts := newTrainServer(t, f)
	ts.deliver(testMessage(1, "m001"))
	c := ts.dial(nil)
	move(t, c, "INBOX", "m001", "Junk") // holds the worker, so that the next job stays queued
	<-f.started
	raw := "A1 APPEND Junk"
	for _, subj := range []string{"a1", "a2", "a3"} {
		m := "Subject: " + subj + "\r\n\r\nbody\r\n"
		raw += " {" + itoa(len(m)) + "+}\r\n" + m
	}
	if l := ts.raw(true).answer(raw+"\r\n", "A1"); !strings.HasPrefix(l, "A1 OK") {
		t.Fatalf("MULTIAPPEND: %q", l)
	}
	if n := len(ts.srv.train.jobs); n != 1 {
		t.Errorf("a MULTIAPPEND of 3 messages into Junk queued %d jobs, want 1", n)
	}
	close(f.block)
	expectTrained(t, f, "spam m001")
	expectTrained(t, f, "spam a1,a2,a3")
}
