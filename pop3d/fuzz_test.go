package pop3d

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// FuzzSession plays arbitrary bytes as a client against a whole session
// (logged in or not, since the seeds log in) and checks that the server
// neither panics nor hangs, and answers with well-formed lines.
func FuzzSession(f *testing.F) {
	login := "USER " + testUser + "\r\nPASS " + testPass + "\r\n"
	for _, seed := range []string{
		"CAPA\r\nQUIT\r\n",
		login + "STAT\r\nLIST\r\nUIDL\r\nRETR 1\r\nTOP 2 1\r\nDELE 1\r\nRSET\r\nQUIT\r\n",
		login + "LIST 2\r\nUIDL 3\r\nRETR 99\r\nDELE 0\r\nTOP 1 18446744073709551615\r\nQUIT\r\n",
		"AUTH PLAIN\r\n" + plainIR("", testUser, testPass) + "\r\nRETR 2\r\nDELE 2\r\nQUIT\r\n",
		"AUTH PLAIN " + plainIR("", testUser, testPass) + "\r\nNOOP\nLIST\nQUIT\n",
		"AUTH\r\nAUTH PLAIN\r\n*\r\nSTLS\r\nAPOP x y\r\n",
		"USER \x00\r\nPASS \xff\xfe\r\n" + strings.Repeat("A", 300) + "\r\n\r\n\r\n",
		login + "RETR 1\r\nRETR",
	} {
		f.Add([]byte(seed))
	}
	store := newFakeStore()
	box := store.box("example.test", "alice")
	for _, m := range mixedMessages() {
		box.deliver(m)
	}
	auth := &fakeAuth{users: map[string]string{testUser: testPass}}
	srv := newServer(serverConfig{
		store: store, auth: auth, idleTimeout: 5 * time.Second,
		log: slog.New(slog.DiscardHandler),
	})
	srv.trusted = func(netip.Addr) bool { return true }

	f.Fuzz(func(t *testing.T, input []byte) {
		// Deletions must not empty the shared mailbox between runs.
		box.mu.Lock()
		if len(box.msgs) < 3 {
			for _, m := range mixedMessages() {
				box.msgs = append(box.msgs, fakeMsg{uid: box.nextUID, data: m})
				box.nextUID++
			}
		}
		box.mu.Unlock()

		conn := &scriptConn{in: bytes.NewReader(input)}
		tc, err := srv.tracker.Admit(conn)
		if err != nil {
			t.Fatal(err)
		}
		defer tc.Close()
		newSession(srv, tc, tc).serve()
		out := conn.out.String()
		if !strings.HasPrefix(out, "+OK") {
			t.Fatalf("no greeting: %q", out)
		}
		if !strings.HasSuffix(out, "\r\n") {
			t.Fatalf("output does not end a line: %q", out)
		}
		if strings.Contains(strings.ReplaceAll(out, "\r\n", ""), "\n") {
			t.Fatalf("bare LF in output: %q", out)
		}
	})
}

// scriptConn is a connection whose client says input and then closes its
// side: reads return EOF after it, writes are collected.
type scriptConn struct {
	in  *bytes.Reader
	out bytes.Buffer
}

func (c *scriptConn) Read(p []byte) (int, error)  { return c.in.Read(p) }
func (c *scriptConn) Write(p []byte) (int, error) { return c.out.Write(p) }
func (c *scriptConn) Close() error                { return nil }
func (c *scriptConn) LocalAddr() net.Addr         { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 110} }
func (c *scriptConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 4242}
}
func (c *scriptConn) SetDeadline(t time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(t time.Time) error { return nil }

// FuzzDotWriter checks that un-stuffing what dotWriter sends gives the
// data back byte for byte, and that a terminator never appears early.
func FuzzDotWriter(f *testing.F) {
	for _, seed := range []string{"", ".", "a\r\n.\r\nb\r\n", "..\r\n.", "x\n.y\n", "\r\n.\r\n.\r\n"} {
		f.Add([]byte(seed), uint8(3))
	}
	f.Fuzz(func(t *testing.T, data []byte, split uint8) {
		var out bytes.Buffer
		bw := bufio.NewWriterSize(&out, 16)
		dw := dotWriter{w: bw}
		// Write in pieces, to cross chunk boundaries at every position.
		for p := data; len(p) > 0; {
			n := min(int(split)%7+1, len(p))
			dw.Write(p[:n])
			p = p[n:]
		}
		if err := dw.Close(); err != nil {
			t.Fatal(err)
		}
		bw.Flush()
		got, err := readDotBody(bufio.NewReader(&out))
		if err != nil {
			t.Fatalf("unstuff: %v", err)
		}
		if rest, _ := io.ReadAll(&out); len(rest) > 0 {
			t.Fatalf("data after the terminator: %q", rest)
		}
		want := data
		if len(data) > 0 && data[len(data)-1] != '\n' {
			want = append(bytes.Clone(data), '\r', '\n')
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("round trip: got %q, want %q", got, want)
		}
	})
}

// FuzzCopyTop checks TOP's cut: a prefix of the message that is the whole
// header (or the whole message) plus at most the asked number of lines.
func FuzzCopyTop(f *testing.F) {
	for _, m := range mixedMessages() {
		f.Add(m, uint8(2))
	}
	f.Add([]byte("no header end\r\nat all"), uint8(1))
	f.Fuzz(func(t *testing.T, msg []byte, k uint8) {
		var out bytes.Buffer
		if err := copyTop(&out, bufio.NewReaderSize(bytes.NewReader(msg), 16), uint64(k)); err != nil {
			t.Fatal(err)
		}
		got := out.Bytes()
		if !bytes.HasPrefix(msg, got) {
			t.Fatalf("not a prefix: %q of %q", got, msg)
		}
		header := msg
		if i := bytes.Index(msg, []byte("\n\r\n")); i >= 0 && (bytes.Index(msg, []byte("\n\n")) < 0 || bytes.Index(msg, []byte("\n\n")) > i) {
			header = msg[:i+3]
		} else if i := bytes.Index(msg, []byte("\n\n")); i >= 0 {
			header = msg[:i+2]
		}
		if bytes.HasPrefix(msg, []byte("\r\n")) || bytes.HasPrefix(msg, []byte("\n")) {
			header = msg[:bytes.IndexByte(msg, '\n')+1]
		}
		if !bytes.HasPrefix(got, header) {
			t.Fatalf("header cut: %q, header %q", got, header)
		}
		body := got[len(header):]
		if n := bytes.Count(body, []byte("\n")); n > int(k) || (n < int(k) && len(got) < len(msg)) {
			t.Fatalf("%d body lines for k=%d (message %d octets, sent %d)", n, k, len(msg), len(got))
		}
	})
}
