package maildir

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestCopyMoveExpungeWatch(t *testing.T) {
	u, _ := testUser(t)
	inbox := mailbox(t, u, "INBOX")
	trash := mailbox(t, u, "Trash")
	date := time.Date(2021, 5, 6, 7, 8, 9, 0, time.UTC)
	for i := range 5 {
		if _, err := inbox.Append(strings.NewReader(body(i+1)), FlagSeen, date.Add(time.Duration(i)*time.Hour), nil); err != nil {
			t.Fatal(err)
		}
	}
	// A keyword in INBOX whose index differs in Trash.
	tf, _ := trash.ParseFlags([]string{"$other"})
	kw, _ := inbox.ParseFlags([]string{"$label1"})
	if _, err := inbox.SetFlags([]uint32{2}, FlagsAdd, kw, nil); err != nil {
		t.Fatal(err)
	}
	var ri, rt recorder
	defer inbox.Watch(ri.fn)()
	defer trash.Watch(rt.fn)()

	src, dst, err := inbox.CopyTo(trash, []uint32{4, 2, 99}, "s1")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(src, []uint32{2, 4}) || !slices.Equal(dst, []uint32{1, 2}) {
		t.Errorf("CopyTo = %v %v", src, dst)
	}
	cs := rt.take()
	// $label1 is new to Trash: its keyword list grows first.
	if summary(cs) != "K0:0 A1:1 A2:2" || cs[1].Origin != "s1" {
		t.Errorf("Trash changes after copy: %s", summary(cs))
	}
	if c := ri.take(); len(c) != 0 {
		t.Errorf("INBOX changes after copy: %s", summary(c))
	}
	tm := messages(trash)
	if !tm[0].Date.Equal(date.Add(time.Hour)) || tm[0].Flags&FlagSeen == 0 {
		t.Errorf("copied message %v", tm[0])
	}
	if got := trash.FlagNames(tm[0].Flags); !slices.Contains(got, "$label1") || tf == tm[0].Flags&keywordFlags {
		t.Errorf("copied keywords %v", got)
	}
	if readAll(t, trash, 1) != body(2) {
		t.Error("copied content differs")
	}

	src, dst, err = inbox.MoveTo(trash, []uint32{1, 3, 5}, "s2")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(src, []uint32{1, 3, 5}) || !slices.Equal(dst, []uint32{3, 4, 5}) {
		t.Errorf("MoveTo = %v %v", src, dst)
	}
	if got := summary(rt.take()); got != "A3:3 A4:4 A5:5" {
		t.Errorf("Trash changes after move: %s", got)
	}
	cs = ri.take()
	if summary(cs) != "E5:5 E3:3 E1:1" || cs[0].Origin != "s2" {
		t.Errorf("INBOX changes after move: %s", summary(cs))
	}
	if got := uidsOf(inbox); !slices.Equal(got, []uint32{2, 4}) {
		t.Errorf("INBOX UIDs %v", got)
	}
	if readAll(t, trash, 5) != body(5) {
		t.Error("moved content differs")
	}
	if tm := messages(trash); !tm[4].Date.Equal(date.Add(4 * time.Hour)) {
		t.Errorf("moved date %v", tm[4].Date)
	}

	// Expunge: changes from the highest sequence number down.
	removed, err := trash.Expunge([]uint32{2, 4, 5}, "s3")
	if err != nil || !slices.Equal(removed, []uint32{2, 4, 5}) {
		t.Fatalf("Expunge = %v %v", removed, err)
	}
	if got := summary(rt.take()); got != "E5:5 E4:4 E2:2" {
		t.Errorf("Trash changes after expunge: %s", got)
	}
	if got := uidsOf(trash); !slices.Equal(got, []uint32{1, 3}) {
		t.Errorf("Trash UIDs %v", got)
	}
	if _, err := trash.Open(4); err == nil {
		t.Error("Open of an expunged message succeeded")
	}
	// Copy into the same mailbox.
	if _, dst, err := inbox.CopyTo(inbox, []uint32{2}, nil); err != nil || !slices.Equal(dst, []uint32{6}) {
		t.Errorf("self copy %v %v", dst, err)
	}
	if got := summary(ri.take()); got != "A3:6" {
		t.Errorf("INBOX changes after self copy: %s", got)
	}
	// Sizes follow.
	var want int64
	for _, m := range messages(trash) {
		want += m.Size
	}
	if trash.Size() != want {
		t.Errorf("Size %d, want %d", trash.Size(), want)
	}
}

func TestViewAndWatchTogether(t *testing.T) {
	u, _ := testUser(t)
	deliver(t, u, body(1))
	inbox := mailbox(t, u, "INBOX")
	var n int
	var rec recorder
	cancel := inbox.ViewAndWatch(func(msgs []Message) { n = len(msgs) }, rec.fn)
	deliver(t, u, body(2))
	cancel()
	deliver(t, u, body(3))
	if got := summary(rec.take()); n != 1 || got != "A2:2" {
		t.Errorf("n=%d changes %s", n, got)
	}
}

// The warm paths IMAP takes on every command cost almost nothing: View
// hands out the shared slice, and Refresh with nothing changed makes two
// stats and no listing.
func TestWarmPathsAllocateLittle(t *testing.T) {
	u, _ := testUser(t)
	for i := range 50 {
		deliver(t, u, body(i))
	}
	inbox := mailbox(t, u, "INBOX")
	var sum int64
	fn := func(msgs []Message) {
		for i := range msgs {
			sum += msgs[i].Size
		}
	}
	if a := testing.AllocsPerRun(100, func() { inbox.View(fn) }); a != 0 {
		t.Errorf("View allocates %v per call", a)
	}
	old := time.Now().Add(-time.Minute) // old enough to be trusted
	for _, d := range []string{"cur", "new"} {
		os.Chtimes(filepath.Join(u.dir, d), old, old)
	}
	inbox.Refresh()
	if a := testing.AllocsPerRun(100, func() { inbox.Refresh() }); a > 8 {
		t.Errorf("a Refresh with nothing changed allocates %v times per call, as a rescan would", a)
	}
}
