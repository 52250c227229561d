package mimeparse

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

func TestEncodeBinaryParts(t *testing.T) {
	single := "From: a@b\r\nContent-Transfer-Encoding: binary\r\n\r\n\x00-\xe4\r\n\r\n"
	got, ok := EncodeBinaryParts([]byte(single))
	if !ok || bytes.IndexByte(got, 0) >= 0 || !bytes.Contains(got, []byte("Content-Transfer-Encoding: base64\r\n\r\nAC3kDQoNCg==\r\n")) {
		t.Fatalf("single part: %v %q", ok, got)
	}
	multi := "From: a@b\r\nContent-Type: multipart/mixed; boundary=X\r\n\r\npre\r\n--X\r\nContent-Type: text/plain\r\n\r\nhello\r\n--X\r\n" +
		"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: BINARY\r\n\r\nab\x00cd\r\n--X--\r\n"
	got, ok = EncodeBinaryParts([]byte(multi))
	if !ok || bytes.IndexByte(got, 0) >= 0 {
		t.Fatalf("multipart: %v %q", ok, got)
	}
	want := strings.Replace(multi, "Content-Transfer-Encoding: BINARY\r\n\r\nab\x00cd\r\n--X--", "Content-Transfer-Encoding: base64\r\n\r\nYWIAY2Q=\r\n--X--", 1)
	if string(got) != want {
		t.Fatalf("multipart:\n got %q\nwant %q", got, want)
	}
	// The part decodes to the bytes sent.
	root := ParseMessage(bytes.NewReader(got))
	p := root.Children[1]
	r, err := DecodeCTE(p.Header.Get("Content-Transfer-Encoding"), bytes.NewReader(got[p.BodyStart:p.End]))
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(r); string(b) != "ab\x00cd" {
		t.Errorf("decoded %q", b)
	}
	if _, ok := EncodeBinaryParts([]byte("From: a@b\r\n\r\nplain\r\n")); ok {
		t.Error("a message without binary parts was rewritten")
	}
}
