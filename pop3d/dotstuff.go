package pop3d

import (
	"bufio"
	"bytes"
	"io"
)

// dotWriter writes the body of a multi-line response (RFC 1939 §3): a line
// that starts with '.' gets one more in front, and Close ends the body with
// the ".\r\n" terminator, after a CRLF if the data did not end its last
// line. Unlike textproto's DotWriter it sends line ends as they are (the
// store keeps CRLF), so the octets before stuffing are exactly the file,
// and it copies whole runs of lines at a time rather than byte by byte.
type dotWriter struct {
	w       *bufio.Writer
	midLine bool // the last byte written was not a '\n'
}

var dotLine = []byte("\n.")

func (d *dotWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if !d.midLine && p[0] == '.' {
			if err := d.w.WriteByte('.'); err != nil {
				return 0, err
			}
		}
		i := bytes.Index(p, dotLine)
		if i < 0 {
			if _, err := d.w.Write(p); err != nil {
				return 0, err
			}
			d.midLine = p[len(p)-1] != '\n'
			break
		}
		// Up to and including the '\n'; the next round stuffs the '.'.
		if _, err := d.w.Write(p[:i+1]); err != nil {
			return 0, err
		}
		p = p[i+1:]
		d.midLine = false
	}
	return n, nil
}

func (d *dotWriter) Close() error {
	if d.midLine {
		if _, err := d.w.WriteString("\r\n"); err != nil {
			return err
		}
	}
	_, err := d.w.WriteString(".\r\n")
	return err
}

// copyTop copies the header of a message, the blank line that ends it, and
// then at most lines lines of its body. A message without a blank line is
// all header and is copied whole.
func copyTop(w io.Writer, r *bufio.Reader, lines uint64) error {
	inHeader, lineStart := true, true
	for {
		if !inHeader && lineStart && lines == 0 {
			return nil
		}
		chunk, err := r.ReadSlice('\n')
		if len(chunk) > 0 {
			complete := chunk[len(chunk)-1] == '\n'
			if _, werr := w.Write(chunk); werr != nil {
				return werr
			}
			if inHeader {
				if lineStart && complete && isBlankLine(chunk) {
					inHeader = false
				}
			} else if complete {
				lines--
			}
			lineStart = complete
		}
		switch err {
		case nil, bufio.ErrBufferFull:
		case io.EOF:
			return nil
		default:
			return err
		}
	}
}

func isBlankLine(line []byte) bool {
	return len(line) == 1 || (len(line) == 2 && line[0] == '\r')
}
