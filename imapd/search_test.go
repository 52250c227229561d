package imapd

import (
	"bytes"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"postie/imapd/mimeparse"
)

type memFile struct{ *bytes.Reader }

func (memFile) Close() error { return nil }

// memSource serves messages from memory, counting opens so tests can see the cache work.
func memSource(msgs map[uint32][]byte, cache *boxCache, opens *int) *msgSource {
	return &msgSource{
		open: func(uid uint32) (msgFile, error) {
			if opens != nil {
				*opens++
			}
			return memFile{bytes.NewReader(msgs[uid])}, nil
		},
		cache:    cache,
		validity: 7,
	}
}

const (
	bitSeen    = 1 << 0
	bitDeleted = 1 << 3
	bitJunk    = 1 << 6
)

func testFlags(f imap.Flag) (uint64, bool) {
	switch f {
	case imap.FlagSeen:
		return bitSeen, true
	case imap.FlagDeleted:
		return bitDeleted, true
	case "$Junk":
		return bitJunk, true
	}
	return 0, false
}

func TestSearchCriteria(t *testing.T) {
	simple := readTestdata(t, "simple.eml")
	nested := readTestdata(t, "nested.eml")
	files := map[uint32][]byte{10: simple, 20: nested, 30: []byte("Subject: no date\r\n\r\nplain body w\r\n")}
	src := memSource(files, nil, nil)
	internal := time.Date(2026, 11, 20, 23, 30, 0, 0, time.UTC)
	msgs := []*message{
		{src: src, seq: 1, uid: 10, size: int64(len(simple)), date: internal, flags: bitSeen},
		{src: src, seq: 2, uid: 20, size: int64(len(nested)), date: internal.AddDate(0, 0, 2), flags: bitDeleted | bitJunk},
		{src: src, seq: 3, uid: 30, size: 30, date: internal.AddDate(0, 0, 5)},
	}
	day := func(s string) time.Time {
		d, err := time.Parse("2-Jan-2006", s)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	nc := &numContext{maxSeq: 3, maxUID: 30, searchRes: imap.UIDSetNum(20)}
	cases := []struct {
		name string
		c    imap.SearchCriteria
		want []uint32 // UIDs
	}{
		{"all", imap.SearchCriteria{}, []uint32{10, 20, 30}},
		{"seen", imap.SearchCriteria{Flag: []imap.Flag{imap.FlagSeen}}, []uint32{10}},
		{"unseen", imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}}, []uint32{20, 30}},
		{"keyword", imap.SearchCriteria{Flag: []imap.Flag{"$Junk"}}, []uint32{20}},
		{"unknown keyword", imap.SearchCriteria{Flag: []imap.Flag{"$Nope"}}, nil},
		{"unkeyword unknown", imap.SearchCriteria{NotFlag: []imap.Flag{"$Nope"}}, []uint32{10, 20, 30}},
		{"recent", imap.SearchCriteria{Flag: []imap.Flag{`\Recent`}}, nil},
		{"subject decoded", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "CAFÉ"}}}, []uint32{10}},
		{"from", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "From", Value: "dave@"}}}, []uint32{20}},
		{"header exists", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "In-Reply-To", Value: ""}}}, []uint32{10}},
		{"uncached header", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Return-Path", Value: "a@ex"}}}, []uint32{10}},
		{"body qp", imap.SearchCriteria{Body: []string{"CAFÉ W"}}, []uint32{10}},
		{"body qp soft break", imap.SearchCriteria{Body: []string{"café world"}}, []uint32{10}},
		{"body latin1", imap.SearchCriteria{Body: []string{"grüße aus münchen"}}, []uint32{20}},
		{"body inner message", imap.SearchCriteria{Body: []string{"with two lines"}}, []uint32{20}},
		{"body not in header", imap.SearchCriteria{Body: []string{"nested"}}, nil},
		{"text in header", imap.SearchCriteria{Text: []string{"nested"}}, []uint32{20}},
		{"body not in attachment", imap.SearchCriteria{Body: []string{"AAECAw"}}, nil},
		{"larger", imap.SearchCriteria{Larger: 500}, []uint32{20}},
		{"smaller", imap.SearchCriteria{Smaller: 31}, []uint32{30}},
		{"since", imap.SearchCriteria{Since: day("22-Nov-2026")}, []uint32{20, 30}},
		{"before", imap.SearchCriteria{Before: day("22-Nov-2026")}, []uint32{10}},
		{"on", imap.SearchCriteria{Since: day("22-Nov-2026"), Before: day("23-Nov-2026")}, []uint32{20}},
		{"sentsince", imap.SearchCriteria{SentSince: day("23-Nov-2026")}, []uint32{20, 30}}, // 30: no Date, internal date
		{"senton", imap.SearchCriteria{SentSince: day("22-Nov-2026"), SentBefore: day("23-Nov-2026")}, []uint32{10}},
		{"seqset star", imap.SearchCriteria{SeqNum: []imap.SeqSet{{{Start: 2, Stop: 0}}}}, []uint32{20, 30}},
		{"uidset", imap.SearchCriteria{UID: []imap.UIDSet{{{Start: 11, Stop: 25}}}}, []uint32{20}},
		{"uid n:* above max", imap.SearchCriteria{UID: []imap.UIDSet{{{Start: 99, Stop: 0}}}}, []uint32{30}},
		{"searchres", imap.SearchCriteria{UID: []imap.UIDSet{imap.SearchRes()}}, []uint32{20}},
		{"not", imap.SearchCriteria{Not: []imap.SearchCriteria{{Flag: []imap.Flag{imap.FlagDeleted}}}}, []uint32{10, 30}},
		{"or", imap.SearchCriteria{Or: [][2]imap.SearchCriteria{{
			{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "no date"}}},
			{Flag: []imap.Flag{imap.FlagSeen}},
		}}}, []uint32{10, 30}},
		{"not text", imap.SearchCriteria{Not: []imap.SearchCriteria{{Text: []string{"W"}}}}, nil},
		{"and text", imap.SearchCriteria{Text: []string{"plain"}, Body: []string{"body w"}}, []uint32{30}},
	}
	for _, c := range cases {
		p := compileSearch(&c.c, nc, testFlags)
		var got []uint32
		for _, m := range msgs {
			ok, err := p.matches(m)
			m.close()
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			if ok {
				got = append(got, m.uid)
			}
		}
		if !equalUIDs(got, c.want) {
			t.Errorf("%s: got %v want %v", c.name, got, c.want)
		}
	}
}

func equalUIDs(a, b []uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestHeaderCache(t *testing.T) {
	simple := readTestdata(t, "simple.eml")
	fc := newFieldCache(1 << 20)
	box := fc.newBox()
	opens := 0
	src := memSource(map[uint32][]byte{1: simple}, box, &opens)
	fields := []string{"From", "To", "Cc", "Subject", "Date", "Message-ID", "References", "In-Reply-To", "Content-Type"}
	var first []byte
	for i := 0; i < 3; i++ {
		m := &message{src: src, uid: 1}
		h, err := m.cachedHeader()
		if err != nil {
			t.Fatal(err)
		}
		got := mimeparse.FilterHeader(h, fields, false)
		m.close()
		if i == 0 {
			first = got
			fromFile := mimeparse.FilterHeader(mimeparse.ParseHeader(simple), fields, false)
			if !bytes.Equal(got, fromFile) {
				t.Fatalf("cache differs from file:\n%q\n%q", got, fromFile)
			}
		} else if !bytes.Equal(got, first) {
			t.Fatalf("second read differs")
		}
	}
	if opens != 1 {
		t.Errorf("file opened %d times, want 1", opens)
	}
	box.drop(1)
	if _, ok := box.get(7, 1); ok || fc.used != 0 {
		t.Errorf("drop left entry or bytes (%d)", fc.used)
	}
	// The budget evicts the least recently used other mailbox.
	small := newFieldCache(3 * (100 + entryOverhead))
	a, b := small.newBox(), small.newBox()
	a.touch()
	a.put(1, 1, string(make([]byte, 100)))
	a.put(1, 2, string(make([]byte, 100)))
	b.touch()
	b.put(1, 1, string(make([]byte, 100)))
	b.put(1, 2, string(make([]byte, 100)))
	if _, ok := a.get(1, 1); ok {
		t.Error("a should have been evicted")
	}
	if _, ok := b.get(1, 2); !ok {
		t.Error("b lost its entry")
	}
	if _, ok := b.get(2, 2); ok {
		t.Error("other UIDVALIDITY must miss")
	}
}

func mustDay(s string) time.Time {
	d, err := time.Parse("2-Jan-2006", s)
	if err != nil {
		panic(err)
	}
	return d
}

func TestStaticSets(t *testing.T) {
	nc := &numContext{maxSeq: 10, maxUID: 50}
	seqs := nc.staticSeqSet(imap.SeqSet{{Start: 9, Stop: 0}, {Start: 1, Stop: 2}, {Start: 5, Stop: 3}, {Start: 0, Stop: 0}})
	for _, c := range []struct {
		n    uint32
		want bool
	}{{1, true}, {2, true}, {3, true}, {5, true}, {6, false}, {8, false}, {9, true}, {10, true}, {11, false}} {
		if seqs.Contains(c.n) != c.want {
			t.Errorf("seq %d in %v: %v", c.n, seqs, !c.want)
		}
	}
	uids := nc.staticUIDSet(imap.UIDSet{{Start: 60, Stop: 0}, {Start: 7, Stop: 7}, {Start: 3, Stop: 1}})
	if !uids.Contains(50) || !uids.Contains(7) || !uids.Contains(2) || uids.Contains(8) {
		t.Errorf("uids %v", uids)
	}
	empty := &numContext{}
	if s := empty.staticSeqSet(imap.SeqSet{{Start: 1, Stop: 0}}); len(s) != 0 {
		t.Errorf("1:* of nothing = %v", s)
	}
}
