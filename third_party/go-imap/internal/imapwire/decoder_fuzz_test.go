package imapwire

import (
	"bufio"
	"bytes"
	"errors"
	"strings"
	"testing"
)

// FuzzServerDecoder reads arbitrary client input command by command as the server does (values,
// then DiscardLine after whatever error), with small literals refused: it must never panic, and
// always end. A command after a refused one is read from its own start.
func FuzzServerDecoder(f *testing.F) {
	f.Add([]byte("t CREATE {5000+}\r\nxx {1+}\r\nz\r\nn NOOP\r\n"))
	f.Add([]byte("t CREATE {5000}\r\nn NOOP\r\n"))
	f.Add([]byte("t SEARCH ((((ALL)))) {3+}\r\nabc\r\nn NOOP\r\n"))
	f.Add([]byte("t LIST \"\" \"a\\\"b\" ~{2+}\r\nab\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		br := bufio.NewReader(bytes.NewReader(in))
		for i := 0; i <= len(in); i++ {
			dec := NewDecoder(br, ConnSideServer)
			dec.MaxSize = 64
			dec.CheckBufferedLiteralFunc = func(size int64, nonSync bool) error {
				if size > 4 {
					return errors.New("too big")
				}
				return nil
			}
			if dec.EOF() {
				return
			}
			for n := 0; n < 64 && dec.Err() == nil; n++ {
				if !dec.SP() && !dec.DiscardValue() {
					break
				}
			}
			dec.DiscardLine()
		}
		t.Fatalf("no progress on %q", in)
	})
}

// After a refused LITERAL+ literal the rest of the command, literals included, is dropped; after a
// refused synchronising one nothing is read.
func TestDiscardAfterRefusedLiteral(t *testing.T) {
	for _, c := range []struct{ in, next string }{
		{"t CREATE {5+}\r\nhello {2+}\r\nab more\r\nn NOOP\r\n", "n NOOP\r\n"},
		{"t CREATE {5}\r\nn NOOP\r\n", "n NOOP\r\n"},
		{"t CREATE x y z\r\nn NOOP\r\n", "n NOOP\r\n"},
	} {
		br := bufio.NewReader(strings.NewReader(c.in))
		dec := NewDecoder(br, ConnSideServer)
		dec.CheckBufferedLiteralFunc = func(size int64, nonSync bool) error {
			if size > 4 {
				return errors.New("too big")
			}
			return nil
		}
		var s string
		dec.ExpectAtom(&s)
		dec.ExpectSP()
		dec.ExpectAtom(&s)
		dec.ExpectSP()
		if dec.Literal(&s) && !dec.ExpectCRLF() {
			t.Fatalf("%q: literal taken", c.in)
		}
		dec.DiscardLine()
		rest, _ := br.ReadString(0)
		if rest != c.next {
			t.Errorf("%q: left %q, want %q", c.in, rest, c.next)
		}
	}
}

// Buffered literals count towards MaxSize: a command of many small literals, each accepted, is
// refused as too long (ErrTooLong) once they add up, and the rest of it is discarded.
func TestBufferedLiteralsCountTowardsMaxSize(t *testing.T) {
	// The line without its literals is 175 bytes, under MaxSize; with them 495.
	in := "t ID (" + strings.Repeat("{16+}\r\n0123456789abcdef ", 20) + "\"x\")\r\nn NOOP\r\n"
	br := bufio.NewReader(strings.NewReader(in))
	dec := NewDecoder(br, ConnSideServer)
	dec.MaxSize = 200
	dec.CheckBufferedLiteralFunc = func(size int64, nonSync bool) error { return nil }
	var s string
	dec.ExpectAtom(&s)
	dec.ExpectSP()
	dec.ExpectAtom(&s)
	dec.ExpectSP()
	dec.ExpectSpecial('(')
	n := 0
	for dec.Literal(&s) && dec.ExpectSP() {
		n++
	}
	if !errors.Is(dec.Err(), ErrTooLong) {
		t.Fatalf("after %d literals: err %v, want ErrTooLong", n, dec.Err())
	}
	if n*16 > 200 {
		t.Errorf("%d literals of 16 bytes taken with MaxSize 200", n)
	}
	dec.DiscardLine()
	if rest, _ := br.ReadString(0); rest != "n NOOP\r\n" {
		t.Errorf("left %q, want the next command", rest)
	}
}

// A literal announcement that MaxSize falls inside is read whole, so that the literal after it is
// discarded with the command, never read as the next one.
func TestMaxSizeInsideAnnouncement(t *testing.T) {
	br := bufio.NewReader(strings.NewReader("t X 0123456789 {5+}\r\nhello\r\nn NOOP\r\n"))
	dec := NewDecoder(br, ConnSideServer)
	dec.MaxSize = 17 // reached at the "+"
	var s string
	dec.ExpectAtom(&s)
	dec.ExpectSP()
	dec.ExpectAtom(&s)
	dec.ExpectSP()
	dec.ExpectAtom(&s)
	dec.ExpectSP()
	if dec.Literal(&s) {
		t.Fatalf("literal %q taken past MaxSize", s)
	}
	if !errors.Is(dec.Err(), ErrTooLong) {
		t.Errorf("err %v, want ErrTooLong", dec.Err())
	}
	dec.DiscardLine()
	if rest, _ := br.ReadString(0); rest != "n NOOP\r\n" {
		t.Errorf("left %q, want the next command", rest)
	}
}
