package imapd

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
)

func countIn(t *testing.T, ts *testServer, box string) uint32 {
	t.Helper()
	st, err := ts.dial(nil).Status(box, &imap.StatusOptions{NumMessages: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	return *st.NumMessages
}

// MULTIAPPEND (RFC 3502): the RFC's example, APPENDUID with a set, and all or none.
func TestMultiAppend(t *testing.T) {
	ts := newTestServer(t, func(o *Options) { o.AppendLimit = 1000 })
	r := ts.raw(true)
	if l := r.cmd("c CAPABILITY"); !strings.Contains(l[0], " MULTIAPPEND") || !strings.Contains(l[0], " CATENATE") {
		t.Errorf("not advertised: %q", l[0])
	}
	m1 := "Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\nFrom: Fred Foobar <foobar@Blurdybloop.example.COM>\r\nSubject: afternoon meeting\r\n\r\nHello Joe, do you think we can meet at 3:30 tomorrow?\r\n"
	m2 := "Date: Mon, 7 Feb 1994 22:43:04 -0800 (PST)\r\nFrom: Joe Mooch <mooch@OWATAGU.example.net>\r\nSubject: Re: afternoon meeting\r\n\r\n3:30 is fine with me.\r\n"
	// As in RFC 3502 §6: the second message starts on the line that ends the first literal.
	r.send("A003 APPEND Sent (\\Seen) {" + itoa(len(m1)) + "}\r\n")
	if l := r.line(); !strings.HasPrefix(l, "+ ") {
		t.Fatalf("first literal: %q", l)
	}
	r.send(m1 + " (\\Seen) \" 1-Jul-2002 22:35:00 +0200\" {" + itoa(len(m2)) + "}\r\n")
	if l := r.line(); !strings.HasPrefix(l, "+ ") {
		t.Fatalf("second literal: %q", l)
	}
	r.send(m2 + "\r\n")
	ok := r.answer("", "A003")
	if !strings.HasPrefix(ok, "A003 OK [APPENDUID ") || !strings.Contains(ok, " 1:2]") {
		t.Errorf("MULTIAPPEND: %q", ok)
	}
	c := ts.dial(nil)
	mustSelect(t, c, "Sent", true)
	msgs := fetchAll(t, c, imap.SeqSetNum(1, 2), &imap.FetchOptions{Flags: true, InternalDate: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
	if len(msgs) != 2 || string(msgs[0].BodySection[0].Bytes) != m1 || string(msgs[1].BodySection[0].Bytes) != m2 ||
		!hasFlag(msgs[1].Flags, imap.FlagSeen) || msgs[1].InternalDate.UTC().Format("2006-01-02 15:04") != "2002-07-01 20:35" {
		t.Errorf("appended: %+v", msgs)
	}

	// RFC 3502 §6: a mailbox that does not exist is refused before the first literal is sent.
	if l := r.answer("A004 APPEND bogusname (\\Flagged) {1699}\r\n", "A004"); !strings.HasPrefix(l, "A004 NO [TRYCREATE]") {
		t.Errorf("into a missing mailbox: %q", l)
	}
	// All or none: a second message over the limit, a bad flag in the third, a client that gives
	// up halfway (a bad second literal), or the quota met by the second one.
	for name, raw := range map[string]string{
		"too big":  "A5 APPEND Sent {3+}\r\nabc {2000+}\r\n" + strings.Repeat("A6 NOOP\r\n", 222) + "xx\r\n", // LITERAL+: sent, dropped
		"bad flag": "A5 APPEND Sent {3+}\r\nabc {3+}\r\nabc (\\Bogus) {3+}\r\nabc\r\n",
		"syntax":   "A5 APPEND Sent {3+}\r\nabc {x}\r\n",
	} {
		if l := r.answer(raw, "A5"); !strings.HasPrefix(l, "A5 NO") && !strings.HasPrefix(l, "A5 BAD") {
			t.Errorf("%s: %q", name, l)
		}
		if n := countIn(t, ts, "Sent"); n != 2 {
			t.Errorf("%s: %d messages in Sent, want the 2 from before", name, n)
		}
	}
	if l := r.cmd("A6 NOOP"); !strings.HasPrefix(last(l), "A6 OK") {
		t.Errorf("after the refusals: %q", l)
	}
}

// A MULTIAPPEND that the quota stops at the second message leaves nothing behind.
func TestMultiAppendQuotaAllOrNone(t *testing.T) {
	qa := &quotaAuth{quota: 1500}
	ts := newTestServer(t, func(o *Options) { qa.fakeAuth = o.Auth.(*fakeAuth); o.Auth = qa })
	r := ts.raw(true)
	body := strings.Repeat("y", 1000)
	l := r.answer("Q APPEND INBOX {1000+}\r\n"+body+" {1000+}\r\n"+body+"\r\n", "Q")
	if !strings.HasPrefix(l, "Q NO [OVERQUOTA]") {
		t.Errorf("over quota: %q", l)
	}
	if n := countIn(t, ts, "INBOX"); n != 0 {
		t.Errorf("%d messages left by a refused MULTIAPPEND", n)
	}
	if used, _, _ := ts.user().Usage(); used != 0 {
		t.Errorf("usage %d after the refusal", used)
	}
}

// CATENATE (RFC 4469): the RFC's example of a forwarded draft built from parts of another
// message, URL forms, BADURL, and a CATENATE in a MULTIAPPEND.
func TestCatenate(t *testing.T) {
	ts := newTestServer(t)
	draft := "From: Fred <fred@example.test>\r\nSubject: draft\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n" +
		"--b1\r\nContent-Type: text/plain\r\n\r\nThe first part.\r\n--b1\r\nContent-Type: application/octet-stream\r\n\r\nQUJD\r\n--b1--\r\n"
	r := ts.raw(true)
	r.cmd("s SELECT Drafts")
	ok := r.answer("a APPEND Drafts (\\Draft) {"+itoa(len(draft))+"+}\r\n"+draft+"\r\n", "a")
	var validity, uid string
	if f := strings.Fields(ok); len(f) > 4 && f[2] == "[APPENDUID" {
		validity, uid = f[3], strings.TrimSuffix(f[4], "]")
	} else {
		t.Fatalf("APPEND: %q", ok)
	}
	hdr := "From: Fred <fred@example.test>\r\nSubject: draft\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
	sep := "--b1\r\n"
	url := "/Drafts;UIDVALIDITY=" + validity + "/;UID=" + uid
	// As RFC 4469 §6: the header, a new text part, then a part of the old message with its MIME
	// header, each URL written as the RFC does.
	text := "--b1\r\nContent-Type: text/plain\r\n\r\nNew text.\r\n"
	raw := "A003 APPEND Drafts (\\Seen \\Draft $MDNSent) CATENATE (URL \"" + url + "/;section=HEADER\" TEXT {" + itoa(len(text)) + "+}\r\n" + text +
		" URL \"" + url + "/;section=2.MIME\" URL \"" + url + "/;section=2\" TEXT {10+}\r\n\r\n--b1--\r\n)\r\n"
	if l := r.answer(raw, "A003"); !strings.HasPrefix(l, "A003 OK [APPENDUID "+validity+" ") {
		t.Fatalf("CATENATE: %q", l)
	}
	want := hdr + text + "Content-Type: application/octet-stream\r\n\r\n" + "QUJD" + "\r\n--b1--\r\n"
	_ = sep
	r.cmd("n NOOP")
	l := r.cmd("f FETCH 2 BODY.PEEK[]")
	got := strings.Join(l[1:len(l)-1], "")
	if !strings.Contains(got, want) {
		t.Errorf("catenated message:\n%q\nwant\n%q", got, want)
	}

	// Other URL forms: imap://, a partial range past the end (empty), the whole message, TEXT.
	for _, u := range []string{"imap://fred@mail.example.test" + url + "/;section=TEXT", "/Drafts/;UID=" + uid + "/;PARTIAL=100000.1", "/Drafts/;uid=" + uid} {
		if l := r.answer("b APPEND Drafts CATENATE (URL \""+u+"\" TEXT {2+}\r\nxx)\r\n", "b"); !strings.HasPrefix(l, "b OK") {
			t.Errorf("URL %s: %q", u, l)
		}
	}
	// Bad URLs: NO [BADURL "url"], and nothing appended.
	for _, u := range []string{"/Drafts;UIDVALIDITY=1/;UID=" + uid, "/Drafts/;UID=999", "/Nosuch/;UID=1", "/Drafts", "/Drafts/;UID=1/;section=BOGUS", "http://x/y"} {
		l := r.answer("c APPEND Drafts CATENATE (TEXT {2+}\r\nxx URL \""+u+"\" TEXT {2+}\r\nyy)\r\n", "c")
		if !strings.HasPrefix(l, "c NO [BADURL \""+u+"\"]") {
			t.Errorf("URL %s: %q", u, l)
		}
	}
	if n := countIn(t, ts, "Drafts"); n != 5 {
		t.Errorf("%d messages in Drafts, want 5", n)
	}
	// CATENATE with MULTIAPPEND, and an ordinary literal after it.
	if l := r.answer("d APPEND Drafts CATENATE (URL \""+url+"\") (\\Answered) {4+}\r\nnew\n\r\n", "d"); !strings.HasPrefix(l, "d OK [APPENDUID "+validity+" 6:7]") {
		t.Errorf("CATENATE then a literal: %q", l)
	}
}

// Messages over stageInMemory are staged in a file of the account's tmp/, removed afterwards.
func TestMultiAppendStagedInFiles(t *testing.T) {
	ts := newTestServer(t)
	r := ts.raw(true)
	big := "Subject: big\r\n\r\n" + strings.Repeat("0123456789abcdef\r\n", stageInMemory/18+100)
	l := r.answer("B APPEND INBOX {"+itoa(len(big))+"+}\r\n"+big+" {"+itoa(len(big))+"+}\r\n"+big+"\r\n", "B")
	if !strings.HasPrefix(l, "B OK [APPENDUID ") {
		t.Fatalf("MULTIAPPEND of big messages: %q", l)
	}
	c := ts.dial(nil)
	mustSelect(t, c, "INBOX", true)
	msgs := fetchAll(t, c, imap.SeqSetNum(1, 2), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
	if len(msgs) != 2 || string(msgs[0].BodySection[0].Bytes) != big || string(msgs[1].BodySection[0].Bytes) != big {
		t.Errorf("big messages differ (%d)", len(msgs))
	}
	left, _ := filepath.Glob(filepath.Join(ts.user().Dir(), "tmp", "append-*"))
	if len(left) != 0 {
		t.Errorf("staging files left: %v", left)
	}
}
