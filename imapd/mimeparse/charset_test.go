package mimeparse

import (
	"bytes"
	"encoding/base64"
	"testing"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/japanese"
	"golang.org/x/text/encoding/simplifiedchinese"
)

// charsetSample is a text in a legacy charset, with words to find by their UTF-8 spelling.
type charsetSample struct {
	charset string
	enc     encoding.Encoding
	subject string // goes into an RFC 2047 encoded word
	body    string
	words   []string // in the subject or the body
}

var charsetSamples = []charsetSample{
	{"ISO-8859-2", charmap.ISO8859_2, "Zażółć gęślą", "Pchnąć w tę łódź jeża lub ośm skrzyń fig.", []string{"GĘŚLĄ", "łódź jeża", "skrzyń"}},
	{"KOI8-R", charmap.KOI8R, "Съешь же ещё", "Этих мягких французских булок, да выпей чаю.", []string{"ЕЩЁ", "французских булок"}},
	{"Shift_JIS", japanese.ShiftJIS, "会議の予定", "いろはにほへと ちりぬるを わかよたれそ つねならむ", []string{"予定", "ちりぬるを"}},
	// GBK encodes GB2312's characters as GB2312 does.
	{"GB2312", simplifiedchinese.GBK, "会议通知", "我们明天下午三点在会议室开会。", []string{"通知", "会议室开会"}},
}

// sampleMessage writes s as a MIME message: the subject as a base64 encoded word, the body as 8bit
// text in the charset.
func sampleMessage(t *testing.T, s charsetSample) []byte {
	t.Helper()
	subj, err := s.enc.NewEncoder().String(s.subject)
	if err != nil {
		t.Fatal(err)
	}
	body, err := s.enc.NewEncoder().String(s.body)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	b.WriteString("From: a@example.test\r\nSubject: =?" + s.charset + "?B?" + base64.StdEncoding.EncodeToString([]byte(subj)) + "?=\r\n")
	b.WriteString("Content-Type: text/plain; charset=\"" + s.charset + "\"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	b.WriteString(body + "\r\n")
	return b.Bytes()
}

// SEARCH finds words of texts in legacy charsets, in the body and in encoded words of the header,
// however the text is cut into reads.
func TestFindTextCharsets(t *testing.T) {
	for _, s := range charsetSamples {
		msg := sampleMessage(t, s)
		root := ParseMessage(bytes.NewReader(msg))
		var needles []Needle
		for _, w := range s.words {
			needles = append(needles, Needle{Folded: Fold([]byte(w)), WithHeader: true})
		}
		needles = append(needles, Needle{Folded: Fold([]byte("absent"))})
		found, err := FindText(bytes.NewReader(msg), root, needles)
		if err != nil {
			t.Fatal(err)
		}
		for i, w := range s.words {
			if !found[i] {
				t.Errorf("%s: %q not found", s.charset, w)
			}
		}
		if found[len(s.words)] {
			t.Errorf("%s: found what is not there", s.charset)
		}
		if got := DecodeHeader(root.Header.Get("Subject")); got != s.subject {
			t.Errorf("%s: subject %q, want %q", s.charset, got, s.subject)
		}
	}
}

// An unknown charset is searched as it is: ASCII words still match.
func TestFindTextUnknownCharset(t *testing.T) {
	msg := []byte("Content-Type: text/plain; charset=x-unknown\r\n\r\nplain words \xff\xfe here\r\n")
	found, err := FindText(bytes.NewReader(msg), ParseMessage(bytes.NewReader(msg)), []Needle{{Folded: Fold([]byte("words"))}})
	if err != nil || !found[0] {
		t.Errorf("found %v, %v", found, err)
	}
}
