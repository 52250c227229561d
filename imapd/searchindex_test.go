package imapd

import (
	"encoding/base64"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"mime/quotedprintable"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"postie/maildir"
	"postie/searchidx"
)

var idxWords = []string{"hello", "world", "Über", "straße", "Mail", "post", "postie", "café", "x1", "42",
	"foo@bar.example", "[list]", "mañana", "HelloHello", "alpha-beta", "ZEBRA", "naïve", "résumé"}

// randomMessage makes a message whose words sit in encoded subjects, quoted-printable, base64 and
// multipart bodies, so the index sees text only after the decoding SEARCH does.
func randomMessage(r *rand.Rand, i int) string {
	text := func(n int) string {
		var b strings.Builder
		for range n {
			b.WriteString(idxWords[r.IntN(len(idxWords))])
			b.WriteString([]string{" ", "\r\n", ", ", ""}[r.IntN(4)])
		}
		return b.String()
	}
	var b strings.Builder
	subj := text(3)
	if r.IntN(3) == 0 {
		subj = "=?utf-8?b?" + base64.StdEncoding.EncodeToString([]byte(strings.ReplaceAll(subj, "\r\n", " "))) + "?="
	} else {
		subj = strings.ReplaceAll(subj, "\r\n", " ")
	}
	fmt.Fprintf(&b, "From: s%d@example.org\r\nTo: alice@example.test\r\nSubject: %s\r\nMessage-ID: <r%d@x>\r\nMIME-Version: 1.0\r\n", i, subj, i)
	body := text(20)
	switch r.IntN(4) {
	case 0:
		b.WriteString("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n")
		b.WriteString(base64.StdEncoding.EncodeToString([]byte(body)) + "\r\n")
	case 1:
		var q strings.Builder
		w := quotedprintable.NewWriter(&q)
		w.Write([]byte(body))
		w.Close()
		b.WriteString("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" + q.String() + "\r\n")
	case 2:
		b.WriteString("Content-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" +
			body + "\r\n--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>" + text(5) + "</p>\r\n--b--\r\n")
	default:
		b.WriteString("Content-Type: text/plain; charset=utf-8\r\n\r\n" + body + "\r\n")
	}
	return b.String()
}

var idxQueries = []string{
	"TEXT hello", "TEXT ello", "BODY hello", "TEXT \"llo wor\"", "TEXT über", "BODY straße", "TEXT STRASSE",
	"TEXT x1", "TEXT 4", "TEXT @bar", "TEXT foo@bar.example", "TEXT \", \"", "TEXT helloh", "BODY ZEBRA",
	"TEXT nothing-here", "TEXT a", "NOT TEXT hello", "OR TEXT zebra BODY café", "TEXT hello TEXT world",
	"TEXT \"[list]\"", "BODY résumé SEEN", "TEXT naïve NOT BODY naïve", "SUBJECT post TEXT postie", "TEXT alice",
}

func uidSearch(t *testing.T, c *imapclient.Client, q string) []imap.UID {
	t.Helper()
	d, err := c.UIDSearch(parseCriteria(t, q), nil).Wait()
	if err != nil {
		t.Fatalf("UID SEARCH %s: %v", q, err)
	}
	return d.AllUIDs()
}

// parseCriteria turns the few forms idxQueries use into criteria.
func parseCriteria(t *testing.T, q string) *imap.SearchCriteria {
	t.Helper()
	var toks []string
	for rest := q; rest != ""; {
		rest = strings.TrimLeft(rest, " ")
		if strings.HasPrefix(rest, "\"") {
			end := strings.IndexByte(rest[1:], '"') + 1
			toks = append(toks, rest[1:end])
			rest = rest[end+1:]
			continue
		}
		tok, r, _ := strings.Cut(rest, " ")
		toks, rest = append(toks, tok), r
	}
	var parse func() imap.SearchCriteria
	parse = func() imap.SearchCriteria {
		var c imap.SearchCriteria
		k := strings.ToUpper(toks[0])
		toks = toks[1:]
		switch k {
		case "TEXT":
			c.Text, toks = []string{toks[0]}, toks[1:]
		case "BODY":
			c.Body, toks = []string{toks[0]}, toks[1:]
		case "SUBJECT":
			c.Header, toks = []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: toks[0]}}, toks[1:]
		case "SEEN":
			c.Flag = []imap.Flag{imap.FlagSeen}
		case "MODSEQ":
			n, err := strconv.ParseUint(toks[0], 10, 64)
			if err != nil {
				t.Fatalf("query %q: %v", q, err)
			}
			c.ModSeq, toks = &imap.SearchCriteriaModSeq{ModSeq: n}, toks[1:]
		case "NOT":
			c.Not = []imap.SearchCriteria{parse()}
		case "OR":
			a := parse()
			c.Or = [][2]imap.SearchCriteria{{a, parse()}}
		default:
			t.Fatalf("query %q: %s", q, k)
		}
		return c
	}
	var all imap.SearchCriteria
	for len(toks) > 0 {
		c := parse()
		if c.ModSeq != nil {
			all.ModSeq = c.ModSeq // SearchCriteria.And drops it
		}
		all.And(&c)
	}
	return &all
}

// With the index, every search finds exactly what the scan finds, on a random corpus, also after
// expunges and new deliveries.
func TestSearchIndexMatchesScan(t *testing.T) {
	ts := newTestServer(t)
	r := rand.New(rand.NewPCG(5, 6))
	for i := range 150 {
		ts.deliver(randomMessage(r, i))
	}
	c := ts.dial(nil)
	mustSelect(t, c, "INBOX", false)
	c.Store(imap.SeqSetNum(3, 7, 11), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagSeen}}, nil).Close()
	// MODSEQ with text: the index answers the text, the message its modseq (3, 7 and 11 have the
	// highest, from the STORE).
	hi := mustMailbox(t, ts, "INBOX").HighestModSeq() - 2
	queries := append(slices.Clip(idxQueries), fmt.Sprintf("TEXT hello MODSEQ %d", hi),
		fmt.Sprintf("MODSEQ %d BODY zebra", hi), fmt.Sprintf("NOT MODSEQ %d TEXT hello", hi))
	if got := uidSearch(t, c, fmt.Sprintf("MODSEQ %d", hi)); !reflect.DeepEqual(got, []imap.UID{3, 7, 11}) {
		t.Fatalf("MODSEQ %d: %v, want [3 7 11]", hi, got)
	}
	compare := func(stage string) {
		t.Helper()
		for _, q := range queries {
			ts.srv.opts.NoSearchIndex = true
			want := uidSearch(t, c, q)
			ts.srv.opts.NoSearchIndex = false
			got := uidSearch(t, c, q)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s: SEARCH %s: index gives %v, scan %v", stage, q, got, want)
			}
		}
	}
	compare("fresh")
	idx := ts.srv.boxes.existing(mustMailbox(t, ts, "INBOX")).index.idx
	if idx == nil || idx.Stats().Docs != 150 {
		t.Fatalf("index not built: %+v", idx)
	}
	// Narrowing works: a rare word's search reads only what it must.
	if res := idx.Query([]byte("zebra"), false); res.Candidates() == 0 || res.Candidates() >= 150 {
		t.Errorf("zebra: %d candidates", res.Candidates())
	}
	c.Store(imap.SeqSetNum(1, 2, 50), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close()
	if err := c.Expunge().Close(); err != nil {
		t.Fatal(err)
	}
	for i := 150; i < 160; i++ {
		ts.deliver(randomMessage(r, i))
	}
	c.Noop().Wait()
	compare("after expunge and delivery")
	if n := idx.Stats().Docs; n != 157 {
		t.Errorf("index covers %d messages, want 157", n)
	}
}

func mustMailbox(t testing.TB, ts *testServer, name string) *maildir.Mailbox {
	t.Helper()
	m, err := ts.user().Mailbox(name)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// A message delivered by another process (its own Store on the same directory) after the index was
// saved is found: the index is compared with the folder and catches up, never trusted as it is.
func TestSearchIndexStaleAfterOtherProcess(t *testing.T) {
	dir := t.TempDir()
	ts := startTestServer(t, dir)
	ts.deliver(testMessage(1, "first zebra"))
	c := ts.dial(nil)
	mustSelect(t, c, "INBOX", false)
	if got := uidSearch(t, c, "TEXT zebra"); len(got) != 1 {
		t.Fatalf("before: %v", got)
	}
	other := maildir.NewStore(dir, maildir.StoreOptions{Hostname: "other"})
	u, err := other.User("example.test", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u.Deliver(strings.NewReader(testMessage(2, "second zebra")), maildir.DeliverOptions{}); err != nil {
		t.Fatal(err)
	}
	for range 50 { // the server notices the delivery at its next refresh
		if got := uidSearch(t, c, "TEXT zebra"); len(got) == 2 {
			if n := ts.srv.boxes.existing(mustMailbox(t, ts, "INBOX")).index.idx.Stats().Docs; n != 2 {
				t.Errorf("the index covers %d messages, want 2", n)
			}
			return
		}
		time.Sleep(pollRefreshGap / 4)
		c.Noop().Wait()
	}
	t.Fatalf("after another process's delivery: %v", uidSearch(t, c, "TEXT zebra"))
}

// A corrupt index file is noticed, not used, and replaced.
func TestSearchIndexCorruptFile(t *testing.T) {
	dir := t.TempDir()
	ts := startTestServer(t, dir)
	for i := range 5 {
		ts.deliver(testMessage(i, fmt.Sprintf("subject %d", i)))
	}
	ts.deliver(testMessage(9, "zebra"))
	c := ts.dial(nil)
	mustSelect(t, c, "INBOX", false)
	uidSearch(t, c, "TEXT zebra")
	var files []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".idx") {
			files = append(files, p)
		}
		return nil
	})
	if len(files) != 1 {
		t.Fatalf("index files: %v", files)
	}
	// Corrupt it so that it still parses but says zebra is in no message.
	idx := searchidx.New(files[0], mustMailbox(t, ts, "INBOX").UIDValidity())
	for uid := uint32(1); uid <= 6; uid++ {
		idx.Add(searchidx.NewDoc(uid), false)
	}
	if err := idx.Save(); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(files[0])
	b[len(b)-1] ^= 1 // and then break its checksum
	os.WriteFile(files[0], b, 0o600)

	ts2 := startTestServer(t, dir)
	c2 := ts2.dial(nil)
	mustSelect(t, c2, "INBOX", false)
	if got := uidSearch(t, c2, "TEXT zebra"); len(got) != 1 {
		t.Errorf("with a corrupt index file: %v", got)
	}
	if _, err := searchidx.Open(files[0]); err != nil {
		t.Errorf("the index file was not rewritten: %v", err)
	}
}
