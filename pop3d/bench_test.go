package pop3d

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"postie/maildir"
)

// Benchmarks over the real store with a generated INBOX of mixed mail:
// POP3D_BENCH_MESSAGES messages (10,000 by default, about 130 MB). With
// POP3D_BENCH_SMALL=1 every message is about 1 KB, for listing a large
// maildrop (100,000 messages) quickly. The mailbox is made once per test
// binary run.
//
//	go test -run XXX -bench . -benchtime 5x ./pop3d
//	POP3D_BENCH_MESSAGES=100000 POP3D_BENCH_SMALL=1 go test -run XXX -bench 'Stat|UIDL|List' ./pop3d

var benchBox struct {
	once  sync.Once
	dir   string
	count int
	bytes int64
	err   error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if benchBox.dir != "" {
		os.RemoveAll(benchBox.dir)
	}
	os.Exit(code)
}

func benchMessages() int {
	if n, err := strconv.Atoi(os.Getenv("POP3D_BENCH_MESSAGES")); err == nil && n > 0 {
		return n
	}
	return 10_000
}

// benchStore returns the root of a store whose alice@example.test INBOX
// holds the generated mailbox.
func benchStore(b *testing.B) string {
	b.Helper()
	benchBox.once.Do(func() {
		benchBox.dir, benchBox.err = os.MkdirTemp("", "pop3d-bench-")
		if benchBox.err != nil {
			return
		}
		start := time.Now()
		benchBox.count = benchMessages()
		benchBox.bytes, benchBox.err = fillMailbox(benchBox.dir, benchBox.count)
		b.Logf("generated %d messages, %d MB in %v", benchBox.count, benchBox.bytes>>20, time.Since(start).Round(time.Millisecond))
		// The store rescans a folder whose directory changed less than 2 s
		// ago (coarse mtimes can hide a change); a mailbox at rest is the
		// case to measure.
		time.Sleep(2500 * time.Millisecond)
	})
	if benchBox.err != nil {
		b.Fatal(benchBox.err)
	}
	return benchBox.dir
}

// fillMailbox delivers n generated messages through the store, from a few
// goroutines so that the store can group its fsyncs.
func fillMailbox(dir string, n int) (int64, error) {
	store := maildir.NewStore(dir, maildir.StoreOptions{Hostname: "bench", Logger: slog.New(slog.DiscardHandler)})
	u, err := store.User("example.test", "alice")
	if err != nil {
		return 0, err
	}
	msgs := make(chan []byte, 16)
	go func() {
		rng := rand.New(rand.NewPCG(1, 2))
		for i := range n {
			msgs <- mixedMessage(rng, i)
		}
		close(msgs)
	}()
	var (
		mu    sync.Mutex
		total int64
		first error
		wg    sync.WaitGroup
	)
	for range 8 {
		wg.Go(func() {
			for m := range msgs {
				d, err := u.Deliver(bytes.NewReader(m), maildir.DeliverOptions{})
				mu.Lock()
				total += d.Size
				if err != nil && first == nil {
					first = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if first != nil {
		return total, first
	}
	// Give the messages their UIDs and move them to cur/, as the first
	// session would.
	inbox, err := u.Mailbox("INBOX")
	if err != nil {
		return total, err
	}
	return total, inbox.Refresh()
}

var words = []string{"the", "mail", "server", "of", "a", "small", "organisation", "delivers", "every", "message",
	"exactly", "once", "and", "keeps", "it", "safe", "until", "read", "by", "POP3", "or", "IMAP", "clients", "today"}

// mixedMessage makes one message: mostly small text mail, some with
// attachments, a few large; some lines start with a dot.
func mixedMessage(rng *rand.Rand, i int) []byte {
	var size int
	switch p := rng.IntN(1000); {
	case os.Getenv("POP3D_BENCH_SMALL") != "":
		size = 500 + rng.IntN(1000)
	case p < 700:
		size = 1000 + rng.IntN(5000)
	case p < 950:
		size = 6000 + rng.IntN(24000)
	case p < 995:
		size = 30000 + rng.IntN(120000)
	default:
		size = 150000 + rng.IntN(850000)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "Return-Path: <sender%d@example.org>\r\nReceived: from mx.example.org by pop.example.test; Mon, 2 Jan 2026 10:00:00 +0000\r\n", i)
	fmt.Fprintf(&b, "From: Sender %d <sender%d@example.org>\r\nTo: alice@example.test\r\nSubject: message %d\r\n", i, i, i)
	fmt.Fprintf(&b, "Date: Mon, 2 Jan 2026 10:00:00 +0000\r\nMessage-ID: <%d@example.org>\r\nMIME-Version: 1.0\r\n", i)
	if size < 30000 {
		b.WriteString("Content-Type: text/plain; charset=utf-8\r\n\r\n")
		for b.Len() < size {
			line := 0
			if rng.IntN(40) == 0 {
				b.WriteByte('.')
			}
			for line < 70 {
				w := words[rng.IntN(len(words))]
				b.WriteString(w)
				b.WriteByte(' ')
				line += len(w) + 1
			}
			b.WriteString("\r\n")
		}
		return b.Bytes()
	}
	b.WriteString("Content-Type: multipart/mixed; boundary=xyz\r\n\r\n--xyz\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n.\r\n--xyz\r\n")
	b.WriteString("Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	raw := make([]byte, 57)
	enc := make([]byte, 76)
	for b.Len() < size {
		for j := range raw {
			raw[j] = byte(rng.Uint32())
		}
		base64.StdEncoding.Encode(enc, raw)
		b.Write(enc)
		b.WriteString("\r\n")
	}
	b.WriteString("--xyz--\r\n")
	return b.Bytes()
}

// benchServer runs a server over the benchmark store; reset clears \Seen
// so that each RETR-all pays for marking messages read.
func benchServer(b *testing.B) (addr string, inbox *maildir.Mailbox) {
	dir := benchStore(b)
	store := maildir.NewStore(dir, maildir.StoreOptions{Hostname: "bench", Logger: slog.New(slog.DiscardHandler)})
	srv := New(Options{Store: store, Auth: staticAuth{testUser: testPass}, Hostname: "bench", Logger: slog.New(slog.DiscardHandler)})
	addr = serve(b, srv, false)
	start := time.Now()
	u, err := store.User("example.test", "alice")
	if err != nil {
		b.Fatal(err)
	}
	if inbox, err = u.Mailbox("INBOX"); err != nil {
		b.Fatal(err)
	}
	b.Logf("store loaded the INBOX in %v", time.Since(start).Round(time.Microsecond))
	return addr, inbox
}

// benchClient is a minimal, allocation-light POP3 client.
type benchClient struct {
	conn net.Conn
	r    *bufio.Reader
}

func benchDial(b *testing.B, addr string) *benchClient {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	c := &benchClient{conn: conn, r: bufio.NewReaderSize(conn, 64<<10)}
	c.status(b)
	return c
}

func (c *benchClient) cmd(b *testing.B, line string) string {
	if _, err := io.WriteString(c.conn, line+"\r\n"); err != nil {
		b.Fatal(err)
	}
	return c.status(b)
}

func (c *benchClient) status(b *testing.B) string {
	l, err := c.r.ReadString('\n')
	if err != nil || len(l) < 3 || l[:3] != "+OK" {
		b.Fatalf("reply %q, %v", l, err)
	}
	return l
}

// body reads a multi-line body to its terminator and returns its length.
func (c *benchClient) body(b *testing.B) int {
	n := 0
	for {
		line, err := c.r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			n += len(line)
			continue
		}
		if err != nil {
			b.Fatal(err)
		}
		if len(line) == 3 && line[0] == '.' && line[1] == '\r' {
			return n
		}
		n += len(line)
	}
}

func (c *benchClient) login(b *testing.B) {
	c.cmd(b, "USER "+testUser)
	c.cmd(b, "PASS "+testPass)
}

// BenchmarkLoginStat is a connection, USER, PASS, STAT and QUIT, with the
// mailbox already loaded by the process (the usual case for a running
// server; benchServer logs the load).
func BenchmarkLoginStat(b *testing.B) {
	addr, _ := benchServer(b)
	for b.Loop() {
		loginStat(b, addr)
	}
}

func loginStat(b *testing.B, addr string) {
	c := benchDial(b, addr)
	defer c.conn.Close()
	c.login(b)
	if l := c.cmd(b, "STAT"); l != fmt.Sprintf("+OK %d %d\r\n", benchBox.count, benchBox.bytes) {
		b.Fatalf("STAT = %q", l)
	}
	c.cmd(b, "QUIT")
}

// BenchmarkUIDL and BenchmarkList list the whole maildrop, which costs no
// message file.
func BenchmarkUIDL(b *testing.B) { benchListing(b, "UIDL") }
func BenchmarkList(b *testing.B) { benchListing(b, "LIST") }

func benchListing(b *testing.B, cmd string) {
	addr, _ := benchServer(b)
	c := benchDial(b, addr)
	defer c.conn.Close()
	c.login(b)
	for b.Loop() {
		c.cmd(b, cmd)
		c.body(b)
	}
}

// BenchmarkRetrAll logs in and fetches every message, one command at a
// time as most clients do. Each round starts with no message \Seen, so the
// flag updates are part of the cost.
func BenchmarkRetrAll(b *testing.B) {
	addr, inbox := benchServer(b)
	b.SetBytes(benchBox.bytes)
	for b.Loop() {
		b.StopTimer()
		clearSeen(b, inbox)
		b.StartTimer()
		retrAll(b, addr)
	}
}

// BenchmarkRetrAllSeen is RETR of every message already \Seen: streaming
// alone.
func BenchmarkRetrAllSeen(b *testing.B) {
	addr, _ := benchServer(b)
	retrAll(b, addr) // marks all seen
	b.SetBytes(benchBox.bytes)
	for b.Loop() {
		retrAll(b, addr)
	}
}

func retrAll(b *testing.B, addr string) {
	c := benchDial(b, addr)
	defer c.conn.Close()
	c.login(b)
	var total int64
	for i := 1; i <= benchBox.count; i++ {
		c.cmd(b, "RETR "+strconv.Itoa(i))
		total += int64(c.body(b))
	}
	c.cmd(b, "QUIT")
	if total < benchBox.bytes {
		b.Fatalf("fetched %d octets of %d", total, benchBox.bytes)
	}
}

func clearSeen(b *testing.B, inbox *maildir.Mailbox) {
	if err := inbox.Refresh(); err != nil {
		b.Fatal(err)
	}
	var uids []uint32
	inbox.View(func(ms []maildir.Message) {
		for _, m := range ms {
			uids = append(uids, m.UID)
		}
	})
	if _, err := inbox.SetFlags(uids, maildir.FlagsRemove, maildir.FlagSeen, nil); err != nil {
		b.Fatal(err)
	}
}
