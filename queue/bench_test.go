package queue

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"postie/envelope"
)

var body4k = bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd\r\n"), 64)

// BenchmarkEnqueue measures durable Enqueue of 4 KiB messages (two file
// fsyncs each, directory fsyncs shared by concurrent callers).
func BenchmarkEnqueue(b *testing.B) {
	for _, workers := range []int{1, 10} {
		b.Run(fmt.Sprintf("goroutines=%d", workers), func(b *testing.B) {
			q, err := Open(testOptions(b, b.TempDir(), newClock(), nil))
			if err != nil {
				b.Fatal(err)
			}
			defer q.Close()
			env := &envelope.Envelope{From: "alice@example.test", To: []string{"bob@remote.test"}}
			b.SetBytes(int64(len(body4k)))
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for w := range workers {
				n := b.N / workers
				if w < b.N%workers {
					n++
				}
				wg.Go(func() {
					for range n {
						if _, err := q.Enqueue(context.Background(), env, bytes.NewReader(body4k)); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
		})
	}
}

type instantDeliverer struct{}

func (instantDeliverer) Deliver(_ context.Context, t *envelope.Transfer, _ io.ReaderAt, _ int64) []error {
	rcpts := t.To
	return make([]error, len(rcpts))
}

// BenchmarkDrain measures how fast the scheduler empties a full spool into
// a Deliverer that accepts at once (each message: an attempt, then its
// files removed and the directory fsynced).
func BenchmarkDrain(b *testing.B) {
	clock := newClock()
	opts := testOptions(b, b.TempDir(), clock, instantDeliverer{})
	opts.MaxConcurrency = 20
	q, err := Open(opts)
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	for i := range b.N {
		env := &envelope.Envelope{From: "alice@example.test", To: []string{fmt.Sprintf("bob@d%d.test", i%10)}}
		if _, err := q.Enqueue(context.Background(), env, bytes.NewReader(body4k)); err != nil {
			b.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	b.ResetTimer()
	start := time.Now()
	go func() { done <- q.Run(ctx, &fakeBouncer{}) }()
	for {
		q.mu.Lock()
		n := len(q.items)
		q.mu.Unlock()
		if n == 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
}
