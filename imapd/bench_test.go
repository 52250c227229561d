package imapd

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"postie/maildir"
)

// Benchmarks run against a generated INBOX of IMAPD_BENCH_MESSAGES messages (default 10000), built
// once and kept in $TMPDIR/postie-imapd-bench-N for later runs. Each figure matches one of the issue's
// Dovecot reference numbers (100k messages): warm SELECT 7 ms, FETCH (UID FLAGS RFC822.SIZE) 0.21 s,
// header sync 6.5 s / 0.78 s, SEARCH SUBJECT 0.30 s, SEARCH TEXT 17 s, APPEND 4 KiB 400/s,
// LOGIN+SELECT+LOGOUT 814/s at 10 clients, an idle IDLE connection well under 100 KiB.

func benchSize() int {
	if n, err := strconv.Atoi(os.Getenv("IMAPD_BENCH_MESSAGES")); err == nil && n > 0 {
		return n
	}
	return 10000
}

var benchWords = strings.Fields(`the quick brown fox jumps over lazy dog meeting report budget invoice travel
	project deadline review draft lunch weekend update release server backup network printer office holiday
	contract customer support ticket urgent question answer thanks regards schedule agenda minutes`)

func benchMessage(r *rand.Rand, i int) string {
	var b strings.Builder
	word := func() string { return benchWords[r.IntN(len(benchWords))] }
	fmt.Fprintf(&b, "Return-Path: <user%d@example.org>\r\n", i%97)
	for h := 0; h < 3; h++ {
		fmt.Fprintf(&b, "Received: from mx%d.example.org (mx%d.example.org [192.0.2.%d])\r\n\tby mail.example.test with ESMTPS id %x\r\n\tfor <alice@example.test>; Mon, 23 Nov 2026 10:%02d:00 +0000\r\n", h, h, h+1, r.Uint64(), i%60)
	}
	fmt.Fprintf(&b, "DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=sel; h=from:to:subject:date;\r\n\tbh=%x;\r\n\tb=%x%x%x\r\n", r.Uint64(), r.Uint64(), r.Uint64(), r.Uint64())
	fmt.Fprintf(&b, "From: User %d <user%d@example.org>\r\nTo: Alice <alice@example.test>\r\n", i%97, i%97)
	if i%3 == 0 {
		b.WriteString("Cc: bob@example.test, carol@example.test\r\n")
	}
	fmt.Fprintf(&b, "Subject: %s %s %s %d\r\n", word(), word(), word(), i)
	fmt.Fprintf(&b, "Date: Mon, 23 Nov 2026 %02d:%02d:00 +0000\r\nMessage-ID: <bench%d@example.org>\r\n", i/60%24, i%60, i)
	if i > 0 && i%4 == 0 {
		fmt.Fprintf(&b, "In-Reply-To: <bench%d@example.org>\r\nReferences: <bench%d@example.org> <bench%d@example.org>\r\n", i-1, i-2, i-1)
	}
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	lines := 20 + r.IntN(40)
	for l := 0; l < lines; l++ {
		for w := 0; w < 10; w++ {
			b.WriteString(word())
			b.WriteByte(' ')
		}
		b.WriteString("\r\n")
	}
	return b.String()
}

var benchOnce sync.Map // dir → *sync.Once

// benchDir returns a store directory holding alice's INBOX of n messages.
func benchDir(b *testing.B, n int) string {
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("postie-imapd-bench-%d", n))
	onceV, _ := benchOnce.LoadOrStore(dir, new(sync.Once))
	onceV.(*sync.Once).Do(func() {
		if _, err := os.Stat(filepath.Join(dir, "complete")); err == nil {
			return
		}
		os.RemoveAll(dir)
		start := time.Now()
		store := maildir.NewStore(dir, maildir.StoreOptions{Hostname: "bench"})
		u, err := store.User("example.test", "alice")
		if err != nil {
			b.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for w := 0; w < 16; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				r := rand.New(rand.NewPCG(uint64(w), 1))
				for i := w; i < n; i += 16 {
					if _, err := u.Deliver(strings.NewReader(benchMessage(r, i)), maildir.DeliverOptions{}); err != nil {
						errs <- err
						return
					}
				}
			}(w)
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
		m, err := u.Mailbox("INBOX")
		if err != nil || m.Refresh() != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "complete"), nil, 0o600); err != nil {
			b.Fatal(err)
		}
		b.Logf("generated %d messages in %v", n, time.Since(start).Round(time.Millisecond))
	})
	return dir
}

func benchServer(b *testing.B) *testServer {
	b.Helper()
	return startTestServer(b, benchDir(b, benchSize()))
}

func benchLogin(b *testing.B, ts *testServer) *imapclient.Client {
	b.Helper()
	c, err := imapclient.DialInsecure(ts.addr, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := c.Login(testUser, testPass).Wait(); err != nil {
		b.Fatal(err)
	}
	return c
}

func BenchmarkSelectWarm(b *testing.B) {
	ts := benchServer(b)
	c := benchLogin(b, ts)
	defer c.Close()
	mustSelect(b, c, "INBOX", false)
	c.Unselect().Wait()
	b.ResetTimer()
	for b.Loop() {
		d := mustSelect(b, c, "INBOX", false)
		if int(d.NumMessages) < benchSize() {
			b.Fatalf("%d messages", d.NumMessages)
		}
		c.Unselect().Wait()
	}
}

// benchClient is a minimal IMAP client for the benchmarks: it reads responses without building
// objects (skipping literals), so the figures are the server's, not imapclient's decoding.
type benchClient struct {
	b   testing.TB
	c   net.Conn
	br  *bufio.Reader
	tag int
}

func dialBench(b testing.TB, ts *testServer, mailbox string) *benchClient {
	b.Helper()
	c, err := net.Dial("tcp", ts.addr)
	if err != nil {
		b.Fatal(err)
	}
	bc := &benchClient{b: b, c: c, br: bufio.NewReaderSize(c, 64<<10)}
	bc.br.ReadString('\n')
	bc.run("LOGIN " + testUser + " " + testPass)
	if mailbox != "" {
		bc.run("EXAMINE " + mailbox)
	}
	return bc
}

// run sends a command and returns the number of untagged FETCH responses (and SEARCH numbers).
func (bc *benchClient) run(cmd string) (fetches, found int) {
	bc.tag++
	tag := "b" + strconv.Itoa(bc.tag)
	fmt.Fprintf(bc.c, "%s %s\r\n", tag, cmd)
	for {
		line, err := bc.br.ReadSlice('\n')
		if err != nil && err != bufio.ErrBufferFull {
			bc.b.Fatal(err)
		}
		if len(line) > 2 && line[0] == '*' && bytes.Contains(line[:min(len(line), 40)], []byte(" FETCH ")) {
			fetches++
		}
		if bytes.HasPrefix(line, []byte("* SEARCH")) {
			found += bytes.Count(line, []byte(" ")) - 1
		}
		// A literal: skip its bytes, then the rest of the line follows.
		if n := literalSize(line); n >= 0 {
			if _, err := bc.br.Discard(n); err != nil {
				bc.b.Fatal(err)
			}
			continue
		}
		if bytes.HasPrefix(line, []byte(tag+" ")) {
			if !bytes.HasPrefix(line, []byte(tag+" OK")) {
				bc.b.Fatalf("%s: %s", cmd, line)
			}
			return fetches, found
		}
	}
}

func literalSize(line []byte) int {
	line = bytes.TrimRight(line, "\r\n")
	if len(line) < 3 || line[len(line)-1] != '}' {
		return -1
	}
	i := bytes.LastIndexByte(line, '{')
	if i < 0 {
		return -1
	}
	n, err := strconv.Atoi(string(line[i+1 : len(line)-1]))
	if err != nil {
		return -1
	}
	return n
}

func (bc *benchClient) close() { bc.c.Close() }

func benchFetch(b *testing.B, bc *benchClient, items string) {
	b.Helper()
	if n, _ := bc.run("UID FETCH 1:* " + items); n < benchSize() {
		b.Fatalf("fetched %d", n)
	}
}

func BenchmarkFetchUIDFlagsSize(b *testing.B) {
	ts := benchServer(b)
	bc := dialBench(b, ts, "INBOX")
	defer bc.close()
	b.ResetTimer()
	for b.Loop() {
		benchFetch(b, bc, "(UID FLAGS RFC822.SIZE)")
	}
}

const headerSync = "(UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Subject Date Message-ID References In-Reply-To Content-Type)])"

// BenchmarkHeaderSyncFirst is Thunderbird's first header sync: a new server, so an empty cache.
func BenchmarkHeaderSyncFirst(b *testing.B) {
	dir := benchDir(b, benchSize())
	for b.Loop() {
		b.StopTimer()
		ts := startTestServer(b, dir)
		bc := dialBench(b, ts, "INBOX")
		b.StartTimer()
		benchFetch(b, bc, headerSync)
		b.StopTimer()
		bc.close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ts.srv.Shutdown(ctx)
		cancel()
		b.StartTimer()
	}
}

func BenchmarkHeaderSyncSecond(b *testing.B) {
	ts := benchServer(b)
	bc := dialBench(b, ts, "INBOX")
	defer bc.close()
	benchFetch(b, bc, headerSync)
	b.ResetTimer()
	for b.Loop() {
		benchFetch(b, bc, headerSync)
	}
	ts.srv.cache.mu.Lock()
	b.ReportMetric(float64(ts.srv.cache.used)/float64(benchSize()), "cache-B/msg")
	ts.srv.cache.mu.Unlock()
}

func benchSearch(b *testing.B, criteria string, warm bool) {
	ts := benchServer(b)
	bc := dialBench(b, ts, "INBOX")
	defer bc.close()
	if warm {
		benchFetch(b, bc, headerSync) // the client has synced: the cache is full
	}
	b.ResetTimer()
	for b.Loop() {
		if _, found := bc.run("UID SEARCH " + criteria); found == 0 {
			b.Fatal("nothing found")
		}
	}
}

func BenchmarkSearchSubject(b *testing.B) { benchSearch(b, "SUBJECT budget", true) }

func BenchmarkSearchText(b *testing.B) { benchSearch(b, `TEXT "printer holiday"`, false) }

func BenchmarkAppend4K(b *testing.B) {
	ts := newTestServer(b)
	c := benchLogin(b, ts)
	defer c.Close()
	msg := []byte(benchMessage(rand.New(rand.NewPCG(1, 2)), 1))
	for len(msg) < 4096 {
		msg = append(msg, "padding padding padding padding padding padding padding padding\r\n"...)
	}
	msg = msg[:4096-2]
	msg = append(msg, '\r', '\n')
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		cmd := c.Append("Archive", int64(len(msg)), nil)
		cmd.Write(msg)
		cmd.Close()
		if _, err := cmd.Wait(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoginSelectLogout runs 10 clients in parallel, each connecting, logging in, selecting
// the big INBOX and logging out.
func BenchmarkLoginSelectLogout(b *testing.B) {
	ts := benchServer(b)
	b.SetParallelism(max(1, 10/runtime.GOMAXPROCS(0)))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c, err := imapclient.DialInsecure(ts.addr, nil)
			if err != nil {
				b.Error(err)
				return
			}
			if err := c.Login(testUser, testPass).Wait(); err != nil {
				b.Error(err)
			}
			if _, err := c.Select("INBOX", nil).Wait(); err != nil {
				b.Error(err)
			}
			c.Logout().Wait()
			c.Close()
		}
	})
}

// BenchmarkIdleMemory measures the server's memory per connection sitting in IDLE (heap and goroutine
// stacks, client side excluded by using raw sockets that hold no state).
func BenchmarkIdleMemory(b *testing.B) {
	ts := newTestServer(b)
	ts.deliver(testMessage(1, "idle"))
	const conns = 200
	for b.Loop() {
		b.StopTimer()
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		var open []net.Conn
		for i := 0; i < conns; i++ {
			c, err := net.Dial("tcp", ts.addr)
			if err != nil {
				b.Fatal(err)
			}
			open = append(open, c)
			fmt.Fprintf(c, "a LOGIN %s %s\r\nb SELECT INBOX\r\nc IDLE\r\n", testUser, testPass)
		}
		// Wait until every connection is idling.
		for _, c := range open {
			buf := make([]byte, 4096)
			var got []byte
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			for !strings.Contains(string(got), "+ idling") {
				n, err := c.Read(buf)
				if err != nil {
					b.Fatal(err)
				}
				got = append(got, buf[:n]...)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perConn := (float64(after.HeapInuse+after.StackInuse) - float64(before.HeapInuse+before.StackInuse)) / conns
		b.ReportMetric(perConn/1024, "KiB/conn")
		for _, c := range open {
			c.Close()
		}
		b.StartTimer()
	}
}
