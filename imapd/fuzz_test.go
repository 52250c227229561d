package imapd

import (
	"bytes"
	"io"
	"math"
	"os"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

func addMessageSeeds(f *testing.F) {
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
func checkPart(t *testing.T, p *part, lo, hi int64) {
	t.Helper()
	if !(lo <= p.hdrStart && p.hdrStart <= p.bodyStart && p.bodyStart <= p.end && p.end <= hi) {
		t.Fatalf("bad offsets %d %d %d outside [%d,%d]", p.hdrStart, p.bodyStart, p.end, lo, hi)
	}
	if p.lines < 0 {
		t.Fatalf("negative lines")
	}
	prev := p.bodyStart
	for _, c := range p.children {
		checkPart(t, c, prev, p.end)
		prev = c.end
	}
	if p.msg != nil {
		checkPart(t, p.msg, p.bodyStart, p.end)
	}
}

func FuzzParseAndSections(f *testing.F) {
	addMessageSeeds(f)
	paths := [][]int{nil, {1}, {2}, {1, 1}, {1, 2}, {2, 1}, {3, 1, 2}, {0}}
	specs := []imap.PartSpecifier{imap.PartSpecifierNone, imap.PartSpecifierHeader, imap.PartSpecifierText, imap.PartSpecifierMIME}
	f.Fuzz(func(t *testing.T, msg []byte) {
		root := parseMessage(bytes.NewReader(msg))
		checkPart(t, root, 0, int64(len(msg)))
		if root.end != int64(len(msg)) {
			t.Fatalf("root ends at %d of %d", root.end, len(msg))
		}
		bodyStructure(root)
		buildEnvelope(root.header)
		partials := []imap.SectionPartial{{Offset: 3, Size: 7}, {Offset: 1, Size: math.MaxInt64},
			{Offset: math.MaxInt64, Size: math.MaxInt64}, {Offset: int64(len(msg)) / 2, Size: 1}}
		for _, path := range paths {
			for _, spec := range specs {
				for _, p := range partials {
					sec := &imap.FetchItemBodySection{Part: path, Specifier: spec, Partial: &p}
					s := bodySection(root, sec)
					b, err := io.ReadAll(s.reader(bytes.NewReader(msg)))
					if err != nil || int64(len(b)) != s.n || s.n > int64(len(msg)) {
						t.Fatalf("section %v %s %v: %d bytes, span %d, %v", path, spec, p, len(b), s.n, err)
					}
				}
			}
			s := bodySection(root, &imap.FetchItemBodySection{Part: path, Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Subject", "to"}})
			if !bytes.HasSuffix(s.data, []byte("\r\n")) && s.ok {
				t.Fatalf("HEADER.FIELDS without the blank line: %q", s.data)
			}
			enc, bs := binarySection(root, path)
			if _, err := decodedSize(bytes.NewReader(msg), enc, bs); err != nil && err != errUnknownCTE {
				t.Fatal(err)
			}
		}
		// The header read alone agrees with the full parse.
		raw, bodyStart := readHeaderBlock(bytes.NewReader(msg))
		if len(root.header) > 0 && bodyStart != root.bodyStart {
			t.Fatalf("header-only body start %d, parse %d", bodyStart, root.bodyStart)
		}
		if !bytes.Equal(cachedBytes(parseHeader(raw)), cachedBytes(root.header)) {
			t.Fatal("header-only and full parse disagree on fields")
		}
		// The cache's fast filter gives the bytes the field list gives.
		for _, names := range [][]string{{"subject", "FROM"}, {"to", "cc", "x-none"}, {"content-type"}} {
			for _, src := range []string{cachedSubset(root.header), string(raw)} {
				if a, b := filterRaw(src, names), filterHeader(parseHeader([]byte(src)), names, false); !bytes.Equal(a, b) {
					t.Fatalf("filterRaw %q:\n%q\n%q", src, a, b)
				}
			}
		}
	})
}

func cachedBytes(h header) []byte { return []byte(cachedSubset(h)) }

func FuzzCTE(f *testing.F) {
	f.Add("base64", []byte("aGVsbG8=\r\nd29y bGQ"))
	f.Add("quoted-printable", []byte("a=3D=\r\nb  \r\n=zz=4"))
	f.Add("quoted-printable", bytes.Repeat([]byte("x"), 70000))
	f.Fuzz(func(t *testing.T, enc string, in []byte) {
		r, err := decodeCTE(enc, bytes.NewReader(in))
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
		r, _ = decodeCTE(enc, &oneByteReader{in})
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

func FuzzSearchText(f *testing.F) {
	addMessageSeeds(f)
	f.Fuzz(func(t *testing.T, msg []byte) {
		src := memSource(map[uint32][]byte{1: msg}, nil, nil)
		m := &message{src: src, seq: 1, uid: 1, size: int64(len(msg))}
		c := &imap.SearchCriteria{
			Or: [][2]imap.SearchCriteria{{
				{Text: []string{"é"}, Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "x"}}},
				{Body: []string{"ab"}, SentSince: mustDay("1-Jan-2000")},
			}},
		}
		p := compileSearch(c, &numContext{maxSeq: 1, maxUID: 1}, testFlags)
		if _, err := p.matches(m); err != nil {
			t.Fatal(err)
		}
		// A needle taken from the message text itself is always found by TEXT.
		if len(msg) > 8 && bytes.IndexByte(msg[:8], '\n') < 0 && bytes.IndexByte(msg[:8], '\r') < 0 && isPlainASCII(msg[:8]) {
			m.close()
			hdrless := append([]byte("\r\n"), msg...)
			src2 := memSource(map[uint32][]byte{1: hdrless}, nil, nil)
			m2 := &message{src: src2, seq: 1, uid: 1}
			p2 := compileSearch(&imap.SearchCriteria{Text: []string{string(msg[:8])}}, &numContext{}, testFlags)
			ok, err := p2.matches(m2)
			if err != nil || !ok && !bytes.Contains(msg, []byte("\n--")) {
				t.Fatalf("TEXT %q not found in %q (%v)", msg[:8], hdrless, err)
			}
		}
	})
}

func isPlainASCII(b []byte) bool {
	for _, c := range b {
		if c < ' ' || c > '~' || c == '=' {
			return false
		}
	}
	return true
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

// Our LIST matcher agrees with go-imap's (which is exponential in the worst case, hence ours).
func FuzzListMatch(f *testing.F) {
	f.Add("Projects/2026/Q4", "", "Projects/%")
	f.Add("a/b", "a", "*")
	f.Add("INBOX/x", "inbox/", "%")
	f.Fuzz(func(t *testing.T, name, ref, pattern string) {
		if len(name) > 24 || len(pattern) > 12 || len(ref) > 8 {
			return
		}
		want := imapserver.MatchList(name, delim, inboxCase(ref), inboxCase(pattern))
		if got := matchMailbox(name, ref, pattern); got != want {
			t.Fatalf("name %q ref %q pattern %q: got %v, MatchList %v", name, ref, pattern, got, want)
		}
	})
}
