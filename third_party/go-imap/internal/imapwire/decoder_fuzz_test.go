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
