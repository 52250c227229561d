package imapd

import (
	"encoding/base64"
	"testing"

	"github.com/emersion/go-imap/v2"
	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/japanese"
	"golang.org/x/text/encoding/simplifiedchinese"
)

// SEARCH TEXT and SUBJECT find mail written in legacy charsets by their words in UTF-8, over a real
// connection.
func TestSearchLegacyCharsets(t *testing.T) {
	samples := []struct {
		charset       string
		enc           encoding.Encoding
		subject, body string
		subjectWord   string
		bodyWord      string
	}{
		{"iso-8859-2", charmap.ISO8859_2, "Zażółć gęślą", "Pchnąć w tę łódź jeża.", "gęślą", "ŁÓDŹ jeża"},
		{"koi8-r", charmap.KOI8R, "Съешь же ещё", "Этих мягких французских булок.", "ещё", "французских"},
		{"shift_jis", japanese.ShiftJIS, "会議の予定", "いろはにほへと ちりぬるを", "予定", "ちりぬるを"},
		{"gb2312", simplifiedchinese.GBK, "会议通知", "我们明天在会议室开会。", "通知", "会议室"},
	}
	ts := newTestServer(t)
	for _, s := range samples {
		subj, _ := s.enc.NewEncoder().String(s.subject)
		body, _ := s.enc.NewEncoder().String(s.body)
		ts.deliver("From: a@example.test\r\nSubject: =?" + s.charset + "?b?" + base64.StdEncoding.EncodeToString([]byte(subj)) + "?=\r\n" +
			"Content-Type: text/plain; charset=" + s.charset + "\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + body + "\r\n")
	}
	c := ts.dial(nil)
	mustSelect(t, c, "INBOX", true)
	for i, s := range samples {
		for _, crit := range []*imap.SearchCriteria{
			{Text: []string{s.bodyWord}},
			{Body: []string{s.bodyWord}},
			{Text: []string{s.subjectWord}},
			{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: s.subjectWord}}},
		} {
			d, err := c.UIDSearch(crit, nil).Wait()
			if err != nil {
				t.Fatalf("%s: %v", s.charset, err)
			}
			if got := d.AllUIDs(); len(got) != 1 || got[0] != imap.UID(i+1) {
				t.Errorf("%s: %+v found %v, want UID %d", s.charset, *crit, got, i+1)
			}
		}
	}
}
