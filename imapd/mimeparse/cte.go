package mimeparse

import (
	"bufio"
	"errors"
	"io"
	"strings"
)

// ErrUnknownCTE means a part's Content-Transfer-Encoding cannot be decoded (RFC 3516 UNKNOWN-CTE).
var ErrUnknownCTE = errors.New("mimeparse: unknown content-transfer-encoding")

// DecodeCTE wraps r in a decoder for the transfer encoding enc. The decoders are our own and lenient:
// go-imap's BINARY helper fails on non-UTF-8 charsets (it converts charsets, which BINARY must not),
// and mail in the wild carries broken base64 and quoted-printable that must still decode.
func DecodeCTE(enc string, r io.Reader) (io.Reader, error) {
	switch strings.ToLower(strings.TrimSpace(enc)) {
	case "", "7bit", "8bit", "binary":
		return r, nil
	case "base64":
		return &base64Reader{r: r}, nil
	case "quoted-printable":
		return &qpReader{br: bufio.NewReaderSize(r, 4096)}, nil
	default:
		return nil, ErrUnknownCTE
	}
}

// base64Reader decodes base64, skipping characters outside the alphabet (line breaks, junk) and
// accepting padding anywhere: a '=' flushes the bytes of the current quantum.
type base64Reader struct {
	r       io.Reader
	in      [2048]byte
	out     []byte
	outBuf  [1536 + 3]byte
	quantum uint32
	n       int // sextets in quantum
	err     error
}

func b64val(c byte) int {
	switch {
	case c >= 'A' && c <= 'Z':
		return int(c - 'A')
	case c >= 'a' && c <= 'z':
		return int(c-'a') + 26
	case c >= '0' && c <= '9':
		return int(c-'0') + 52
	case c == '+':
		return 62
	case c == '/':
		return 63
	case c == '=':
		return -2
	}
	return -1
}

func (d *base64Reader) Read(p []byte) (int, error) {
	for len(d.out) == 0 {
		if d.err != nil {
			return 0, d.err
		}
		n, err := d.r.Read(d.in[:])
		out := d.outBuf[:0]
		for _, c := range d.in[:n] {
			v := b64val(c)
			switch {
			case v >= 0:
				d.quantum = d.quantum<<6 | uint32(v)
				d.n++
				if d.n == 4 {
					out = append(out, byte(d.quantum>>16), byte(d.quantum>>8), byte(d.quantum))
					d.quantum, d.n = 0, 0
				}
			case v == -2:
				out = d.flush(out)
			}
		}
		if err != nil {
			out = d.flush(out)
			d.err = err
		}
		d.out = out
	}
	n := copy(p, d.out)
	d.out = d.out[n:]
	return n, nil
}

// flush emits the whole bytes held by a partial quantum.
func (d *base64Reader) flush(out []byte) []byte {
	switch d.n {
	case 2:
		out = append(out, byte(d.quantum>>4))
	case 3:
		out = append(out, byte(d.quantum>>10), byte(d.quantum>>2))
	}
	d.quantum, d.n = 0, 0
	return out
}

// qpReader decodes quoted-printable (RFC 2045 §6.7) line by line: "=XX" becomes the byte, "=" at the end
// of a line joins it to the next, trailing white space is dropped, and anything malformed is kept as is.
type qpReader struct {
	br   *bufio.Reader
	line []byte
	out  []byte
	err  error
}

const maxQPLine = 1 << 20

func (d *qpReader) Read(p []byte) (int, error) {
	for len(d.out) == 0 {
		if d.err != nil {
			return 0, d.err
		}
		d.line = d.line[:0]
		for {
			b, err := d.br.ReadSlice('\n')
			d.line = append(d.line, b...)
			if err == bufio.ErrBufferFull && len(d.line) < maxQPLine {
				continue
			}
			if err != nil && err != bufio.ErrBufferFull {
				d.err = err
			}
			break
		}
		d.out = qpDecodeLine(d.out[:0], d.line)
	}
	n := copy(p, d.out)
	d.out = d.out[n:]
	return n, nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// qpDecodeLine appends the decoding of one encoded line (with its line break, if any) to out.
func qpDecodeLine(out, line []byte) []byte {
	body, eol := line, []byte(nil)
	switch {
	case len(body) >= 2 && body[len(body)-2] == '\r' && body[len(body)-1] == '\n':
		body, eol = body[:len(body)-2], body[len(body)-2:]
	case len(body) >= 1 && body[len(body)-1] == '\n':
		body, eol = body[:len(body)-1], body[len(body)-1:]
	}
	if eol != nil {
		for len(body) > 0 && (body[len(body)-1] == ' ' || body[len(body)-1] == '\t') {
			body = body[:len(body)-1]
		}
		if len(body) > 0 && body[len(body)-1] == '=' {
			body, eol = body[:len(body)-1], nil // soft line break
		}
	}
	for i := 0; i < len(body); i++ {
		c := body[i]
		if c == '=' && i+2 < len(body) {
			h, ok1 := unhex(body[i+1])
			l, ok2 := unhex(body[i+2])
			if ok1 && ok2 {
				out = append(out, h<<4|l)
				i += 2
				continue
			}
		}
		out = append(out, c)
	}
	return append(out, eol...)
}
