package suppress

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkAdd10000 adds 10,000 hard bounces, one by one, to an empty
// list: a newsletter's worth of dead addresses.
func BenchmarkAdd10000(b *testing.B) {
	c := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	for b.Loop() {
		b.StopTimer()
		l, err := Open(Options{Path: filepath.Join(b.TempDir(), "s.json"), For: 30 * 24 * time.Hour, Now: c.Now})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		for i := range 10000 {
			if err := l.Add(fmt.Sprintf("user%d@remote%d.test", i, i%97), "550 5.1.1 <user@remote.test>: Recipient address rejected: User unknown"); err != nil {
				b.Fatal(err)
			}
		}
	}
}
