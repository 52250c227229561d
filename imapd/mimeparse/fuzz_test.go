package mimeparse

import (
	"bytes"
	"io"
	"math"
	"os"
	"testing"

	"github.com/emersion/go-imap/v2"
)

func messageSeeds(f *testing.F) {
	for _, name := range []string{"simple.eml", "nested.eml"} {
		b, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\nContent-Type: multipart/mixed; boundary=a\r\n\r\n--a--\r\n--a"))
	f.Add([]byte("Content-Type: message/rfc822\n\nContent-Type: message/rfc822\n\n"))
	f.Add([]byte("no header at all"))
	f.Add([]byte(""))
}

// checkPart verifies the offsets of a parsed part against the message length.
func checkPart(t *testing.T, p *Part, lo, hi int64) {
	t.Helper()
	if !(lo <= p.HdrStart && p.HdrStart <= p.BodyStart && p.BodyStart <= p.End && p.End <= hi) {
		t.Fatalf("bad offsets %d %d %d outside [%d,%d]", p.HdrStart, p.BodyStart, p.End, lo, hi)
	}
	if p.Lines < 0 {
		t.Fatalf("negative lines")
	}
	prev := p.BodyStart
	for _, c := range p.Children {
		checkPart(t, c, prev, p.End)
		prev = c.End
	}
	if p.Msg != nil {
		checkPart(t, p.Msg, p.BodyStart, p.End)
	}
}

func FuzzParseAndSections(f *testing.F) {
	messageSeeds(f)
	paths := [][]int{nil, {1}, {2}, {1, 1}, {1, 2}, {2, 1}, {3, 1, 2}, {0}}
	specs := []imap.PartSpecifier{imap.PartSpecifierNone, imap.PartSpecifierHeader, imap.PartSpecifierText, imap.PartSpecifierMIME}
	f.Fuzz(func(t *testing.T, msg []byte) {
		root := ParseMessage(bytes.NewReader(msg))
		checkPart(t, root, 0, int64(len(msg)))
		if root.End != int64(len(msg)) {
			t.Fatalf("root ends at %d of %d", root.End, len(msg))
		}
		BodyStructure(root)
		Envelope(root.Header)
		partials := []imap.SectionPartial{{Offset: 3, Size: 7}, {Offset: 1, Size: math.MaxInt64},
			{Offset: math.MaxInt64, Size: math.MaxInt64}, {Offset: int64(len(msg)) / 2, Size: 1}}
		for _, path := range paths {
			for _, spec := range specs {
				for _, p := range partials {
					sec := &imap.FetchItemBodySection{Part: path, Specifier: spec, Partial: &p}
					s := BodySection(root, sec)
					b, err := io.ReadAll(s.Reader(bytes.NewReader(msg)))
					if err != nil || int64(len(b)) != s.N || s.N > int64(len(msg)) {
						t.Fatalf("section %v %s %v: %d bytes, span %d, %v", path, spec, p, len(b), s.N, err)
					}
				}
			}
			s := BodySection(root, &imap.FetchItemBodySection{Part: path, Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Subject", "to"}})
			if !bytes.HasSuffix(s.Data, []byte("\r\n")) && s.OK {
				t.Fatalf("HEADER.FIELDS without the blank line: %q", s.Data)
			}
			enc, bs := BinarySection(root, path)
			if _, err := DecodedSize(bytes.NewReader(msg), enc, bs); err != nil && err != ErrUnknownCTE {
				t.Fatal(err)
			}
		}
		// The header read alone agrees with the full parse.
		raw, bodyStart := ReadHeaderBlock(bytes.NewReader(msg))
		if len(root.Header) > 0 && bodyStart != root.BodyStart {
			t.Fatalf("header-only body start %d, parse %d", bodyStart, root.BodyStart)
		}
		if !bytes.Equal(rawFields(ParseHeader(raw)), rawFields(root.Header)) {
			t.Fatal("header-only and full parse disagree on fields")
		}
		// The cache's fast filter gives the bytes the field list gives.
		for _, names := range [][]string{{"subject", "FROM"}, {"to", "cc", "x-none"}, {"content-type"}} {
			for _, src := range []string{string(someFields(root.Header)), string(raw)} {
				if a, b := FilterRaw(src, names), FilterHeader(ParseHeader([]byte(src)), names, false); !bytes.Equal(a, b) {
					t.Fatalf("filterRaw %q:\n%q\n%q", src, a, b)
				}
			}
		}
	})
}

// rawFields is the header's fields, as they are in the file.
func rawFields(h Header) []byte {
	var b []byte
	for _, f := range h {
		b = append(b, f.Raw...)
	}
	return b
}

// someFields is a few fields of h, raw, as a header cache would keep them.
func someFields(h Header) []byte {
	var b []byte
	for _, f := range h {
		if nameIn(f.Name, []string{"subject", "from", "to", "content-type"}) {
			b = append(b, f.Raw...)
		}
	}
	return b
}

func FuzzCTE(f *testing.F) {
	f.Add("base64", []byte("aGVsbG8=\r\nd29y bGQ"))
	f.Add("quoted-printable", []byte("a=3D=\r\nb  \r\n=zz=4"))
	f.Add("quoted-printable", bytes.Repeat([]byte("x"), 70000))
	f.Fuzz(func(t *testing.T, enc string, in []byte) {
		r, err := DecodeCTE(enc, bytes.NewReader(in))
		if err != nil {
			return
		}
		out, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		if enc == "base64" && len(out) > len(in) {
			t.Fatalf("base64 grew: %d > %d", len(out), len(in))
		}
		if enc == "quoted-printable" && len(out) > len(in) {
			t.Fatalf("qp grew: %d > %d", len(out), len(in))
		}
		// One byte at a time gives the same result.
		r, _ = DecodeCTE(enc, &oneByteReader{in})
		slow, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("one byte at a time: %v", err)
		}
		if !bytes.Equal(out, slow) {
			t.Fatalf("%s: chunking changed the result: %q vs %q", enc, out, slow)
		}
	})
}

type oneByteReader struct{ b []byte }

func (r *oneByteReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	p[0] = r.b[0]
	r.b = r.b[1:]
	return 1, nil
}

func FuzzAddresses(f *testing.F) {
	f.Add(`"a, b" <a@b>, group: c@d, e;, (x) f@g`)
	f.Add(`=?utf-8?b?w6k=?= <x@y>`)
	f.Fuzz(func(t *testing.T, v string) {
		for _, a := range parseAddresses(v) {
			if bytes.ContainsAny([]byte(a.Name+a.Mailbox+a.Host), "\r\n\x00") {
				t.Fatalf("unclean address %+v", a)
			}
		}
		msgIDs(v)
	})
}
