package main

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
)

// memUse is the resident memory of a set of processes, in KiB.
type memUse struct {
	rss, pss int64
	procs    int
}

// procMem reads VmRSS from /proc/PID/status and Pss from smaps_rollup.
func procMem(pid int) (memUse, error) {
	var m memUse
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return m, err
	}
	m.rss = kibField(string(status), "VmRSS:")
	if rollup, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid)); err == nil {
		m.pss = kibField(string(rollup), "Pss:")
	}
	m.procs = 1
	return m, nil
}

func kibField(text, key string) int64 {
	for _, line := range strings.Split(text, "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == key {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	return 0
}

// children sums the memory of the children of parent whose command name is
// one of comms, comma-separated (Dovecot's imap and imap-login processes are
// children of its master).
func children(parent int, comms string) (memUse, error) {
	names := strings.Split(comms, ",")
	var sum memUse
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		return sum, err
	}
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid ...: comm may hold spaces, so cut at the last ')'.
		s := string(b)
		open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || close < open {
			continue
		}
		f := strings.Fields(s[close+1:])
		if !slices.Contains(names, s[open+1:close]) || len(f) < 2 || f[1] != strconv.Itoa(parent) {
			continue
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(s[:open]))
		m, err := procMem(pid)
		if err != nil {
			continue
		}
		sum.rss += m.rss
		sum.pss += m.pss
		sum.procs++
	}
	return sum, nil
}

// cmdIdle opens conns IMAP connections spread over the users, each logged
// in with INBOX selected and in IDLE, and records the resident memory they
// cost the server.
func cmdIdle(args []string) error {
	fs := newFlags("idle")
	rec := commonFlags(fs)
	addr := fs.String("addr", "", "host:port of the IMAP server")
	conns := fs.Int("conns", 1000, "connections")
	users := fs.Int("users", 20, "log in as u01..uNN in turn")
	domain := fs.String("domain", "bench.test", "users' domain")
	pass := fs.String("pass", "", "password of every user")
	pid := fs.Int("pid", 0, "measure this process (Postie)")
	parent := fs.Int("children-of", 0, "measure the children of this process named -comm (Dovecot's master)")
	comm := fs.String("comm", "imap", "command names of the children, comma-separated")
	settle := fs.Duration("settle", 3*time.Second, "wait before measuring")
	logins := fs.Int("logins", 4, "logins in progress at once")
	late := fs.Duration("late", 0, "also print (not record) the memory this much later, connections still open")
	useTLS := fs.Bool("tls", false, "connect with implicit TLS (IMAPS; the certificate is not checked)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	measure := func() (memUse, error) {
		if *pid > 0 {
			return procMem(*pid)
		}
		return children(*parent, *comm)
	}
	before, err := measure()
	if err != nil {
		return err
	}
	start := time.Now()
	clients, err := openIdle(*addr, *conns, *logins, *users, *domain, *pass, *useTLS)
	defer func() {
		for _, c := range clients {
			if c != nil {
				c.Close()
			}
		}
	}()
	if err != nil {
		return err
	}
	fmt.Printf("  %-7s %d connections logged in, selected and idling after %v\n", rec.server, *conns,
		time.Since(start).Round(time.Millisecond))
	time.Sleep(*settle)
	after, err := measure()
	if err != nil {
		return err
	}
	fmt.Printf("  %-7s memory before: %d KiB RSS in %d process(es); after: %d KiB RSS, %d KiB PSS in %d\n",
		rec.server, before.rss, before.procs, after.rss, after.pss, after.procs)
	if *late > 0 {
		time.Sleep(*late)
		if m, err := measure(); err == nil {
			fmt.Printf("  %-7s memory %v later: %d KiB RSS, %d KiB PSS; per connection %.0f KiB RSS, %.0f KiB PSS\n",
				rec.server, *late, m.rss, m.pss, float64(m.rss-before.rss)/float64(*conns), float64(m.pss-before.pss)/float64(*conns))
		}
	}
	n := float64(*conns)
	what, id := fmt.Sprintf("IMAP %d idle connections (IDLE)", *conns), "mem.idle"
	if *useTLS {
		what, id = fmt.Sprintf("IMAP %d idle connections (IDLE, TLS)", *conns), "mem.idle.tls"
	}
	if err := rec.record(id+".rss", what+": RSS per connection", "KiB", lower,
		float64(after.rss-before.rss)/n); err != nil {
		return err
	}
	if err := rec.record(id+".pss", what+": PSS per connection", "KiB", lower,
		float64(after.pss-before.pss)/n); err != nil {
		return err
	}
	return rec.record(id+".total", what+": total RSS", "MiB", lower, float64(after.rss)/1024)
}

// openIdle opens the connections, logging in k at a time; it stops at the
// first failure.
func openIdle(addr string, n, k, users int, domain, pass string, useTLS bool) ([]*imapclient.Client, error) {
	clients := make([]*imapclient.Client, n)
	var next atomic.Int64
	var failed atomic.Bool
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for w := 0; w < k; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !failed.Load() {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				c, err := idleOne(addr, fmt.Sprintf("u%02d@%s", i%users+1, domain), pass, useTLS)
				clients[i] = c
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("connection %d: %w", i, err)
					}
					mu.Unlock()
					failed.Store(true)
				}
			}
		}()
	}
	wg.Wait()
	return clients, firstErr
}

func idleOne(addr, user, pass string, useTLS bool) (*imapclient.Client, error) {
	dial := imapclient.DialInsecure
	if useTLS {
		dial = func(addr string, o *imapclient.Options) (*imapclient.Client, error) {
			return imapclient.DialTLS(addr, &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}})
		}
	}
	c, err := dial(addr, nil)
	if err != nil {
		return nil, err
	}
	if err := c.Login(user, pass).Wait(); err != nil {
		c.Close()
		return nil, fmt.Errorf("login %s: %w", user, err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		c.Close()
		return nil, fmt.Errorf("select: %w", err)
	}
	if _, err := c.Idle(); err != nil {
		c.Close()
		return nil, fmt.Errorf("idle: %w", err)
	}
	return c, nil
}
