package tlsrpt

import (
	"log/slog"
	"testing"
)

// BenchmarkRecord is the cost on the delivery path: one Result queued.
func BenchmarkRecord(b *testing.B) {
	rec, err := NewRecorder(Options{Dir: b.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	r := results()[2]
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		rec.Record(r)
		if i%maxPending == maxPending-1 {
			rec.mu.Lock()
			rec.pending = rec.pending[:0]
			rec.mu.Unlock()
		}
	}
}

// BenchmarkFlush is one second's flush of 100 sessions: one append and
// one fsync.
func BenchmarkFlush(b *testing.B) {
	rec, err := NewRecorder(Options{Dir: b.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	rs := results()
	for b.Loop() {
		for i := range 100 {
			rec.Record(rs[i%len(rs)])
		}
		if err := rec.Flush(); err != nil {
			b.Fatal(err)
		}
	}
}
