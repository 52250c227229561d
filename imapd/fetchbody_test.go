package imapd

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// TestFetchBodyExactFile checks that BODY[] is the file's bytes exactly, whatever the size hint in
// its name says: small files are read whole using the hint (one byte more tells a longer file), and
// a wrong hint must neither cut nor pad the literal.
func TestFetchBodyExactFile(t *testing.T) {
	ts := newTestServer(t)
	u := ts.user()
	if _, err := u.Mailbox("INBOX"); err != nil {
		t.Fatal(err)
	}
	small := "Subject: small\r\n\r\nhello\r\n"
	big := "Subject: big\r\n\r\n" + strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd\r\n", 2000)
	files := []struct{ name, body string }{
		{"1700000001.M1P1.test,S=" + itoa(len(small)), small},                     // right
		{"1700000002.M2P1.test,S=5", small},                                       // says smaller
		{"1700000003.M3P1.test,S=" + itoa(len(small)+100), small},                 // says bigger
		{"1700000004.M4P1.test,S=" + itoa(len(big)), big},                         // bigger than the whole-read buffer
		{"1700000005.M5P1.test,S=" + itoa(smallMessage-1), big[:smallMessage+10]}, // hint just fits, file does not
	}
	dir := filepath.Join(ts.dir, "example.test", "alice", "new")
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.name), []byte(f.body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c := ts.dial(nil)
	defer c.Close()
	mustSelect(t, c, "INBOX", true)
	msgs := fetchAll(t, c, imap.SeqSetNum(1, 2, 3, 4, 5), &imap.FetchOptions{
		BodySection: []*imap.FetchItemBodySection{{Peek: true}, {Peek: true, Partial: &imap.SectionPartial{Offset: 2, Size: 7}}},
	})
	if len(msgs) != len(files) {
		t.Fatalf("%d messages", len(msgs))
	}
	for i, m := range msgs {
		want := []byte(files[i].body)
		if len(m.BodySection) != 2 || !bytes.Equal(m.BodySection[0].Bytes, want) {
			t.Errorf("message %d (%s): BODY[] of %d bytes, want %d", i+1, files[i].name, len(m.BodySection[0].Bytes), len(want))
			continue
		}
		if got := m.BodySection[1].Bytes; !bytes.Equal(got, want[2:9]) {
			t.Errorf("message %d: BODY[]<2.7> = %q", i+1, got)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
