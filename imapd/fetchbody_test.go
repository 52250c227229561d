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

// TestTextMatcherChunks feeds text in every split into two and three chunks (runes cut in half
// included) and checks the matcher agrees with a search of the whole folded text.
func TestTextMatcherChunks(t *testing.T) {
	text := []byte("Grüße aus MÜNCHEN, straße ÉTÉ\xff\xfe ok Ωmega ñandú")
	needles := []string{"münchen", "straße ét", "été\ufffd", "ωmega ñ", "ñandú", "absent", "n, s"}
	var ns []needle
	for _, s := range needles {
		ns = append(ns, needle{folded: fold([]byte(s))})
	}
	whole := fold(text)
	for i := 0; i <= len(text); i++ {
		for j := i; j <= len(text); j += 3 {
			tm := newTextMatcher(ns)
			tm.reset(true)
			tm.write(text[:i])
			tm.write(text[i:j])
			tm.write(text[j:])
			for k, n := range ns {
				if want := bytes.Contains(whole, n.folded); tm.found[k] != want {
					t.Fatalf("split %d/%d: %q found=%v, want %v", i, j, needles[k], tm.found[k], want)
				}
			}
		}
	}
}
