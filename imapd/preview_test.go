package imapd

import (
	"strings"
	"testing"
)

// PREVIEW (RFC 8970): the first text part's start, white space collapsed, at most 200
// characters; HTML without its markup; PREVIEW (LAZY) as well; an empty one without text.
func TestPreview(t *testing.T) {
	ts := newTestServer(t)
	long := strings.Repeat("word ", 100)
	ts.deliver("From: a@example.test\r\nSubject: plain\r\n\r\nHello   there,\r\n\r\n  how are you?\r\n")
	ts.deliver("From: a@example.test\r\nSubject: html\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/html; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
		"<html><head><style>p {color: red}</style></head><body><p>Caf=E9 &amp; <b>cr=E8me</b></p></body></html>\r\n--b--\r\n")
	ts.deliver("From: a@example.test\r\nSubject: long\r\n\r\n" + long + "\r\n")
	ts.deliver("From: a@example.test\r\nSubject: none\r\nContent-Type: application/pdf\r\n\r\nxxx\r\n")
	ts.deliver("From: a@example.test\r\nSubject: attached\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=a.txt\r\n\r\nattached text\r\n" +
		"--b\r\nContent-Type: text/plain\r\n\r\nthe body\r\n--b--\r\n")
	r := ts.raw(true)
	if l := r.cmd("c CAPABILITY"); !strings.Contains(l[0], " PREVIEW") {
		t.Errorf("PREVIEW not advertised: %q", l[0])
	}
	r.cmd("s SELECT INBOX")
	l := r.cmd("f FETCH 1:5 (UID PREVIEW)")
	want := strings.Join([]string{
		`* 1 FETCH (UID 1 PREVIEW "Hello there, how are you?")`,
		"* 2 FETCH (UID 2 PREVIEW {14}\r\nCafé & crème)", // not ASCII: a literal without UTF8=ACCEPT
		`* 3 FETCH (UID 3 PREVIEW "` + strings.TrimSpace(long[:200]) + `")`,
		`* 4 FETCH (UID 4 PREVIEW "")`,
		`* 5 FETCH (UID 5 PREVIEW "the body")`,
		"f OK FETCH completed",
	}, "\r\n") + "\r\n"
	if got := strings.Join(l, ""); got != want {
		t.Errorf("FETCH PREVIEW:\n%s\nwant\n%s", got, want)
	}
	// RFC 8970 §4's example form: PREVIEW (LAZY), inside a list and as the only item.
	if l := r.cmd("g UID FETCH 1 (PREVIEW (LAZY) FLAGS)"); !strings.Contains(l[0], ` PREVIEW "Hello there, how are you?"`) || !strings.Contains(l[0], " FLAGS (") {
		t.Errorf("PREVIEW (LAZY): %q", l)
	}
	if l := r.cmd("h FETCH 1 PREVIEW"); !strings.HasPrefix(l[0], `* 1 FETCH (PREVIEW "Hello`) {
		t.Errorf("FETCH 1 PREVIEW: %q", l)
	}
	if l := r.cmd("i FETCH 1 (PREVIEW (FAST))"); !strings.HasPrefix(last(l), "i BAD") {
		t.Errorf("unknown modifier: %q", l)
	}
}
