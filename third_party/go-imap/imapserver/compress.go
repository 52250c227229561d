package imapserver

import (
	"bufio"
	"compress/flate"
	"io"
	"strings"
	"sync"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/internal/imapwire"
)

// CapCompressDeflate is COMPRESS=DEFLATE (RFC 4978). The engine implements it itself; it is
// advertised after login when Options.Caps has it.
const CapCompressDeflate imap.Cap = "COMPRESS=DEFLATE"

// moreCaps are the capabilities after login of compress.go, multiappend.go, catenate.go,
// notify.go and preview.go, advertised when Options.Caps has them.
var moreCaps = []imap.Cap{CapCompressDeflate, imap.CapMultiAppend, imap.CapCatenate, imap.CapNotify, imap.CapPreview}

// Memory. Go's flate.Writer cannot be given a smaller window or hash table: one costs about
// 1.2 MB at BestSpeed (0.8 MB at the other levels) whatever it compresses. So a compressing
// connection keeps none: responses are gathered (up to deflateGather bytes, or until the
// connection turns to reading, or at once while a read is pending, as in IDLE), then compressed
// by a pooled writer reset onto the connection and ended with a sync flush (RFC 4978 §4: every
// response is flushed). Each burst is thus compressed on its own; the client's inflater keeps its
// 32 KiB window as usual. What a connection holds between commands is the inflater of the
// client's stream (Go's flate reader: its 32 KiB window plus tables, about 40 KiB, which RFC 1951
// makes necessary since the client may refer back 32 KiB) and a second pair of 4 KiB bufio
// buffers; the deflate writers and gather buffers are held only while a response is written.
const deflateGather = 32 << 10

var (
	deflaters = sync.Pool{New: func() any {
		w, _ := flate.NewWriter(nil, flate.BestSpeed) // the level is valid: no error
		return w
	}}
	deflateBufs = sync.Pool{New: func() any { b := make([]byte, 0, deflateGather); return &b }}
)

func (c *Conn) handleCompress(tag string, dec *imapwire.Decoder) error {
	var mech string
	if !dec.ExpectSP() || !dec.ExpectAtom(&mech) || !dec.ExpectCRLF() {
		return dec.Err()
	}
	if err := c.checkState(imap.ConnStateAuthenticated); err != nil {
		return err
	}
	if !c.server.options.caps().Has(CapCompressDeflate) {
		return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Unknown command"}
	}
	if !strings.EqualFold(mech, "DEFLATE") {
		return newClientBugError("Unknown compression mechanism")
	}
	if c.deflate != nil {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: "COMPRESSIONACTIVE", Text: "DEFLATE is active already"}
	}

	// Nothing may be written between the OK and the switch: hold the encoder until then.
	enc := newResponseEncoder(c)
	defer enc.end()
	err := writeStatusResp(enc.Encoder, tag, &imap.StatusResponse{
		Type: imap.StatusResponseTypeOK,
		Text: "DEFLATE active",
	})
	if err != nil {
		return err
	}
	dc := &deflateConn{raw: c.bw}
	// The client's compressed stream starts right after its command: what c.br has buffered
	// already belongs to it.
	dc.inflate = flate.NewReader(c.br)
	c.deflate = dc
	c.br = bufio.NewReaderSize(dc, connBufSize)
	c.bw = bufio.NewWriterSize(dc, connBufSize)
	return nil
}

// deflateConn is the compressed layer under Conn's bufio reader and writer.
type deflateConn struct {
	inflate io.Reader     // the client's stream, read from the raw bufio.Reader
	raw     *bufio.Writer // the raw writer (to TLS or the socket)

	mu      sync.Mutex
	pending *[]byte // gathered, not yet compressed; nil when empty
	reading bool
	err     error
}

func (d *deflateConn) Read(p []byte) (int, error) {
	d.mu.Lock()
	err := d.flushLocked()
	d.reading = err == nil
	d.mu.Unlock()
	if err != nil {
		return 0, err
	}
	n, err := d.inflate.Read(p)
	d.mu.Lock()
	d.reading = false
	d.mu.Unlock()
	return n, err
}

func (d *deflateConn) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err != nil {
		return 0, d.err
	}
	n := len(p)
	for len(p) > 0 {
		if d.pending == nil {
			d.pending = deflateBufs.Get().(*[]byte)
		}
		k := deflateGather - len(*d.pending)
		if k > len(p) {
			k = len(p)
		}
		*d.pending = append(*d.pending, p[:k]...)
		p = p[k:]
		if len(*d.pending) >= deflateGather {
			if err := d.flushLocked(); err != nil {
				return 0, err
			}
		}
	}
	if d.reading { // IDLE: the update goes out now
		if err := d.flushLocked(); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// flushLocked compresses what is gathered, ends it with a sync flush and writes it out.
func (d *deflateConn) flushLocked() error {
	if d.err != nil || d.pending == nil {
		return d.err
	}
	w := deflaters.Get().(*flate.Writer)
	w.Reset(d.raw)
	_, err := w.Write(*d.pending)
	if err == nil {
		err = w.Flush()
	}
	w.Reset(nil) // drop the reference to the connection's writer
	deflaters.Put(w)
	*d.pending = (*d.pending)[:0]
	deflateBufs.Put(d.pending)
	d.pending = nil
	if err == nil {
		err = d.raw.Flush()
	}
	d.err = err
	return err
}

// flushDeflate sends what the compressed layer has gathered; the connection is about to close.
func (c *Conn) flushDeflate() {
	if d := c.deflate; d != nil {
		d.mu.Lock()
		d.flushLocked()
		d.mu.Unlock()
	}
}
