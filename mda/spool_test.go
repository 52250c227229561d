package mda

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func spoolString(t *testing.T, in string, chunk int) (string, *spooled) {
	t.Helper()
	var r io.Reader = strings.NewReader(in)
	if chunk > 0 {
		r = iotest.OneByteReader(r)
	}
	s, err := spool(nil, r, t.TempDir(), make([]byte, spoolScratch))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	rd, err := s.reader()
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(rd)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(out)) != s.size {
		t.Fatalf("size %d, read %d bytes", s.size, len(out))
	}
	return string(out), s
}

func TestSpoolNormalisesLineEnds(t *testing.T) {
	cases := []struct{ in, want string }{
		{"a\r\nb\r\n", "a\r\nb\r\n"},
		{"a\nb\n", "a\r\nb\r\n"},
		{"a\rb\r", "a\r\nb\r\n"},
		{"a\r\n.\nb", "a\r\n.\r\nb\r\n"},
		{"no end", "no end\r\n"},
		{"", ""},
		{"\r\r\n\n", "\r\n\r\n\r\n"},
	}
	for _, c := range cases {
		for _, chunk := range []int{0, 1} {
			got, _ := spoolString(t, c.in, chunk)
			if got != c.want {
				t.Errorf("spool(%q, chunked=%d) = %q, want %q", c.in, chunk, got, c.want)
			}
		}
	}
}

func TestSpoolCountsReceivedOnlyInHeader(t *testing.T) {
	msg := "Received: a\r\nreceived: b\r\n\tfolded\r\nSubject: x\r\n\r\nReceived: in body\r\n"
	_, s := spoolString(t, msg, 1)
	if s.hops != 2 {
		t.Fatalf("hops = %d, want 2", s.hops)
	}
}

func TestSpoolLargeGoesToFile(t *testing.T) {
	big := strings.Repeat("0123456789abcdef\n", memLimit/16)
	got, s := spoolString(t, big, 0)
	if s.file == nil {
		t.Fatal("a message over memLimit stayed in memory")
	}
	if want := strings.ReplaceAll(big, "\n", "\r\n"); got != want {
		t.Fatalf("large message changed: len %d, want %d", len(got), len(want))
	}
	// Readable again for a second copy.
	rd, _ := s.reader()
	again, _ := io.ReadAll(rd)
	if !bytes.Equal(again, []byte(got)) {
		t.Fatal("second read differs")
	}
}

func FuzzSpool(f *testing.F) {
	for _, s := range []string{"a\nb", "a\r\n.\r\n", "\r", "Received: x\n\nbody", "x\r\r\n\n\r"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := spool(nil, strings.NewReader(in), t.TempDir(), make([]byte, spoolScratch))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		rd, _ := s.reader()
		out, _ := io.ReadAll(rd)
		for i, c := range out {
			if c == '\r' && (i+1 >= len(out) || out[i+1] != '\n') {
				t.Fatalf("bare CR at %d in %q", i, out)
			}
			if c == '\n' && (i == 0 || out[i-1] != '\r') {
				t.Fatalf("bare LF at %d in %q", i, out)
			}
		}
		strip := func(b []byte) []byte {
			return bytes.ReplaceAll(bytes.ReplaceAll(b, []byte("\r"), nil), []byte("\n"), nil)
		}
		if !bytes.Equal(strip(out), strip([]byte(in))) {
			t.Fatalf("content changed: %q → %q", in, out)
		}
	})
}
