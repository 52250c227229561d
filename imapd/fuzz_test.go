package imapd

import (
	"bytes"
	"os"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

// testdata is where the sample messages live: with the message parser, whose fuzzers seed from them.
const testdata = "mimeparse/testdata/"

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(testdata + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func addMessageSeeds(f *testing.F) {
	for _, name := range []string{"simple.eml", "nested.eml"} {
		b, err := os.ReadFile(testdata + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\n--a--"))
	f.Add([]byte(""))
}

func FuzzSearchText(f *testing.F) {
	addMessageSeeds(f)
	f.Fuzz(func(t *testing.T, msg []byte) {
		src := memSource(map[uint32][]byte{1: msg}, nil, nil)
		m := &message{src: src, seq: 1, uid: 1, size: int64(len(msg))}
		c := &imap.SearchCriteria{
			Or: [][2]imap.SearchCriteria{{
				{Text: []string{"é"}, Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "x"}}},
				{Body: []string{"ab"}, SentSince: mustDay("1-Jan-2000")},
			}},
		}
		p := compileSearch(c, &numContext{maxSeq: 1, maxUID: 1}, testFlags)
		if _, err := p.matches(m); err != nil {
			t.Fatal(err)
		}
		// A needle taken from the message text itself is always found by TEXT.
		if len(msg) > 8 && bytes.IndexByte(msg[:8], '\n') < 0 && bytes.IndexByte(msg[:8], '\r') < 0 && isPlainASCII(msg[:8]) {
			m.close()
			hdrless := append([]byte("\r\n"), msg...)
			src2 := memSource(map[uint32][]byte{1: hdrless}, nil, nil)
			m2 := &message{src: src2, seq: 1, uid: 1}
			p2 := compileSearch(&imap.SearchCriteria{Text: []string{string(msg[:8])}}, &numContext{}, testFlags)
			ok, err := p2.matches(m2)
			if err != nil || !ok && !bytes.Contains(msg, []byte("\n--")) {
				t.Fatalf("TEXT %q not found in %q (%v)", msg[:8], hdrless, err)
			}
		}
	})
}

func isPlainASCII(b []byte) bool {
	for _, c := range b {
		if c < ' ' || c > '~' || c == '=' {
			return false
		}
	}
	return true
}

// Our LIST matcher agrees with go-imap's (which is exponential in the worst case, hence ours).
func FuzzListMatch(f *testing.F) {
	f.Add("Projects/2026/Q4", "", "Projects/%")
	f.Add("a/b", "a", "*")
	f.Add("INBOX/x", "inbox/", "%")
	f.Fuzz(func(t *testing.T, name, ref, pattern string) {
		if len(name) > 24 || len(pattern) > 12 || len(ref) > 8 {
			return
		}
		want := imapserver.MatchList(name, delim, inboxCase(ref), inboxCase(pattern))
		if got := matchMailbox(name, ref, pattern); got != want {
			t.Fatalf("name %q ref %q pattern %q: got %v, MatchList %v", name, ref, pattern, got, want)
		}
	})
}
