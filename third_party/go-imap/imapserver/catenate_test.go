package imapserver

import (
	"testing"

	"github.com/emersion/go-imap/v2"
)

func TestParseCatenateURL(t *testing.T) {
	u, err := ParseCatenateURL("/Drafts;UIDVALIDITY=385759045/;UID=20/;section=HEADER.FIELDS%20(Subject%20From)/;partial=10.20")
	if err != nil {
		t.Fatal(err)
	}
	if u.Mailbox != "Drafts" || u.UIDValidity != 385759045 || u.UID != 20 || u.Section.Specifier != imap.PartSpecifierHeader ||
		len(u.Section.HeaderFields) != 2 || u.Section.Partial == nil || *u.Section.Partial != (imap.SectionPartial{Offset: 10, Size: 20}) {
		t.Errorf("%+v", u)
	}
	u, err = ParseCatenateURL("imap://joe@example.com/INBOX/;uid=3/;section=1.2.MIME")
	if err != nil || u.Mailbox != "INBOX" || u.UID != 3 || len(u.Section.Part) != 2 || u.Section.Specifier != imap.PartSpecifierMIME {
		t.Errorf("%+v %v", u, err)
	}
	for _, bad := range []string{"", "/", "/INBOX", "/INBOX/;UID=0", "/INBOX/;UID=x", "/INBOX;UIDVALIDITY=0/;UID=1",
		"/INBOX/;SECTION=1/;UID=1", "/INBOX/;UID=1/;SECTION=BOGUS", "/INBOX/;UID=1/;SECTION=HEADER.FIELDS%20%7B3%7D%0D%0Aabc",
		"/INBOX/;UID=1/;PARTIAL=1.0", "/INBOX/;UID=1/;URLAUTH=x", "imap://host", "http://x/INBOX/;UID=1"} {
		if u, err := ParseCatenateURL(bad); err == nil {
			t.Errorf("%q parsed: %+v", bad, u)
		}
	}
}

func FuzzParseCatenateURL(f *testing.F) {
	f.Add("/Drafts;UIDVALIDITY=385759045/;UID=20/;section=HEADER.FIELDS%20(Subject)/;partial=10.20")
	f.Add("/INBOX/;uid=3/;section=1.2.MIME")
	f.Fuzz(func(t *testing.T, s string) {
		ParseCatenateURL(s)
	})
}
