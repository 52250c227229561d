package maildir

import (
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	gomaildir "github.com/emersion/go-maildir"
	"github.com/emersion/go-maildir/maildirpp"
)

// The store is standard Maildir++: an independent reader,
// github.com/emersion/go-maildir, finds every folder, message, body and flag
// that Postie wrote, and Postie follows what that library changes.

// letters maps our flags to Maildir info letters as go-maildir reads them.
func letters(m *Mailbox, f Flags) []gomaildir.Flag {
	var out []gomaildir.Flag
	for _, x := range []struct {
		f Flags
		l gomaildir.Flag
	}{{FlagDraft, gomaildir.FlagDraft}, {FlagFlagged, gomaildir.FlagFlagged}, {FlagForwarded, gomaildir.FlagPassed},
		{FlagAnswered, gomaildir.FlagReplied}, {FlagSeen, gomaildir.FlagSeen}, {FlagDeleted, gomaildir.FlagTrashed}} {
		if f&x.f != 0 {
			out = append(out, x.l)
		}
	}
	for i := range MaxKeywords {
		if f&KeywordFlag(i) != 0 {
			out = append(out, gomaildir.Flag('a'+i))
		}
	}
	slices.Sort(out)
	return out
}

// readBack reads every message of a folder directory with go-maildir:
// key → body, and key → flags.
func readBack(t *testing.T, dir string) (bodies map[string]string, flags map[string][]gomaildir.Flag) {
	t.Helper()
	d := gomaildir.Dir(dir)
	bodies, flags = make(map[string]string), make(map[string][]gomaildir.Flag)
	err := d.Walk(func(key string, fl []gomaildir.Flag) error {
		rc, err := d.Open(key)
		if err != nil {
			return err
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err != nil {
			return err
		}
		bodies[key] = string(b)
		byFlags, err := d.Flags(key)
		if err != nil {
			return err
		}
		if !slices.Equal(byFlags, fl) {
			t.Errorf("%s: Walk says %q, Flags %q", key, fl, byFlags)
		}
		flags[key] = fl
		return nil
	})
	if err != nil {
		t.Fatalf("go-maildir cannot walk %s: %v", dir, err)
	}
	keys, err := d.Keys()
	if err != nil || len(keys) != len(bodies) {
		t.Errorf("Keys: %d keys, %v", len(keys), err)
	}
	return bodies, flags
}

// compare checks that go-maildir reads the folder as Postie holds it.
func compare(t *testing.T, m *Mailbox, dir string) {
	t.Helper()
	bodies, flags := readBack(t, dir)
	msgs := messages(m)
	if len(msgs) != len(bodies) {
		t.Errorf("%s: go-maildir finds %d messages, Postie %d", m.Name(), len(bodies), len(msgs))
	}
	for i, msg := range msgs {
		key := m.keys[i]
		if got, want := bodies[key], readAll(t, m, msg.UID); got != want {
			t.Errorf("%s UID %d: go-maildir reads %q, Postie %q", m.Name(), msg.UID, got, want)
		}
		if got, want := flags[key], letters(m, msg.Flags); !slices.Equal(got, want) {
			t.Errorf("%s UID %d: go-maildir reads flags %q, want %q", m.Name(), msg.UID, got, want)
		}
	}
}

func TestStandardMaildir(t *testing.T) {
	u, root := testUser(t)
	for i := range 3 {
		deliver(t, u, body(i))
	}
	// Deliveries wait in new/, unflagged, where any Maildir reader looks.
	if n, err := gomaildir.Dir(u.dir).UnseenCount(); err != nil || n != 3 {
		t.Fatalf("go-maildir UnseenCount = %d, %v", n, err)
	}
	for _, name := range []string{"Lists/go", "Lists/rust", "Projects"} {
		if err := u.CreateMailbox(name, ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := u.Deliver(strings.NewReader(body(10)), DeliverOptions{Mailbox: "Lists/go"}); err != nil {
		t.Fatal(err)
	}
	inbox := mailbox(t, u, "INBOX")
	if _, err := inbox.SetFlags([]uint32{1, 3}, FlagsAdd, FlagSeen|FlagAnswered, nil); err != nil {
		t.Fatal(err)
	}
	archive := mailbox(t, u, "Archive")
	kw, err := archive.ParseFlags([]string{"$Label1", "Work"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := archive.Append(strings.NewReader(body(20)), FlagSeen|FlagFlagged|FlagDraft|kw, testDate, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := inbox.CopyTo(mailbox(t, u, "Projects"), []uint32{2, 3}, nil); err != nil {
		t.Fatal(err)
	}

	// Folders: Maildir++ names, each a Maildir go-maildir reads.
	for _, name := range []string{"Lists/go", "Lists/rust", "Projects", "Archive", "Sent"} {
		key, err := maildirpp.Join(strings.Split(name, "/"))
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(u.dir, key)
		if folderDir(name) != key {
			t.Errorf("%s is %s on disk, Maildir++ says %s", name, folderDir(name), key)
		}
		compare(t, mailbox(t, u, name), dir)
	}
	compare(t, inbox, u.dir)
	if got := len(messages(mailbox(t, u, "Lists/go"))); got != 1 {
		t.Errorf("Lists/go has %d messages", got)
	}

	// And the other way: what go-maildir does, Postie sees.
	d := gomaildir.Dir(u.dir)
	dl, err := gomaildir.NewDelivery(u.dir)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(dl, body(30))
	if err := dl.Close(); err != nil {
		t.Fatal(err)
	}
	if keys, err := d.Unseen(); err != nil || len(keys) != 1 {
		t.Fatalf("Unseen: %v %v", keys, err)
	}
	key := inbox.keys[0]
	if err := d.SetFlags(key, []gomaildir.Flag{gomaildir.FlagFlagged}); err != nil {
		t.Fatal(err)
	}
	other := reopen(t, root)
	for _, m := range []*Mailbox{inbox, mailbox(t, other, "INBOX")} {
		m.cur.valid = false // go-maildir renamed within the same clock tick
		if err := m.Refresh(); err != nil {
			t.Fatal(err)
		}
		msgs := messages(m)
		if len(msgs) != 4 || msgs[0].Flags != FlagFlagged || readAll(t, m, msgs[3].UID) != body(30) {
			t.Errorf("after go-maildir's changes Postie shows %v", msgs)
		}
		compare(t, m, u.dir)
	}
}
