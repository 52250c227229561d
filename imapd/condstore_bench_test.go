package imapd

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// BenchmarkQResync measures what a client that knew a 100k-message INBOX pays to catch up after 100
// flag changes: SELECT ... (QRESYNC (uidvalidity modseq known-uids)) against the plain way, UID FETCH
// 1:* (FLAGS). Bytes sent by the server per resync are reported as B/resync. The folder size comes
// from IMAPD_QRESYNC_MESSAGES (default 100000).
func BenchmarkQResync(b *testing.B) {
	n := 100000
	if v, err := strconv.Atoi(os.Getenv("IMAPD_QRESYNC_MESSAGES")); err == nil && v > 0 {
		n = v
	}
	dir := b.TempDir()
	cur := filepath.Join(dir, "example.test", "alice", "cur")
	if err := os.MkdirAll(cur, 0o700); err != nil {
		b.Fatal(err)
	}
	msg := []byte("From: a@example.org\r\nSubject: s\r\n\r\nbody\r\n")
	for i := range n {
		flags := ""
		if i%3 == 0 {
			flags = "S"
		}
		name := fmt.Sprintf("%d.M%dP1Q%d.bench,S=%d:2,%s", 1700000000+i/1000, i, i, len(msg), flags)
		if err := os.WriteFile(filepath.Join(cur, name), msg, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	ts := startTestServer(b, dir)
	c := ts.raw(true)
	c.cmd("a1 ENABLE QRESYNC")
	sel := c.cmd("a2 SELECT INBOX")
	var validity string
	var h0 uint64
	for _, l := range sel {
		if m := reValidity.FindStringSubmatch(l); m != nil {
			validity = m[1]
		}
		if m := reHighest.FindStringSubmatch(l); m != nil {
			h0, _ = strconv.ParseUint(m[1], 10, 64)
		}
	}
	other := ts.raw(true)
	other.cmd("o1 SELECT INBOX")
	r := rand.New(rand.NewPCG(1, 2))
	var uids []string
	for range 100 {
		uids = append(uids, strconv.Itoa(1+r.IntN(n)))
	}
	if got := other.cmd(`o2 UID STORE ` + strings.Join(uids, ",") + ` +FLAGS.SILENT (\Flagged)`); !strings.Contains(last(got), "OK") {
		b.Fatal(got)
	}
	run := func(b *testing.B, cmd string) {
		var bytes, fetches int
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			lines := c.cmd(fmt.Sprintf("t%d %s", i, cmd))
			bytes, fetches = 0, 0
			for _, l := range lines {
				bytes += len(l)
				if strings.HasPrefix(l, "* ") && strings.Contains(l, " FETCH (") {
					fetches++
				}
			}
		}
		b.ReportMetric(float64(bytes), "B/resync")
		b.ReportMetric(float64(fetches), "fetches/resync")
	}
	b.Run("qresync-select", func(b *testing.B) {
		run(b, fmt.Sprintf("SELECT INBOX (QRESYNC (%s %d 1:%d))", validity, h0, n))
	})
	b.Run("uid-fetch-flags", func(b *testing.B) {
		c.cmd("s1 SELECT INBOX")
		run(b, "UID FETCH 1:* (FLAGS)")
	})
}
