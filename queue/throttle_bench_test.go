package queue

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"postie/envelope"
)

// BenchmarkNewsletter sends a newsletter of 10,000 messages to 500
// destination domains (20 recipients each) through the real outbound
// client to 5 loopback sinks, each the MX host of 100 of the domains (as
// Google's and Microsoft's hosts serve many domains), with every
// destination (MX host) paced by the Throttle. It reports the total time,
// the messages per connection (reuse), the most connections a sink saw at
// once and the most messages it took within one Window against the
// limits, and the queue's memory per queued message.
//
// The Window is a second rather than a minute, so that the run takes
// seconds: "paced" allows 100 messages per second-window and 8 connections
// per MX host; "unpaced" only the connections. Run with -benchtime=1x.
func BenchmarkNewsletter(b *testing.B) {
	for _, c := range []struct {
		name  string
		rate  int
		conns int
	}{{"paced", 100, 8}, {"unpaced", 0, 8}} {
		b.Run(c.name, func(b *testing.B) {
			for range b.N {
				newsletterRun(b, c.rate, c.conns)
			}
		})
	}
}

const (
	newsletterMsgs    = 10_000
	newsletterDomains = 500
	newsletterSinks   = 5
)

func newsletterRun(b *testing.B, rate, conns int) {
	b.StopTimer()
	window := time.Second
	ns := newNewsletterSetup(b, newsletterSinks, newsletterDomains, ThrottleOptions{
		MessagesPerMinute: rate, Connections: conns, Window: window, Logger: testLogger(b),
	})
	dir := b.TempDir()
	if shm, err := os.MkdirTemp("/dev/shm", "postie-bench-"); err == nil { // fsync costs nothing there
		dir = shm
		b.Cleanup(func() { os.RemoveAll(shm) })
	}
	opts := testOptions(b, dir, newClock(), ns.out)
	opts.Now = nil
	opts.Throttle = ns.thr
	opts.MaxConcurrency, opts.MaxPerDomain = 100, 4
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	q, err := Open(opts)
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	body := "From: news@example.test\r\nSubject: the newsletter\r\n\r\n" + strings.Repeat("All the news that fits.\r\n", 80)
	for i := range newsletterMsgs {
		env := &envelope.Envelope{From: "news@example.test", To: []string{fmt.Sprintf("r%d@d%d.test", i, i%newsletterDomains)}}
		if _, err := q.Enqueue(context.Background(), env, strings.NewReader(body)); err != nil {
			b.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perMsg := float64(after.HeapAlloc-before.HeapAlloc) / newsletterMsgs

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	b.StartTimer()
	start := time.Now()
	go func() { done <- q.Run(ctx, &fakeBouncer{}) }()
	deadline := start.Add(10 * time.Minute)
	for sinkTotal(ns) < newsletterMsgs {
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d messages arrived", sinkTotal(ns), newsletterMsgs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	cancel()
	<-done

	totalConns, peak, perWindow := 0, 0, 0
	for _, s := range ns.sinks {
		p, c, _ := s.stats()
		totalConns += c
		peak = max(peak, p)
		perWindow = max(perWindow, s.maxInWindow(window))
	}
	if peak > conns {
		b.Errorf("a sink saw %d connections at once; the cap is %d", peak, conns)
	}
	if rate > 0 && perWindow > rate {
		b.Errorf("a sink took %d messages within %v; the limit is %d", perWindow, window, rate)
	}
	b.ReportMetric(elapsed.Seconds(), "s/newsletter")
	b.ReportMetric(newsletterMsgs/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(newsletterMsgs)/float64(totalConns), "msgs/conn")
	b.ReportMetric(float64(peak), "peak-conns/sink")
	b.ReportMetric(float64(perWindow), "max-msgs/window/sink")
	b.ReportMetric(perMsg, "queue-B/msg")
}

func sinkTotal(ns *newsletterSetup) int {
	n := 0
	for _, s := range ns.sinks {
		_, _, m := s.stats()
		n += m
	}
	return n
}
