package imapd

import (
	"bufio"
	"fmt"
	"net"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// RFC 5256 §2.1, step by step: trailers (2), leaders (3), blobs (4), the loop (5), [fwd: ] (6).
func TestBaseSubject(t *testing.T) {
	cases := []struct {
		in, want string
		reply    bool
	}{
		{"Hello", "Hello", false},
		{"Re: Fwd: [list] Hello", "Hello", true},
		{"[list] Re: Hello", "Hello", true},
		{"[a][b] Re: x", "x", true},
		{"RE [blob]: Hello", "Hello", true},
		{"Re: Re: re: x", "x", true},
		{"Fw: x", "x", true},
		{"FWD:x", "x", true},
		{"Re Hello", "Re Hello", false},
		{"Ref: x", "Ref: x", false},
		{"Hello (fwd)", "Hello", true},
		{"Hello (fwd) (FWD)  ", "Hello", true},
		{"(fwd) Hello", "(fwd) Hello", false},
		{"[fwd: Hello]", "Hello", true},
		{"[Fwd: Re: [list] x (fwd)]", "x", true},
		{"[fwd: [fwd: x]]", "x", true},
		{"Re:   Hello\t world ", "Hello world", true},
		{"  leading  space", "leading space", false},
		{"[list]", "[list]", false},
		{"Re: [list]", "[list]", true},
		{"[a] [b]", "[b]", false},
		{"[unclosed Re: x", "[unclosed Re: x", false},
		{"=?utf-8?q?Re=3A_caf=C3=A9?=", "café", true},
		{"", "", false},
		{"   ", "", false},
	}
	for _, c := range cases {
		got, reply := baseSubject(c.in)
		if got != c.want || reply != c.reply {
			t.Errorf("baseSubject(%q) = %q, %v; want %q, %v", c.in, got, reply, c.want, c.reply)
		}
	}
}

// sortFixture appends messages with chosen internal dates; Date fields and subjects exercise the
// RFC 5256 rules (missing and unparseable dates fall back to the internal date; zones are compared
// in UTC; subjects compare by base subject, i;ascii-casemap).
func sortFixture(t *testing.T) (*testServer, *imapclient.Client) {
	ts := newTestServer(t)
	c := ts.dial(nil)
	day := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	msgs := []struct {
		date, subject, from, to, extra string
		internal                       time.Time
	}{
		// 1: 10:00 UTC
		{"Mon, 23 Nov 2026 10:00:00 +0000", "Re: Hello", "Zed <zed@example.org>", "b@example.org", "Message-ID: <b@x>\r\nReferences: <a@x>\r\n", day.Add(4 * time.Hour)},
		// 2: no Date: internal 09:45
		{"", "[list] hello", "\"Adam\" <adam@example.org>", "Carl <a@example.org>", "Message-ID: <a@x>\r\n", day.Add(9*time.Hour + 45*time.Minute)},
		// 3: 12:00 +0300 = 09:00 UTC
		{"Mon, 23 Nov 2026 12:00:00 +0300", "Fwd: apple (fwd)", "bob@example.org", "", "Message-ID: <c@x>\r\nIn-Reply-To: <b@x>\r\n", day.Add(2 * time.Hour)},
		// 4: unparseable Date: internal 22 Nov
		{"yesterday-ish", "BANANA", "", "zz@example.org", "Message-ID: <d@x>\r\n", day.Add(-24 * time.Hour)},
		// 5: 09:30 -0100 = 10:30 UTC
		{"Mon, 23 Nov 2026 09:30:00 -0100", "Re: [other] Banana", "Al <al@example.org>", "", "Message-ID: <e@x>\r\nReferences: <gone@x>\r\n", day.Add(5 * time.Hour)},
	}
	for i, m := range msgs {
		var b strings.Builder
		if m.date != "" {
			b.WriteString("Date: " + m.date + "\r\n")
		}
		if m.from != "" {
			b.WriteString("From: " + m.from + "\r\n")
		}
		if m.to != "" {
			b.WriteString("To: " + m.to + "\r\n")
		}
		b.WriteString("Subject: " + m.subject + "\r\n" + m.extra + "\r\n")
		b.WriteString(strings.Repeat("x", 500*(5-i)) + "\r\n") // sizes descend with the sequence number
		appendMsg(t, c, "INBOX", []byte(b.String()), &imap.AppendOptions{Time: m.internal})
	}
	mustSelect(t, c, "INBOX", false)
	return ts, c
}

func TestSortKeys(t *testing.T) {
	_, c := sortFixture(t)
	cases := []struct {
		keys []imapclient.SortCriterion
		want []uint32
	}{
		{[]imapclient.SortCriterion{{Key: "ARRIVAL"}}, []uint32{4, 3, 1, 5, 2}},
		{[]imapclient.SortCriterion{{Key: "DATE"}}, []uint32{4, 3, 2, 1, 5}},
		{[]imapclient.SortCriterion{{Key: "DATE", Reverse: true}}, []uint32{5, 1, 2, 3, 4}},
		{[]imapclient.SortCriterion{{Key: "SIZE"}}, []uint32{5, 4, 3, 2, 1}},
		// base subjects: hello, hello, apple, BANANA, Banana; equal ones by sequence number
		{[]imapclient.SortCriterion{{Key: "SUBJECT"}}, []uint32{3, 4, 5, 1, 2}},
		{[]imapclient.SortCriterion{{Key: "SUBJECT"}, {Key: "DATE", Reverse: true}}, []uint32{3, 5, 4, 1, 2}},
		{[]imapclient.SortCriterion{{Key: "SUBJECT", Reverse: true}, {Key: "SIZE"}}, []uint32{2, 1, 5, 4, 3}},
		// addr-mailbox: zed, adam, bob, "", al
		{[]imapclient.SortCriterion{{Key: "FROM"}}, []uint32{4, 2, 5, 3, 1}},
		// display: Zed, Adam, bob@example.org, "", Al
		{[]imapclient.SortCriterion{{Key: "DISPLAYFROM"}}, []uint32{4, 2, 5, 3, 1}},
		// to: b, a, "", zz, "" / display: b@example.org, Carl, "", zz@example.org, ""
		{[]imapclient.SortCriterion{{Key: "TO"}}, []uint32{3, 5, 2, 1, 4}},
		{[]imapclient.SortCriterion{{Key: "DISPLAYTO"}}, []uint32{3, 5, 1, 2, 4}},
		{[]imapclient.SortCriterion{{Key: "CC"}, {Key: "ARRIVAL"}}, []uint32{4, 3, 1, 5, 2}},
	}
	for _, tc := range cases {
		got, err := c.Sort(&imapclient.SortOptions{SearchCriteria: &imap.SearchCriteria{}, SortCriteria: tc.keys}).Wait()
		if err != nil {
			t.Fatalf("sort %v: %v", tc.keys, err)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("SORT %v = %v, want %v", tc.keys, got, tc.want)
		}
	}
	// UID SORT with search criteria: UIDs are 1..5 here; SMALLER leaves out 1 to 3.
	got, err := c.UIDSort(&imapclient.SortOptions{SearchCriteria: &imap.SearchCriteria{Smaller: 1300},
		SortCriteria: []imapclient.SortCriterion{{Key: "DATE"}}}).Wait()
	if err != nil || !reflect.DeepEqual(got, []uint32{4, 5}) {
		t.Errorf("UID SORT (DATE) SMALLER 1300 = %v, %v; want [4 5]", got, err)
	}
}

func TestThreadAlgorithms(t *testing.T) {
	_, c := sortFixture(t)
	// REFERENCES: 2 (<a>) is the parent of 1 (References <a>), 1 of 3 (In-Reply-To <b>); 5's parent
	// <gone> is missing: the dummy goes, 5 is a root, and joins 4 by subject (banana; 5 is a reply).
	got, err := c.Thread(&imapclient.ThreadOptions{Algorithm: imap.ThreadReferences, SearchCriteria: &imap.SearchCriteria{}}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	want := []imapclient.ThreadData{{Chain: []uint32{4, 5}}, {Chain: []uint32{2, 1, 3}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("THREAD REFERENCES = %+v, want %+v", got, want)
	}
	// ORDEREDSUBJECT: apple (3); banana (4, 5); hello (2 at 09:45, 1 at 10:00); threads by first date.
	got, err = c.Thread(&imapclient.ThreadOptions{Algorithm: imap.ThreadOrderedSubject, SearchCriteria: &imap.SearchCriteria{}}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	want = []imapclient.ThreadData{{Chain: []uint32{4, 5}}, {Chain: []uint32{3}}, {Chain: []uint32{2, 1}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("THREAD ORDEREDSUBJECT = %+v, want %+v", got, want)
	}
}

// Threads the RFC's way on made-up trees: dummies at the root with several children stay, with one
// child go; subject merging makes a dummy for two non-replies.
func TestThreadReferencesTrees(t *testing.T) {
	mk := func(seq uint32, id, subject string, refs ...string) *sortItem {
		base, reply := baseSubject(subject)
		return &sortItem{seq: seq, uid: seq, arrival: time.Unix(int64(seq)*60, 0), sent: int64(seq) * 60,
			keys: &msgKeys{msgID: id, refs: refs, subject: caseMap(base), reply: reply}}
	}
	items := []*sortItem{
		mk(1, "a", "Hello"),
		mk(2, "b", "Re: Hello", "a"),
		mk(3, "c", "Re: Hello", "a", "b"),
		mk(4, "d", "Other"),
		mk(5, "e", "Re: Other", "missing"),
		mk(6, "f", "Unrelated", "x1"),
		mk(7, "g", "Unrelated 2", "x1"),
		mk(8, "h", "Same"),
		mk(9, "i", "same"),
		mk(10, "a", "Duplicate id", "c"), // a duplicate Message-ID counts as none
		mk(11, "", "loop", "k", "j"),
		mk(12, "j", "loop", "k"),
		mk(13, "k", "loop", "j"), // k is j's parent already: j→k would loop and is not made
	}
	var b strings.Builder
	for _, td := range threadReferences(items, 0) {
		b.WriteString(threadString(td))
	}
	want := "(1 2 3 10)(4 5)((6)(7))((8)(9))(13 12 11)"
	if b.String() != want {
		t.Errorf("threads = %s, want %s", b.String(), want)
	}
}

func threadString(t imap.ThreadData) string {
	var b strings.Builder
	b.WriteByte('(')
	for i, n := range t.Chain {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprint(&b, n)
	}
	if len(t.SubThreads) == 1 {
		s := threadString(t.SubThreads[0])
		return b.String() + " " + s[1:]
	}
	if len(t.SubThreads) > 0 && len(t.Chain) > 0 {
		b.WriteByte(' ')
	}
	for _, s := range t.SubThreads {
		b.WriteString(threadString(s))
	}
	b.WriteByte(')')
	return b.String()
}

// The exchanges of RFC 5256 §3/§4 and RFC 5267 §3/§4.4, on the wire.
func TestSortThreadRaw(t *testing.T) {
	ts, _ := sortFixture(t)
	exchange := rawExchange(t, ts.addr)
	exchange("l LOGIN " + testUser + " " + testPass)
	exchange("s SELECT INBOX")
	cases := []struct{ cmd, want string }{
		{"A282 SORT (SUBJECT) UTF-8 SINCE 1-Feb-1994", "* SORT 3 4 5 1 2|A282 OK"},
		{"A283 SORT (SUBJECT REVERSE DATE) UTF-8 ALL", "* SORT 3 5 4 1 2|A283 OK"},
		{"A284 SORT (SUBJECT) US-ASCII TEXT \"not in mailbox\"", "* SORT|A284 OK"},
		{"A285 UID SORT (REVERSE ARRIVAL) UTF-8 UNDELETED", "* SORT 2 5 1 3 4|A285 OK"},
		{"A286 THREAD ORDEREDSUBJECT UTF-8 SINCE 5-MAR-2000", "* THREAD (4 5)(3)(2 1)|A286 OK"},
		{"A287 THREAD REFERENCES US-ASCII ALL", "* THREAD (4 5)(2 1 3)|A287 OK"},
		{"A288 UID THREAD REFERENCES UTF-8 NOT 1", "* THREAD (4 5)(3)(2)|A288 OK"},
		{"A289 THREAD ORDEREDSUBJECT UTF-8 TEXT nothing-matches", "* THREAD|A289 OK"},
		// ESORT (RFC 5267 §3): MIN and MAX are the first and last in sort order; ALL in that order.
		{"B1 SORT RETURN (MIN MAX COUNT) (DATE) UTF-8 ALL", `* ESEARCH (TAG "B1") MIN 4 MAX 5 COUNT 5|B1 OK`},
		{"B2 SORT RETURN () (REVERSE DATE) UTF-8 ALL", `* ESEARCH (TAG "B2") ALL 5,1:4|B2 OK`},
		{"B3 UID SORT RETURN (ALL) (SIZE) UTF-8 ALL", `* ESEARCH (TAG "B3") UID ALL 5,4,3,2,1|B3 OK`},
		{"B4 SORT RETURN (COUNT) (DATE) UTF-8 TEXT nothing-matches", `* ESEARCH (TAG "B4") COUNT 0|B4 OK`},
		// PARTIAL (RFC 5267 §4.4; negative ranges RFC 9394)
		{"B5 SORT RETURN (PARTIAL 2:3) (DATE) UTF-8 ALL", `* ESEARCH (TAG "B5") PARTIAL (2:3 3,2)|B5 OK`},
		{"B6 SEARCH RETURN (PARTIAL 4:2) ALL", `* ESEARCH (TAG "B6") PARTIAL (2:4 2:4)|B6 OK`},
		{"B7 SEARCH RETURN (PARTIAL 6:9) ALL", `* ESEARCH (TAG "B7") PARTIAL (6:9 NIL)|B7 OK`},
		{"B8 SEARCH RETURN (PARTIAL -1:-2) ALL", `* ESEARCH (TAG "B8") PARTIAL (-1:-2 4:5)|B8 OK`},
		{"B9 UID SEARCH RETURN (COUNT PARTIAL 1:2) NOT 1", `* ESEARCH (TAG "B9") UID COUNT 4 PARTIAL (1:2 2:3)|B9 OK`},
		// errors
		{"C1 SORT (FOO) UTF-8 ALL", "C1 BAD"},
		{"C2 SORT () UTF-8 ALL", "C2 BAD"},
		{"C3 SORT (DATE) KOI8-R ALL", "C3 NO [BADCHARSET"},
		{"C4 THREAD XYZ UTF-8 ALL", "C4 BAD"},
		{"C5 SEARCH RETURN (PARTIAL 1:*) ALL", "C5 BAD"},
		{"C6 SEARCH RETURN (PARTIAL 1) ALL", "C6 BAD"},
		{"C7 SORT RETURN (PARTIAL 0:1) (DATE) UTF-8 ALL", "C7 BAD"},
		{"C8 SORT (DATE) UTF-8", "C8 BAD"},
		{"C9 NOOP", "C9 OK"},
	}
	for _, c := range cases {
		got := strings.Join(exchange(c.cmd), "|")
		if !strings.HasPrefix(got, c.want) {
			t.Errorf("%s\n got: %s\nwant: %s", c.cmd, got, c.want)
		}
	}
	// SORT RETURN (SAVE): $ is the set of messages found.
	exchange("D1 SORT RETURN (SAVE) (DATE) UTF-8 SMALLER 1300")
	if got := strings.Join(exchange("D2 UID SEARCH $"), "|"); !strings.HasPrefix(got, "* SEARCH 4 5|") {
		t.Errorf("after SAVE: %s", got)
	}
}

func TestSortCapabilities(t *testing.T) {
	ts := newTestServer(t)
	c := ts.dial(nil)
	caps, err := c.Capability().Wait()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []imap.Cap{imap.CapSort, imap.CapSortDisplay, imap.CapESort, "THREAD=REFERENCES", "THREAD=ORDEREDSUBJECT"} {
		if !caps.Has(want) {
			t.Errorf("capability %s missing", want)
		}
	}
}

// rawExchange connects and returns a function that sends one command and returns the lines up to
// its tagged answer.
func rawExchange(t *testing.T, addr string) func(cmd string) []string {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	r := bufio.NewReader(conn)
	r.ReadString('\n')
	return func(cmd string) []string {
		t.Helper()
		tag, _, _ := strings.Cut(cmd, " ")
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conn, "%s\r\n", cmd)
		var lines []string
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("%s: %v", cmd, err)
			}
			l = strings.TrimRight(l, "\r\n")
			lines = append(lines, l)
			if strings.HasPrefix(l, tag+" ") {
				return lines
			}
		}
	}
}

// A reply chain deeper than maxThreadDepth is cut there rather than followed: no quadratic work.
func TestThreadDepthBound(t *testing.T) {
	n := maxThreadDepth + 10
	items := make([]*sortItem, n)
	var refs []string
	for i := range items {
		id := fmt.Sprintf("m%d", i)
		items[i] = &sortItem{seq: uint32(i + 1), uid: uint32(i + 1), sent: int64(i),
			keys: &msgKeys{msgID: id, refs: slices.Clone(refs[max(0, len(refs)-10):]), subject: "S"}}
		refs = append(refs, id)
	}
	threads := threadReferences(items, 0)
	depth := func(t imap.ThreadData) int { // the chain's length, as writeThread flattens it
		d := 0
		for {
			d += len(t.Chain)
			if len(t.SubThreads) != 1 {
				return d
			}
			t = t.SubThreads[0]
		}
	}
	if len(threads) != 1 || depth(threads[0]) > maxThreadDepth+1 {
		t.Errorf("%d threads, first %d deep", len(threads), depth(threads[0]))
	}
}
