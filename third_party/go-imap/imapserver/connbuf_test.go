package imapserver

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
)

// countWriter records the size of every write.
type countWriter struct {
	bytes.Buffer
	writes []int
}

func (w *countWriter) Write(p []byte) (int, error) {
	w.writes = append(w.writes, len(p))
	return w.Buffer.Write(p)
}

// During a response the line-by-line flushes of the 1 KiB writer reach the connection in pieces
// of respGatherSize (one TLS record each), the rest at the end; outside one, writes go through;
// switchTo sends what is gathered to the old writer.
func TestRespGather(t *testing.T) {
	under := &countWriter{}
	g := newRespGather(under, true, newRespGatherPool())
	bw := bufio.NewWriterSize(g, connBufSize)
	line := "* 1 FETCH (FLAGS (\\Seen))\r\n" // 27 bytes
	g.begin()
	for i := 0; i < 1000; i++ {
		bw.WriteString(line)
		bw.Flush()
	}
	if len(under.writes) != 1 || under.writes[0] != respGatherSize {
		t.Errorf("writes during the response: %v, want one of %d", under.writes, respGatherSize)
	}
	if err := g.end(); err != nil {
		t.Fatal(err)
	}
	if n := len(under.writes); n != 2 || under.Len() != 1000*len(line) {
		t.Errorf("after end: %d writes, %d bytes; want 2, %d", n, under.Len(), 1000*len(line))
	}
	if g.buf != nil {
		t.Error("a buffer is held after the response")
	}
	bw.WriteString("* OK idle update\r\n")
	bw.Flush()
	if n := len(under.writes); n != 3 {
		t.Errorf("a write outside a response was held (%d writes)", n)
	}
	// A big literal passes straight through.
	g.begin()
	bw.Write(bytes.Repeat([]byte("x"), 3*respGatherSize))
	bw.Flush()
	g.end()
	if got := under.writes[3:]; len(got) != 1 || got[0] != 3*respGatherSize {
		t.Errorf("big write split as %v", got)
	}
	next := &countWriter{}
	g.begin()
	bw.WriteString("a OK Begin TLS negotiation now\r\n")
	bw.Flush()
	g.switchTo(next)
	g.end()
	if !strings.HasSuffix(under.String(), "a OK Begin TLS negotiation now\r\n") || next.Len() != 0 {
		t.Errorf("switchTo: old writer ends %q, new one got %q", under.String()[under.Len()-32:], next.String())
	}
}

// Over plaintext nothing is gathered: the writes go through as bufio makes them.
func TestRespGatherPlain(t *testing.T) {
	under := &countWriter{}
	g := newRespGather(under, false, newRespGatherPool())
	bw := bufio.NewWriterSize(g, connBufSize)
	g.begin()
	for i := 0; i < 10; i++ {
		bw.WriteString("* 1 FETCH (FLAGS ())\r\n")
		bw.Flush()
	}
	if len(under.writes) != 10 {
		t.Errorf("%d writes over plaintext, want 10", len(under.writes))
	}
	g.end()
}
