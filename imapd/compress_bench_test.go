package imapd

import (
	"bufio"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
)

// countConn counts the bytes read from the server.
type countConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// BenchmarkCompressFetch: a Thunderbird-like header sync of 2,000 messages
// (UID FETCH 1:* (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (...)])) and the whole messages,
// with and without COMPRESS=DEFLATE: wire bytes per run and time.
func BenchmarkCompressFetch(b *testing.B) {
	ts := newTestServer(b)
	fillInbox(b, ts, 2000)
	cmds := map[string]string{
		"headers": "UID FETCH 1:* (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (From To Subject Date Message-ID)])",
		"bodies":  "UID FETCH 1:* BODY.PEEK[]",
	}
	for _, what := range []string{"headers", "bodies"} {
		for _, compress := range []bool{false, true} {
			name := what + "/plain"
			if compress {
				name = what + "/deflate"
			}
			b.Run(name, func(b *testing.B) {
				var wire atomic.Int64
				raw, err := net.Dial("tcp", ts.addr)
				if err != nil {
					b.Fatal(err)
				}
				defer raw.Close()
				c := countConn{raw, &wire}
				br := bufio.NewReader(c)
				io.WriteString(c, "a LOGIN "+testUser+" "+testPass+"\r\n")
				readTagged(b, br, "a")
				var r *bufio.Reader
				var send func(string)
				if compress {
					io.WriteString(c, "c COMPRESS DEFLATE\r\n")
					readTagged(b, br, "c")
					d := startDeflate(b, c, br)
					r, send = d.br, func(s string) { io.WriteString(d.w, s); d.w.Flush() }
				} else {
					r, send = br, func(s string) { io.WriteString(c, s) }
				}
				send("s SELECT INBOX\r\n")
				readTagged(b, r, "s")
				wire.Store(0)
				b.ResetTimer()
				for b.Loop() {
					send("f " + cmds[what] + "\r\n")
					readTagged(b, r, "f")
				}
				b.ReportMetric(float64(wire.Load())/float64(b.N), "wire-bytes/op")
			})
		}
	}
}

func readTagged(b *testing.B, r *bufio.Reader, tag string) {
	b.Helper()
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			b.Fatal(err)
		}
		if strings.HasPrefix(l, tag+" ") {
			if !strings.HasPrefix(l, tag+" OK") {
				b.Fatalf("%q", l)
			}
			return
		}
	}
}
