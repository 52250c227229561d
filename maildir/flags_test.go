package maildir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestInfoLetters(t *testing.T) {
	for _, tc := range []struct {
		info    string
		flags   Flags
		unknown string
		canon   bool
	}{
		{"2,", 0, "", true},
		{"2,S", FlagSeen, "", true},
		{"2,DFPRST", FlagDraft | FlagFlagged | FlagForwarded | FlagAnswered | FlagSeen | FlagDeleted, "", true},
		{"2,SR", FlagSeen | FlagAnswered, "", false},
		{"2,Sac", FlagSeen | KeywordFlag(0) | KeywordFlag(2), "", true},
		{"2,SZ", FlagSeen, "Z", true},
		{"2,SS", FlagSeen, "", false},
		{"1,xyz", 0, "", false},
		{"", 0, "", false},
	} {
		f, unk, canon := parseInfo([]byte(tc.info))
		if f != tc.flags || unk != tc.unknown || canon != tc.canon {
			t.Errorf("parseInfo(%q) = %b %q %v, want %b %q %v", tc.info, f, unk, canon, tc.flags, tc.unknown, tc.canon)
		}
		if canon {
			if got := string(appendInfo(nil, f, unk)); got != ":"+tc.info {
				t.Errorf("appendInfo(%q) = %q", tc.info, got)
			}
		}
	}
}

func TestFlagsAndKeywordsRoundTrip(t *testing.T) {
	u, root := testUser(t)
	inbox := mailbox(t, u, "INBOX")
	uid, err := inbox.Append(strings.NewReader(body(1)), FlagSeen|FlagFlagged, time.Time{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	junk, err := inbox.ParseFlags([]string{"$Junk", `\answered`})
	if err != nil {
		t.Fatal(err)
	}
	if junk != KeywordFlag(0)|FlagAnswered {
		t.Errorf("ParseFlags = %b", junk)
	}
	var rec recorder
	inbox.Watch(rec.fn)
	changed, err := inbox.SetFlags([]uint32{uid}, FlagsAdd, junk, "me")
	if err != nil || len(changed) != 1 {
		t.Fatalf("SetFlags: %v %v", changed, err)
	}
	cs := rec.take()
	if summary(cs) != "F1:1" || cs[0].Origin != "me" || cs[0].Message.Flags != FlagSeen|FlagFlagged|FlagAnswered|KeywordFlag(0) {
		t.Errorf("changes %v", cs)
	}
	dir := filepath.Join(root, "example.test", "alice", "cur")
	if got := dirNames(t, dir); len(got) != 1 || !strings.HasSuffix(got[0], ":2,FRSa") {
		t.Errorf("cur/ = %v, want a name ending in :2,FRSa", got)
	}
	// Same flags again: no change, no event.
	if changed, _ := inbox.SetFlags([]uint32{uid}, FlagsAdd, FlagSeen, nil); len(changed) != 0 {
		t.Errorf("no-op SetFlags changed %v", changed)
	}
	// Persisted: a new process sees the flags and the keyword's name.
	inbox2 := mailbox(t, reopen(t, root), "INBOX")
	msgs := messages(inbox2)
	want := []string{`\Seen`, `\Answered`, `\Flagged`, "$Junk"}
	if got := inbox2.FlagNames(msgs[0].Flags); !slices.Equal(got, want) {
		t.Errorf("FlagNames = %v, want %v", got, want)
	}
	if got := inbox2.Keywords(); !slices.Equal(got, []string{"$Forwarded", "$Junk"}) {
		t.Errorf("Keywords = %v", got)
	}
	// Keywords match case-insensitively and keep their index.
	if f, _ := inbox2.ParseFlags([]string{"$junk", "$NotJunk", "$Forwarded"}); f != KeywordFlag(0)|KeywordFlag(1)|FlagForwarded {
		t.Errorf("ParseFlags = %b", f)
	}
	if _, err := inbox2.SetFlags([]uint32{uid}, FlagsSet, FlagDeleted, nil); err != nil {
		t.Fatal(err)
	}
	if got := dirNames(t, dir); len(got) != 1 || !strings.HasSuffix(got[0], ":2,T") {
		t.Errorf("cur/ = %v", got)
	}
}

func TestParseFlagsErrors(t *testing.T) {
	u, _ := testUser(t)
	inbox := mailbox(t, u, "INBOX")
	for _, bad := range []string{`\Bogus`, "a b", "", "x(y", "k\x00"} {
		if _, err := inbox.ParseFlags([]string{bad}); !errors.Is(err, ErrInvalidFlag) {
			t.Errorf("ParseFlags(%q) = %v", bad, err)
		}
	}
	if f, err := inbox.ParseFlags([]string{`\Recent`}); f != 0 || err != nil {
		t.Errorf(`\Recent: %b %v`, f, err)
	}
	var kws []string
	for i := range MaxKeywords {
		kws = append(kws, fmt.Sprintf("k%d", i))
	}
	if _, err := inbox.ParseFlags(kws); err != nil {
		t.Fatal(err)
	}
	if _, err := inbox.ParseFlags([]string{"one-too-many"}); !errors.Is(err, ErrTooManyKeywords) {
		t.Errorf("27th keyword: %v", err)
	}
}

// TestUnknownLettersKept: letters we do not know, in a name another writer
// made, survive our renames.
func TestUnknownLettersKept(t *testing.T) {
	u, root := testUser(t)
	dir := filepath.Join(root, "example.test", "alice", "cur")
	if err := os.WriteFile(filepath.Join(dir, "1700000000.M1P1Q1.other,S=5:2,SZ"), []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "1700000001.M1P1Q1.other,S=5"), []byte("world"), 0o600); err != nil {
		t.Fatal(err)
	}
	inbox := mailbox(t, u, "INBOX")
	msgs := messages(inbox)
	if len(msgs) != 2 || msgs[0].Flags != FlagSeen || msgs[1].Flags != 0 {
		t.Fatalf("messages %v", msgs)
	}
	if got := readAll(t, inbox, msgs[1].UID); got != "world" {
		t.Errorf("file without info: %q", got)
	}
	if _, err := inbox.SetFlags([]uint32{msgs[0].UID, msgs[1].UID}, FlagsAdd, FlagFlagged, nil); err != nil {
		t.Fatal(err)
	}
	got := dirNames(t, dir)
	slices.Sort(got)
	want := []string{"1700000000.M1P1Q1.other,S=5:2,FSZ", "1700000001.M1P1Q1.other,S=5:2,F"}
	if !slices.Equal(got, want) {
		t.Errorf("cur/ = %v, want %v", got, want)
	}
	if got := readAll(t, inbox, msgs[0].UID); got != "hello" {
		t.Errorf("read %q", got)
	}
}
