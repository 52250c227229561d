package imapd

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Memory of idle connections: issue 13 asks for at most 32 KiB of RSS per connection that is
// logged in, has INBOX selected and sits in IDLE. BenchmarkIdleConnMemory is the regression guard:
// it runs the server in a child process (this test binary again, TestIdleMemChild) so that the
// clients' own memory is not counted, opens idleMemConns connections, and reports per connection
//
//	live-KiB/conn  heap in use + goroutine stacks after a collection (steady; what the guard checks)
//	RSS-KiB/conn   the child's VmRSS after a collection and return of free memory to the OS
//	stack-KiB/conn goroutine stacks
//	objects-KiB/conn heap objects (the rest of live is the heap's spans' free slots)
//	goroutines/conn
//
// It fails when live-KiB/conn is over idleMemLimit or an idle connection has more than one goroutine. Run it with
//
//	go test ./imapd -run XXX -bench IdleConnMemory -benchtime 1x
//
// The logins here check a plain password; `postie serve` hashes with argon2id, whose heap the
// trim (memtrim.go) returns once logins stop: bench/README.md measures that end to end.
const (
	idleMemConns = 500
	idleMemLimit = 32.0 // KiB per idle connection
	idleMemChild = "POSTIE_IMAPD_IDLEMEM_CHILD"
	// idleMemProfile names a file: the child profiles every allocation and writes its heap profile
	// there (and its goroutines to FILE.goroutines) at each sample, the last one with the
	// connections open: `go tool pprof -sample_index=inuse_space -top imapd.test FILE`.
	idleMemProfile = "POSTIE_IMAPD_IDLEMEM_PROFILE"
)

func BenchmarkIdleConnMemory(b *testing.B) {
	for _, useTLS := range []bool{false, true} {
		name := "plain"
		if useTLS {
			name = "tls"
		}
		b.Run(name, func(b *testing.B) {
			var m idleMemSample
			for b.Loop() {
				m = measureIdleMem(b, useTLS)
			}
			b.ReportMetric(m.live, "live-KiB/conn")
			b.ReportMetric(m.rss, "RSS-KiB/conn")
			b.ReportMetric(m.stacks, "stack-KiB/conn")
			b.ReportMetric(m.heapAlloc, "objects-KiB/conn")
			b.ReportMetric(m.goroutines, "goroutines/conn")
			if m.goroutines > 1.01 { // IDLE without a goroutine of its own (idlestart.go)
				b.Errorf("an idle connection runs %.2f goroutines, want 1", m.goroutines)
			}
			if m.live > idleMemLimit {
				b.Errorf("an idle connection holds %.1f KiB (heap and stacks), over %.0f KiB", m.live, idleMemLimit)
			}
		})
	}
}

// idleMemSample is what the child reports: heap in use + stacks, RSS, goroutines, stacks, heap
// objects (KiB).
type idleMemSample struct{ live, rss, goroutines, stacks, heapAlloc float64 }

// measureIdleMem starts a child server, samples it, opens the connections, samples it again.
func measureIdleMem(b *testing.B, useTLS bool) (perConn idleMemSample) {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestIdleMemChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), idleMemChild+"=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			b.Errorf("child server: %v", err)
		}
	}()
	out := bufio.NewReader(stdout)
	line, err := out.ReadString('\n')
	if err != nil {
		b.Fatalf("child server: %v", err)
	}
	var addr, tlsAddr string
	if _, err := fmt.Sscan(line, &addr, &tlsAddr); err != nil {
		b.Fatalf("child server said %q: %v", line, err)
	}
	sample := func() idleMemSample {
		b.Helper()
		if _, err := io.WriteString(stdin, "sample\n"); err != nil {
			b.Fatal(err)
		}
		line, err := out.ReadString('\n')
		if err != nil {
			b.Fatalf("child server: %v", err)
		}
		var s idleMemSample
		if _, err := fmt.Sscan(line, &s.live, &s.rss, &s.goroutines, &s.stacks, &s.heapAlloc); err != nil {
			b.Fatalf("child server said %q: %v", line, err)
		}
		return s
	}
	if useTLS {
		addr = tlsAddr
	}
	// One connection first, so that what every server keeps once (the mailbox's registry entry
	// and its idle watcher, pools) is in "before".
	conns := make([]net.Conn, 0, idleMemConns+1)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	c, err := dialIdle(addr, useTLS)
	if err != nil {
		b.Fatal(err)
	}
	conns = append(conns, c)
	before := sample()
	for range idleMemConns {
		c, err := dialIdle(addr, useTLS)
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
	}
	time.Sleep(200 * time.Millisecond) // the last IDLE's goroutines are parked
	after := sample()
	n := float64(idleMemConns)
	return idleMemSample{
		live: (after.live - before.live) / n, rss: (after.rss - before.rss) / n,
		goroutines: (after.goroutines - before.goroutines) / n, stacks: (after.stacks - before.stacks) / n,
		heapAlloc: (after.heapAlloc - before.heapAlloc) / n,
	}
}

// dialIdle opens a connection, logs in, selects INBOX and enters IDLE.
func dialIdle(addr string, useTLS bool) (net.Conn, error) {
	var c net.Conn
	var err error
	if useTLS {
		c, err = tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	} else {
		c, err = net.Dial("tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	expect := func(prefix string) error {
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return fmt.Errorf("waiting for %q: %w", prefix, err)
			}
			if strings.HasPrefix(line, prefix) {
				return nil
			}
			if !strings.HasPrefix(line, "* ") {
				return fmt.Errorf("waiting for %q: %q", prefix, line)
			}
		}
	}
	steps := []struct{ send, want string }{
		{"", "* OK"},
		{"a LOGIN " + testUser + " " + testPass + "\r\n", "a OK"},
		{"b SELECT INBOX\r\n", "b OK"},
		{"c IDLE\r\n", "+ "},
	}
	for _, s := range steps {
		if s.send != "" {
			if _, err := io.WriteString(c, s.send); err != nil {
				c.Close()
				return nil, err
			}
		}
		if err := expect(s.want); err != nil {
			c.Close()
			return nil, err
		}
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// TestIdleMemChild is BenchmarkIdleConnMemory's server; it does nothing in an ordinary test run.
// It prints its plaintext and TLS addresses, then answers each "sample" line on stdin with heap
// in use + stacks and VmRSS (KiB) and the goroutine count, after a collection, until stdin ends.
func TestIdleMemChild(t *testing.T) {
	if os.Getenv(idleMemChild) == "" {
		t.Skip("BenchmarkIdleConnMemory's child server")
	}
	profile := os.Getenv(idleMemProfile)
	if profile != "" {
		runtime.MemProfileRate = 1
	}
	ts := newTestServer(t, func(o *Options) { o.MaxConnections, o.MaxConnectionsPerIP = 0, 0 })
	fmt.Printf("%s %s\n", ts.addr, ts.tlsAddr)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		runtime.GC()
		debug.FreeOSMemory()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		fmt.Printf("%.1f %d %d %.1f %.1f\n", float64(m.HeapInuse+m.StackInuse)/1024, vmRSS(), runtime.NumGoroutine(),
			float64(m.StackInuse)/1024, float64(m.HeapAlloc)/1024)
		if profile != "" {
			writeProfiles(t, profile)
		}
	}
}

// writeProfiles writes the heap profile to path and the goroutines (with stacks) to path.goroutines.
func writeProfiles(t *testing.T, path string) {
	for name, file := range map[string]string{"heap": path, "goroutine": path + ".goroutines"} {
		f, err := os.Create(file)
		if err != nil {
			t.Error(err)
			return
		}
		debug := 0
		if name == "goroutine" {
			debug = 1
		}
		if err := pprof.Lookup(name).WriteTo(f, debug); err != nil {
			t.Error(err)
		}
		f.Close()
	}
}

// vmRSS is this process's resident set in KiB (0 where /proc is missing).
func vmRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return n
		}
	}
	return 0
}
