package imapd

import (
	"bufio"
	"compress/flate"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// deflateClient speaks IMAP over COMPRESS=DEFLATE (RFC 4978) on a connection already logged in.
type deflateClient struct {
	t  testing.TB
	c  net.Conn
	w  *flate.Writer
	br *bufio.Reader
}

func startDeflate(t testing.TB, c net.Conn, pre *bufio.Reader) *deflateClient {
	t.Helper()
	w, err := flate.NewWriter(c, flate.DefaultCompression)
	if err != nil {
		t.Fatal(err)
	}
	return &deflateClient{t: t, c: c, w: w, br: bufio.NewReader(flate.NewReader(pre))}
}

func (d *deflateClient) send(s string) {
	d.t.Helper()
	if _, err := io.WriteString(d.w, s); err != nil {
		d.t.Fatal(err)
	}
	if err := d.w.Flush(); err != nil {
		d.t.Fatal(err)
	}
}

func (d *deflateClient) line() string {
	d.t.Helper()
	d.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	l, err := d.br.ReadString('\n')
	if err != nil {
		d.t.Fatalf("read: %v (after %q)", err, l)
	}
	return l
}

func (d *deflateClient) cmd(line string) []string {
	d.t.Helper()
	tag, _, _ := strings.Cut(line, " ")
	d.send(line + "\r\n")
	var out []string
	for {
		l := d.line()
		out = append(out, l)
		if strings.HasPrefix(l, tag+" ") {
			return out
		}
	}
}

// plainLogin logs in over a plain or TLS connection and returns its reader (which must be kept:
// it may hold the start of the compressed stream).
func plainLogin(t *testing.T, c net.Conn) *bufio.Reader {
	t.Helper()
	br := bufio.NewReader(c)
	rd := func(tag string) string {
		for {
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			l, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if tag == "" || strings.HasPrefix(l, tag+" ") {
				return l
			}
		}
	}
	rd("") // greeting
	io.WriteString(c, "a LOGIN "+testUser+" "+testPass+"\r\n")
	if l := rd("a"); !strings.HasPrefix(l, "a OK") {
		t.Fatalf("login: %q", l)
	}
	io.WriteString(c, "b CAPABILITY\r\n")
	if l := rd("*"); !strings.Contains(l, " COMPRESS=DEFLATE") {
		t.Fatalf("COMPRESS=DEFLATE not advertised: %q", l)
	}
	rd("b")
	io.WriteString(c, "c COMPRESS DEFLATE\r\n")
	if l := rd("c"); l != "c OK DEFLATE active\r\n" {
		t.Fatalf("COMPRESS: %q", l)
	}
	return br
}

// COMPRESS=DEFLATE over plaintext and TLS: commands and responses compressed both ways, a
// message fetched, an IDLE update flushed at once, a second COMPRESS refused.
func TestCompressDeflate(t *testing.T) {
	ts := newTestServer(t)
	body := strings.Repeat("All work and no play makes Jack a dull boy.\r\n", 2000)
	ts.deliver(testMessage(1, "compressed") + body)
	for i, useTLS := range []bool{false, true} {
		var c net.Conn
		var err error
		if useTLS {
			c, err = tls.Dial("tcp", ts.tlsAddr, &tls.Config{InsecureSkipVerify: true})
		} else {
			c, err = net.Dial("tcp", ts.addr)
		}
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		d := startDeflate(t, c, plainLogin(t, c))
		if l := d.cmd("d SELECT INBOX"); !strings.HasPrefix(last(l), "d OK") || !strings.Contains(strings.Join(l, ""), "* "+itoa(i+1)+" EXISTS") {
			t.Fatalf("SELECT: %q", l)
		}
		l := d.cmd("e FETCH 1 BODY.PEEK[TEXT]")
		if !strings.HasPrefix(last(l), "e OK") {
			t.Fatalf("FETCH: %q", l)
		}
		var got strings.Builder
		for _, x := range l[1 : len(l)-1] {
			got.WriteString(x)
		}
		if !strings.HasPrefix(got.String(), "Body of message 1.") || !strings.Contains(got.String(), body) {
			t.Errorf("FETCH through DEFLATE: %d bytes, want the body (%d)", got.Len(), len(body))
		}
		if l := d.cmd("f COMPRESS DEFLATE"); !strings.HasPrefix(last(l), "f NO [COMPRESSIONACTIVE]") {
			t.Errorf("second COMPRESS: %q", l)
		}
		d.send("g IDLE\r\n")
		if l := d.line(); !strings.HasPrefix(l, "+ ") {
			t.Fatalf("IDLE: %q", l)
		}
		ts.deliver(testMessage(2, "during idle"))
		if l := d.line(); l != "* "+itoa(i+2)+" EXISTS\r\n" {
			t.Errorf("during IDLE: %q", l)
		}
		d.send("DONE\r\n")
		for l := d.line(); !strings.HasPrefix(l, "g "); l = d.line() {
		}
		if l := d.cmd("h LOGOUT"); !strings.HasPrefix(last(l), "h OK") {
			t.Errorf("LOGOUT: %q", l)
		}
	}
}

func TestCompressRefusals(t *testing.T) {
	ts := newTestServer(t)
	r := ts.raw(false)
	if l := r.cmd("a CAPABILITY"); strings.Contains(l[0], "COMPRESS") {
		t.Errorf("COMPRESS advertised before login: %q", l[0])
	}
	if l := r.cmd("a COMPRESS DEFLATE"); !strings.HasPrefix(last(l), "a BAD") {
		t.Errorf("COMPRESS before login: %q", l)
	}
	r.cmd("b LOGIN " + testUser + " " + testPass)
	if l := r.cmd("c COMPRESS LZW"); !strings.HasPrefix(last(l), "c BAD") {
		t.Errorf("COMPRESS LZW: %q", l)
	}
	if l := r.cmd("c COMPRESS"); !strings.HasPrefix(last(l), "c BAD") {
		t.Errorf("COMPRESS without a mechanism: %q", l)
	}
	if l := r.cmd("d NOOP"); !strings.HasPrefix(last(l), "d OK") {
		t.Errorf("NOOP after the refusals: %q", l)
	}

	// A client whose stream is not deflate loses its connection; the server goes on.
	r.cmd("e COMPRESS DEFLATE")
	r.send("\xff\xff\xff\xff garbage\r\n")
	r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := r.c.Read(make([]byte, 64)); err == nil {
		t.Errorf("connection still open after a corrupt stream (read %d bytes)", n)
	}
	if l := ts.raw(true).cmd("f NOOP"); !strings.HasPrefix(last(l), "f OK") {
		t.Errorf("server after a corrupt stream: %q", l)
	}
}
