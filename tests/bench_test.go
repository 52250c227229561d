package tests

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// BenchmarkInboundSMTP measures durable inbound delivery end to end: the
// real server, go-smtp clients on loopback, 4 KiB messages to 10 users,
// each answered 250 only after the Maildir fsyncs. Reported as msgs/s.
func BenchmarkInboundSMTP(b *testing.B) {
	for _, sessions := range []int{1, 10, 50} {
		b.Run(fmt.Sprintf("sessions=%d", sessions), func(b *testing.B) {
			in := newInstance(b, "")
			for u := 0; u < 10; u++ {
				in.addUser(fmt.Sprintf("u%d@example.test", u))
			}
			in.start()
			body := "Subject: bench\r\n\r\n" + strings.Repeat(strings.Repeat("x", 62)+"\r\n", 64)
			var next atomic.Int64
			var failed atomic.Int64
			b.ResetTimer()
			var wg sync.WaitGroup
			for s := 0; s < sessions; s++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						n := next.Add(1) - 1
						if n >= int64(b.N) {
							return
						}
						if err := send(in.ports["smtp"], "bench@remote.test", []string{fmt.Sprintf("u%d@example.test", n%10)}, body); err != nil {
							failed.Add(1)
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			if failed.Load() > 0 {
				b.Fatalf("%d of %d messages failed", failed.Load(), b.N)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			in.kill()
		})
	}
}

// BenchmarkDiskFsyncCycle is the disk's ceiling for durable acceptance: the
// write → fsync → rename → fsync(dir) cycle of one Maildir delivery, from 1
// and 16 writers.
func BenchmarkDiskFsyncCycle(b *testing.B) {
	for _, writers := range []int{1, 16} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			dir := b.TempDir()
			for _, d := range []string{"tmp", "new"} {
				os.Mkdir(filepath.Join(dir, d), 0o700)
			}
			payload := make([]byte, 4096)
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			for w := 0; w < writers; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					newDir, _ := os.Open(filepath.Join(dir, "new"))
					defer newDir.Close()
					for {
						n := next.Add(1)
						if n > int64(b.N) {
							return
						}
						name := fmt.Sprintf("m%d", n)
						tmp := filepath.Join(dir, "tmp", name)
						f, err := os.Create(tmp)
						if err != nil {
							b.Error(err)
							return
						}
						f.Write(payload)
						f.Sync()
						f.Close()
						os.Rename(tmp, filepath.Join(dir, "new", name))
						newDir.Sync()
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "cycles/s")
		})
	}
}

// BenchmarkSubmissionRemote measures what issue 5 asks: submission
// acceptance for a remote recipient (authenticated over STARTTLS, the
// message fsynced into the queue before the 250), at 1 and 10 sessions,
// reported as msgs/s; and the drain rate of the queue into a fast sink on
// loopback standing in for the remote MX ("drained/s": from the first
// submission until the sink holds every message).
func BenchmarkSubmissionRemote(b *testing.B) {
	for _, sessions := range []int{1, 10} {
		b.Run(fmt.Sprintf("sessions=%d", sessions), func(b *testing.B) {
			world := newRemoteWorld(b)
			in := newInstance(b, world.extraConf)
			in.addUser("ann@example.test")
			in.start()
			body := "From: ann@example.test\r\nSubject: bench\r\n\r\n" + strings.Repeat(strings.Repeat("x", 62)+"\r\n", 64)
			var next, failed atomic.Int64
			start := time.Now()
			b.ResetTimer()
			var wg sync.WaitGroup
			for s := 0; s < sessions; s++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					// One login per session, as a client sending a batch does:
					// this measures the queue write, not the password hash.
					c, err := smtp.DialStartTLS(in.ports["submission"], &tls.Config{InsecureSkipVerify: true})
					if err != nil {
						failed.Add(1)
						return
					}
					defer c.Close()
					if err := c.Auth(sasl.NewPlainClient("", "ann@example.test", password("ann@example.test"))); err != nil {
						failed.Add(1)
						return
					}
					for next.Add(1) <= int64(b.N) {
						if err := c.SendMail("ann@example.test", []string{"bob@remote.test"}, strings.NewReader(body)); err != nil {
							failed.Add(1)
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			if failed.Load() > 0 {
				b.Fatalf("%d of %d submissions failed", failed.Load(), b.N)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			deadline := time.Now().Add(2 * time.Minute)
			for len(world.backup.messages()) < b.N && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if got := len(world.backup.messages()); got < b.N {
				b.Fatalf("the sink got %d of %d messages", got, b.N)
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "drained/s")
			in.kill()
		})
	}
}
