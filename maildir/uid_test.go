package maildir

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestUIDsAscendingAndPersistent(t *testing.T) {
	u, root := testUser(t)
	for i := range 5 {
		deliver(t, u, body(i))
	}
	inbox := mailbox(t, u, "INBOX")
	if got := uidsOf(inbox); !slices.Equal(got, []uint32{1, 2, 3, 4, 5}) {
		t.Fatalf("UIDs %v", got)
	}
	date := time.Date(2020, 2, 3, 4, 5, 6, 0, time.UTC)
	uid, err := inbox.Append(strings.NewReader(body(6)), FlagSeen, date, nil)
	if err != nil || uid != 6 {
		t.Fatalf("Append: %d %v", uid, err)
	}
	before := messages(inbox)
	v := inbox.UIDValidity()

	// Restart: same UIDs, flags, dates and sizes.
	inbox2 := mailbox(t, reopen(t, root), "INBOX")
	if inbox2 == inbox {
		t.Fatal("a new Store returned the old Mailbox")
	}
	after := messages(inbox2)
	if !slices.EqualFunc(before, after, func(a, b Message) bool {
		return a.UID == b.UID && a.Size == b.Size && a.Flags == b.Flags && a.Date.Equal(b.Date)
	}) {
		t.Errorf("after restart\n got %v\nwant %v", after, before)
	}
	if !after[5].Date.Equal(date) {
		t.Errorf("APPEND date %v, want %v", after[5].Date, date)
	}
	if inbox2.UIDValidity() != v || inbox2.UIDNext() != 7 {
		t.Errorf("UIDVALIDITY %d (want %d), UIDNEXT %d (want 7)", inbox2.UIDValidity(), v, inbox2.UIDNext())
	}
	// Expunging the highest UID does not make it available again.
	if _, err := inbox2.Expunge([]uint32{6}, nil); err != nil {
		t.Fatal(err)
	}
	u3 := reopen(t, root)
	inbox3 := mailbox(t, u3, "INBOX")
	if inbox3.UIDNext() != 7 {
		t.Errorf("UIDNEXT %d after expunging UID 6, want 7", inbox3.UIDNext())
	}
	deliver(t, u3, body(7))
	if got := uidsOf(inbox3); !slices.Equal(got, []uint32{1, 2, 3, 4, 5, 7}) {
		t.Errorf("UIDs %v", got)
	}
}

func TestDeliveredDateFromBaseName(t *testing.T) {
	u, root := testUser(t)
	// Another writer's file, delivered long ago: the internal date comes from
	// its name, not from a stat.
	dir := filepath.Join(root, "example.test", "alice")
	name := "1600000000.M1P2Q3.other,S=5"
	if err := os.WriteFile(filepath.Join(dir, "new", name), []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	msgs := messages(mailbox(t, u, "INBOX"))
	if len(msgs) != 1 || msgs[0].Date.Unix() != 1600000000 || msgs[0].Size != 5 {
		t.Errorf("messages %v", msgs)
	}
}

func TestUIDValidityOnLostOrDamagedUIDList(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(path string) error
	}{
		{"missing", os.Remove},
		{"garbage", func(p string) error { return os.WriteFile(p, []byte("\x00\x01 nonsense\n1 :x\n"), 0o600) }},
		{"empty", func(p string) error { return os.WriteFile(p, nil, 0o600) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, root := testUser(t)
			for i := range 3 {
				deliver(t, u, body(i))
			}
			inbox := mailbox(t, u, "INBOX")
			v := inbox.UIDValidity()
			dir := filepath.Join(root, "example.test", "alice")
			if err := tc.damage(filepath.Join(dir, uidlistFile)); err != nil {
				t.Fatal(err)
			}
			inbox2 := mailbox(t, reopen(t, root), "INBOX")
			if inbox2.UIDValidity() <= v {
				t.Errorf("UIDVALIDITY %d, want > %d", inbox2.UIDValidity(), v)
			}
			if got := uidsOf(inbox2); !slices.Equal(got, []uint32{1, 2, 3}) {
				t.Errorf("UIDs %v", got)
			}
			hdr, lines := uidlistLines(t, dir)
			if hdr.uidValidity != inbox2.UIDValidity() || len(lines) != 3 {
				t.Errorf("uidlist %v %v", hdr, lines)
			}
		})
	}
}

func TestUIDValidityDeleteRecreate(t *testing.T) {
	u, root := testUser(t)
	if err := u.CreateMailbox("Projects", ""); err != nil {
		t.Fatal(err)
	}
	v1 := mailbox(t, u, "Projects").UIDValidity()
	if err := u.DeleteMailbox("Projects"); err != nil {
		t.Fatal(err)
	}
	if err := u.CreateMailbox("Projects", ""); err != nil {
		t.Fatal(err)
	}
	v2 := mailbox(t, u, "Projects").UIDValidity()
	if v2 <= v1 {
		t.Errorf("re-created UIDVALIDITY %d, want > %d", v2, v1)
	}
	// Still greater after a restart and another round.
	u2 := reopen(t, root)
	if err := u2.DeleteMailbox("Projects"); err != nil {
		t.Fatal(err)
	}
	if err := u2.CreateMailbox("Projects", ""); err != nil {
		t.Fatal(err)
	}
	if v3 := mailbox(t, u2, "Projects").UIDValidity(); v3 <= v2 {
		t.Errorf("UIDVALIDITY %d, want > %d", v3, v2)
	}
}

func TestTornUIDListLine(t *testing.T) {
	u, root := testUser(t)
	deliver(t, u, body(1))
	mailbox(t, u, "INBOX")
	dir := filepath.Join(root, "example.test", "alice")
	// A writer crashed in the middle of a line (before its fsync).
	f, err := os.OpenFile(filepath.Join(dir, uidlistFile), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("2 T17000")
	f.Close()
	u2 := reopen(t, root)
	deliver(t, u2, body(2))
	inbox := mailbox(t, u2, "INBOX")
	if got := uidsOf(inbox); !slices.Equal(got, []uint32{1, 2}) {
		t.Errorf("UIDs %v", got)
	}
	_, lines := uidlistLines(t, dir)
	if len(lines) != 2 {
		t.Errorf("uidlist lines %v", lines)
	}
	if got := uidsOf(mailbox(t, reopen(t, root), "INBOX")); !slices.Equal(got, []uint32{1, 2}) {
		t.Errorf("after restart UIDs %v", got)
	}
}

func TestTmpCleanup(t *testing.T) {
	u, root := testUser(t)
	dir := filepath.Join(root, "example.test", "alice")
	old, fresh := filepath.Join(dir, "tmp", "old"), filepath.Join(dir, "tmp", "fresh")
	oldF := filepath.Join(dir, ".Sent", "tmp", "old")
	for _, p := range []string{old, fresh, oldF} {
		os.WriteFile(p, []byte("x"), 0o600)
	}
	long := time.Now().Add(-37 * time.Hour)
	os.Chtimes(old, long, long)
	os.Chtimes(oldF, long, long)
	_ = u
	u2 := reopen(t, root)
	mailbox(t, u2, "Sent")
	for p, want := range map[string]bool{old: false, fresh: true, oldF: false} {
		if _, err := os.Stat(p); (err == nil) != want {
			t.Errorf("%s exists=%v, want %v", p, err == nil, want)
		}
	}
}

// TestUIDListCompaction: when expunged lines outnumber live ones the list is
// rewritten without them; UIDs and UIDNEXT survive.
func TestUIDListCompaction(t *testing.T) {
	u, root := testUser(t)
	dir := filepath.Join(root, "example.test", "alice")
	for i := range 1200 {
		name := fmt.Sprintf("%d.M1P1Q%d.other,S=1:2,", 1700000000+i, i)
		os.WriteFile(filepath.Join(dir, "cur", name), []byte("x"), 0o600)
	}
	inbox := mailbox(t, u, "INBOX")
	all := uidsOf(inbox)
	if _, err := inbox.Expunge(all[:1150], nil); err != nil {
		t.Fatal(err)
	}
	_, lines := uidlistLines(t, dir)
	if len(lines) != 50 {
		t.Errorf("%d lines after compaction, want 50", len(lines))
	}
	deliver(t, u, body(1))
	want := append(slices.Clone(all[1150:]), 1201)
	if got := uidsOf(inbox); !slices.Equal(got, want) {
		t.Errorf("UIDs %v, want %v", got, want)
	}
	inbox2 := mailbox(t, reopen(t, root), "INBOX")
	if got := uidsOf(inbox2); !slices.Equal(got, want) || inbox2.UIDNext() != 1202 {
		t.Errorf("after restart UIDs %v UIDNEXT %d", got, inbox2.UIDNext())
	}
	if readAll(t, inbox2, 1200) != "x" {
		t.Error("content")
	}
}

// UIDs follow delivery order even when the microseconds in the names have
// different numbers of digits (the names sort differently as text).
func TestUIDsFollowDeliveryOrder(t *testing.T) {
	keys := []string{
		"1700000000.M99P10Q1R1.host",
		"1700000000.M100P10Q2R1.host",
		"1700000000.M100P10Q10R1.host",
		"1700000000.M100P9Q11R1.host",
		"1700000001.M5P10Q12R1.host",
		"1700000001.odd-name",
		"999999999.M1P1Q1R1.host",
	}
	want := []string{keys[6], keys[0], keys[3], keys[1], keys[2], keys[5], keys[4]}
	got := slices.Clone(keys)
	slices.SortFunc(got, compareKeys)
	if !slices.Equal(got, want) {
		t.Errorf("order\n%q\nwant\n%q", got, want)
	}
	// And the UIDs given to files found in new/ follow that order.
	u, _ := testUser(t)
	for _, i := range []int{4, 2, 0, 6, 1, 3} { // not in order on disk either
		name := filepath.Join(u.Dir(), "new", keys[i]+",S=2")
		if err := os.WriteFile(name, []byte("x\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	m, err := u.Mailbox("INBOX")
	if err != nil {
		t.Fatal(err)
	}
	var byUID []string
	for i := range m.msgs {
		byUID = append(byUID, strings.TrimSuffix(m.keys[i], ",S=2"))
	}
	if want := []string{keys[6], keys[0], keys[3], keys[1], keys[2], keys[4]}; !slices.Equal(byUID, want) {
		t.Errorf("UID order\n%q\nwant\n%q", byUID, want)
	}
}
