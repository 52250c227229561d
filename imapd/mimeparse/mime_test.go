package mimeparse

import (
	"bytes"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sectionBytes(t testing.TB, msg []byte, sec *imap.FetchItemBodySection) []byte {
	t.Helper()
	root := ParseMessage(bytes.NewReader(msg))
	s := BodySection(root, sec)
	b, err := io.ReadAll(s.Reader(bytes.NewReader(msg)))
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) != s.N {
		t.Fatalf("span says %d bytes, reader gave %d", s.N, len(b))
	}
	return b
}

// The library's extractor re-serialises through go-message; on CRLF mail it must agree with our byte
// ranges, which makes it a good second opinion.
func TestBodySectionMatchesLibrary(t *testing.T) {
	sections := []*imap.FetchItemBodySection{
		{Specifier: imap.PartSpecifierHeader},
		{Specifier: imap.PartSpecifierText},
		{Part: []int{1}},
		{Part: []int{1, 1}},
		{Part: []int{1, 2}},
		{Part: []int{1, 1}, Specifier: imap.PartSpecifierMIME},
		{Part: []int{2}},
		{Part: []int{2}, Specifier: imap.PartSpecifierMIME},
		{Part: []int{3}},
		{Part: []int{3}, Specifier: imap.PartSpecifierHeader},
		{Part: []int{3}, Specifier: imap.PartSpecifierText},
		{Part: []int{3, 1}},
		{Part: []int{3, 2}},
		{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"subject", "FROM", "X-None"}},
		{Specifier: imap.PartSpecifierHeader, HeaderFieldsNot: []string{"subject", "from"}},
		{Part: []int{3}, Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Subject"}},
		{Specifier: imap.PartSpecifierText, Partial: &imap.SectionPartial{Offset: 5, Size: 10}},
		{Part: []int{2}, Partial: &imap.SectionPartial{Offset: 1000, Size: 10}},
	}
	for _, name := range []string{"simple.eml", "nested.eml"} {
		msg := readTestdata(t, name)
		for _, sec := range sections {
			if name == "simple.eml" && len(sec.Part) > 1 {
				continue // the library calls 1.1 of a single-part message part 1; RFC 3501 has no such part
			}
			want := imapserver.ExtractBodySection(bytes.NewReader(msg), sec)
			got := sectionBytes(t, msg, sec)
			if !bytes.Equal(got, want) {
				t.Errorf("%s %+v:\n got %q\nwant %q", name, sec, got, want)
			}
		}
	}
}

func TestSectionsByHand(t *testing.T) {
	msg := readTestdata(t, "nested.eml")
	cases := []struct {
		sec  imap.FetchItemBodySection
		want string
	}{
		{imap.FetchItemBodySection{Part: []int{1, 1}}, "Gr=FC=DFe aus M=FCnchen"},
		{imap.FetchItemBodySection{Part: []int{3, 1}}, "inner text part\r\nwith two lines"},
		{imap.FetchItemBodySection{Part: []int{3, 1}, Specifier: imap.PartSpecifierMIME}, "Content-Type: text/plain\r\n\r\n"},
		{imap.FetchItemBodySection{Part: []int{9}}, ""},
		{imap.FetchItemBodySection{Part: []int{1, 1, 1}}, ""},
	}
	for _, c := range cases {
		if got := string(sectionBytes(t, msg, &c.sec)); got != c.want {
			t.Errorf("%+v: got %q want %q", c.sec, got, c.want)
		}
	}
	simple := readTestdata(t, "simple.eml")
	body := string(sectionBytes(t, simple, &imap.FetchItemBodySection{Part: []int{1}}))
	if !strings.HasPrefix(body, "Hello Caf") || !strings.HasSuffix(body, "second line\r\n") {
		t.Errorf("BODY[1] of a single-part message = %q", body)
	}
}

func TestBodyStructure(t *testing.T) {
	msg := readTestdata(t, "nested.eml")
	root := ParseMessage(bytes.NewReader(msg))
	got := BodyStructure(root)
	want := imapserver.ExtractBodyStructure(bytes.NewReader(msg))
	// Same shape, types, sizes and line counts as the library's.
	var gotParts, wantParts []string
	walk := func(l *[]string) imap.BodyStructureWalkFunc {
		return func(path []int, bs imap.BodyStructure) bool {
			s := strings.ToLower(bs.MediaType())
			if sp, ok := bs.(*imap.BodyStructureSinglePart); ok {
				s += " " + string(rune('0'+sp.Size%10))
				if sp.Text != nil {
					s += " lines"
				}
			}
			*l = append(*l, s)
			return true
		}
	}
	got.Walk(walk(&gotParts))
	want.Walk(walk(&wantParts))
	if !reflect.DeepEqual(gotParts, wantParts) {
		t.Errorf("structure:\n got %v\nwant %v", gotParts, wantParts)
	}
	mp := got.(*imap.BodyStructureMultiPart)
	att := mp.Children[1].(*imap.BodyStructureSinglePart)
	if att.Size != 90 || att.Encoding != "base64" || att.Extended.Disposition.Value != "attachment" ||
		att.Extended.Disposition.Params["filename"] != "data.bin" {
		t.Errorf("attachment: %+v %+v", att, att.Extended.Disposition)
	}
	inner := mp.Children[2].(*imap.BodyStructureSinglePart)
	if inner.MessageRFC822 == nil || inner.MessageRFC822.Envelope.Subject != "inner message" {
		t.Fatalf("message/rfc822 part: %+v", inner)
	}
	alt := mp.Children[0].(*imap.BodyStructureMultiPart)
	txt := alt.Children[0].(*imap.BodyStructureSinglePart)
	if txt.Text.NumLines != 1 || txt.Params["charset"] != "iso-8859-1" {
		t.Errorf("text part: lines %d params %v", txt.Text.NumLines, txt.Params)
	}
	innerText := inner.MessageRFC822.BodyStructure.(*imap.BodyStructureMultiPart).Children[0].(*imap.BodyStructureSinglePart)
	if innerText.Text.NumLines != 2 || innerText.Size != uint32(len("inner text part\r\nwith two lines")) {
		t.Errorf("inner text: %d lines, %d bytes", innerText.Text.NumLines, innerText.Size)
	}
}

func TestEnvelope(t *testing.T) {
	raw, _ := ReadHeaderBlock(bytes.NewReader(readTestdata(t, "simple.eml")))
	env := Envelope(ParseHeader(raw))
	if env.Subject != "=?utf-8?q?Caf=C3=A9?= menu folded" {
		t.Errorf("subject %q", env.Subject)
	}
	if len(env.From) != 1 || env.From[0] != (imap.Address{Name: "Alice A.", Mailbox: "alice", Host: "example.test"}) {
		t.Errorf("from %+v", env.From)
	}
	if len(env.To) != 2 || env.To[1].Mailbox != "carol" || env.To[0].Name != "Bob" {
		t.Errorf("to %+v", env.To)
	}
	if len(env.Cc) != 2 || env.Cc[0].Mailbox != "undisclosed-recipients" || env.Cc[0].Host != "" || env.Cc[1] != (imap.Address{}) {
		t.Errorf("group %+v", env.Cc)
	}
	if env.MessageID != "m1@example.test" || !reflect.DeepEqual(env.InReplyTo, []string{"p1@example.test", "p2@example.test"}) {
		t.Errorf("ids %q %q", env.MessageID, env.InReplyTo)
	}
	if env.Date.IsZero() {
		t.Error("no date")
	}
}

func TestAddressEdgeCases(t *testing.T) {
	cases := map[string][]imap.Address{
		`"Doe, John" <john@x.test>`:        {{Name: "Doe, John", Mailbox: "john", Host: "x.test"}},
		`john@x.test (John Doe), b@y`:      {{Name: "John Doe", Mailbox: "john", Host: "x.test"}, {Mailbox: "b", Host: "y"}},
		`<u (c)@ (c) d.org>, u2@d (c) (d)`: {{Mailbox: "u", Host: "d.org"}, {Name: "c", Mailbox: "u2", Host: "d"}},
		`g2: (foo) ;, x <y@z>`:             {{Mailbox: "g2"}, {}, {Name: "x", Mailbox: "y", Host: "z"}},
		`A "B, C" D <x.y@[1.2.3.4]>`:       {{Name: "A B, C D", Mailbox: "x.y", Host: "[1.2.3.4]"}},
		`=?iso-8859-1?q?J=F6rg?= <j@x.de>`: {{Name: "Jörg", Mailbox: "j", Host: "x.de"}},
		`localonly`:                        {{Mailbox: "localonly", Host: "MISSING_DOMAIN"}},
		`team: a@x, b@x;, c@y`:             {{Mailbox: "team"}, {Mailbox: "a", Host: "x"}, {Mailbox: "b", Host: "x"}, {}, {Mailbox: "c", Host: "y"}},
		`<@route,@r2:user@host>`:           {{Route: "@route,@r2", Mailbox: "user", Host: "host"}},
		`<@route:user@host>, <@x>`:         {{Route: "@route", Mailbox: "user", Host: "host"}, {Host: "x"}},
		``:                                 nil,
	}
	for in, want := range cases {
		if got := parseAddresses(in); !reflect.DeepEqual(got, want) {
			t.Errorf("%q:\n got %+v\nwant %+v", in, got, want)
		}
	}
}

func TestCTEDecoding(t *testing.T) {
	cases := []struct{ enc, in, want string }{
		{"base64", "aGVs\r\nbG8=\r\n", "hello"},
		{"base64", "aGVsbG8", "hell" + "o"[:0] + "o"},
		{"BASE64", "aG!!Vs bG8=aGk=", "hellohi"},
		{"quoted-printable", "a=3Db=\r\nc  \r\nd=zz=4\r\n", "a=bc\r\nd=zz=4\r\n"},
		{"quoted-printable", "caf=C3=A9=\n", "café"},
		{"7bit", "as is\r\n", "as is\r\n"},
	}
	for _, c := range cases {
		r, err := DecodeCTE(c.enc, strings.NewReader(c.in))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(r)
		if string(got) != c.want {
			t.Errorf("%s %q: got %q want %q", c.enc, c.in, got, c.want)
		}
	}
	if _, err := DecodeCTE("x-uuencode", strings.NewReader("")); err != ErrUnknownCTE {
		t.Errorf("unknown CTE: %v", err)
	}
}

func TestBinarySection(t *testing.T) {
	msg := readTestdata(t, "nested.eml")
	root := ParseMessage(bytes.NewReader(msg))
	enc, s := BinarySection(root, []int{2})
	r, err := DecodeCTE(enc, s.Reader(bytes.NewReader(msg)))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(r)
	if len(got) != 66 || got[0] != 0 || got[65] != 0x41 {
		t.Errorf("binary part 2: %d bytes %x", len(got), got)
	}
	enc, s = BinarySection(root, []int{1, 1})
	r, _ = DecodeCTE(enc, s.Reader(bytes.NewReader(msg)))
	got, _ = io.ReadAll(r)
	if string(got) != "Gr\xfc\xdfe aus M\xfcnchen" { // BINARY never converts charsets
		t.Errorf("binary 1.1 = %q", got)
	}
	n, err := DecodedSize(bytes.NewReader(msg), enc, s)
	if err != nil || n != int64(len(got)) {
		t.Errorf("decoded size %d %v", n, err)
	}
}

func TestBareLFMessage(t *testing.T) {
	msg := []byte("Subject: x\nContent-Type: multipart/mixed; boundary=b\n\n--b\n\none\n--b\nContent-Type: text/html\n\n<b>two</b>\n--b--\n")
	root := ParseMessage(bytes.NewReader(msg))
	if len(root.Children) != 2 {
		t.Fatalf("children %d", len(root.Children))
	}
	if got := string(msg[root.Children[0].BodyStart:root.Children[0].End]); got != "one" {
		t.Errorf("part 1 %q", got)
	}
	if got := string(msg[root.Children[1].BodyStart:root.Children[1].End]); got != "<b>two</b>" {
		t.Errorf("part 2 %q", got)
	}
}
