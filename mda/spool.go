package mda

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"postie/safeio"
)

// memLimit is how much of a message is kept in memory; larger ones are
// spooled to a temporary file, unlinked as soon as it is created (so a
// crash leaves nothing to clean up) and never fsynced: it only lives for
// one delivery, and what is acknowledged is each copy made from it.
const memLimit = 1 << 20

// spooled is a message body, normalised to CRLF, readable as many times as
// there are copies to write.
type spooled struct {
	mem  []byte
	file *os.File
	size int64
	hops int // Received: header fields seen in the header section
}

// spoolScratch is the scratch spool needs: a read chunk and room for its
// normalised form (at most twice as long: every byte a bare LF).
const (
	spoolChunk   = 32 << 10
	spoolScratch = 3 * spoolChunk
)

// spool reads body, turning bare LF and bare CR into CRLF so every stored
// byte is what IMAP BODY[] and POP3 RETR serve, and counts Received: fields.
// scratch (spoolScratch bytes) is only used during the call. The
// temporary file, if one is needed, is made through fsys (nil: the real
// file system). On error nothing is left in tmpDir; the caller answers
// with a temporary error.
func spool(fsys *safeio.FS, body io.Reader, tmpDir string, scratch []byte) (*spooled, error) {
	s := &spooled{}
	var buf bytes.Buffer
	var w io.Writer = &buf
	n := &normalizer{}
	chunk, out := scratch[:spoolChunk], scratch[spoolChunk:spoolChunk]
	for {
		k, err := body.Read(chunk)
		if k > 0 {
			out = n.append(out[:0], chunk[:k])
			if s.file == nil && buf.Len()+len(out) > memLimit {
				f, ferr := spoolFile(fsys, tmpDir)
				if ferr != nil {
					return nil, ferr
				}
				s.file = f.OS()
				if _, ferr := f.Write(buf.Bytes()); ferr != nil {
					s.Close()
					return nil, fmt.Errorf("write spool file: %w", ferr)
				}
				buf = bytes.Buffer{}
				w = f
			}
			if _, werr := w.Write(out); werr != nil {
				s.Close()
				return nil, fmt.Errorf("write spool: %w", werr)
			}
			s.size += int64(len(out))
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			s.Close()
			return nil, err
		}
	}
	if tail := n.finish(); len(tail) > 0 {
		if _, err := w.Write(tail); err != nil {
			s.Close()
			return nil, fmt.Errorf("write spool: %w", err)
		}
		s.size += int64(len(tail))
	}
	s.hops = n.hops
	if s.file == nil {
		s.mem = buf.Bytes()
	}
	return s, nil
}

// spoolFile makes the temporary file for a large message and unlinks it
// at once: nothing to clean up after a crash.
func spoolFile(fsys *safeio.FS, tmpDir string) (*safeio.File, error) {
	f, err := fsys.CreateTemp(tmpDir, "postie-mda-*", 0o600)
	if err != nil {
		return nil, fmt.Errorf("create spool file: %w", err)
	}
	if err := fsys.Remove(f.Name()); err != nil {
		f.Abort()
		return nil, fmt.Errorf("unlink spool file: %w", err)
	}
	return f, nil
}

// reader returns a fresh reader over the whole body.
func (s *spooled) reader() (io.Reader, error) {
	if s.file != nil {
		return io.NewSectionReader(s.file, 0, s.size), nil
	}
	return bytes.NewReader(s.mem), nil
}

// readerAt reads the whole body at any offset, from several goroutines
// at once.
func (s *spooled) readerAt() io.ReaderAt {
	if s.file != nil {
		return s.file
	}
	return bytes.NewReader(s.mem)
}

func (s *spooled) Close() error {
	if s.file != nil {
		return s.file.Close()
	}
	return nil
}

// normalizer converts line ends to CRLF across chunk boundaries, makes sure
// the message ends with CRLF, and counts Received: header fields.
type normalizer struct {
	pendingCR bool // the last chunk ended in CR
	lineStart bool // at the start of a line
	inBody    bool // past the blank line ending the header
	lineLen   int  // bytes in the current line so far (header section only)
	prefix    [9]byte
	hops      int
	any       bool
	lastLF    bool
}

func (n *normalizer) append(out, in []byte) []byte {
	if !n.any && len(in) > 0 {
		n.any, n.lineStart = true, true
	}
	for _, c := range in {
		if n.pendingCR {
			n.pendingCR = false
			out = append(out, '\r', '\n')
			n.endLine()
			if c == '\n' {
				continue
			}
		}
		switch c {
		case '\r':
			n.pendingCR = true
			continue
		case '\n':
			out = append(out, '\r', '\n')
			n.endLine()
			continue
		}
		out = append(out, c)
		n.lastLF = false
		if !n.inBody {
			if n.lineLen < len(n.prefix) {
				n.prefix[n.lineLen] = c
			}
			n.lineLen++
		}
	}
	return out
}

func (n *normalizer) endLine() {
	n.lastLF = true
	if n.inBody {
		return
	}
	if n.lineLen == 0 {
		n.inBody = true
		return
	}
	if n.lineLen >= 9 && bytes.EqualFold(n.prefix[:], []byte("received:")) {
		n.hops++
	}
	n.lineLen = 0
}

// finish returns what must follow the last chunk: a pending CR's LF, or a
// CRLF when the message does not end with a line end.
func (n *normalizer) finish() []byte {
	if n.pendingCR {
		n.pendingCR = false
		n.endLine()
		return []byte("\r\n")
	}
	if n.any && !n.lastLF {
		return []byte("\r\n")
	}
	return nil
}
