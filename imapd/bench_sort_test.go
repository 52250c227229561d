package imapd

import (
	"testing"
	"time"
)

// SORT, THREAD and the search index on the benchmark INBOX (IMAPD_BENCH_MESSAGES, 100000 for the
// issue's figures). The first SORT or THREAD of a folder reads every header (as a first header sync
// does); the benchmarks time the ones after it, which use the per-mailbox sort keys.

func benchSortCmd(b *testing.B, cmd string) {
	ts := benchServer(b)
	bc := dialBench(b, ts, "INBOX")
	defer bc.close()
	start := time.Now()
	bc.run(cmd)
	first := time.Since(start)
	b.ResetTimer()
	for b.Loop() {
		bc.run(cmd)
	}
	b.ReportMetric(float64(first.Milliseconds()), "first-ms")
	kc := &ts.srv.boxes.existing(mustMailbox(b, ts, "INBOX")).keys
	kc.mu.Lock()
	total := 0
	for _, k := range kc.keys {
		total += k.keyBytes()
	}
	if n := len(kc.keys); n > 0 {
		b.ReportMetric(float64(total)/float64(n), "keys-B/msg")
	}
	kc.mu.Unlock()
}

func BenchmarkSortSubject(b *testing.B)     { benchSortCmd(b, "UID SORT (SUBJECT) UTF-8 ALL") }
func BenchmarkSortReverseDate(b *testing.B) { benchSortCmd(b, "UID SORT (REVERSE DATE) UTF-8 ALL") }
func BenchmarkSortFromArrival(b *testing.B) { benchSortCmd(b, "SORT (FROM ARRIVAL) UTF-8 ALL") }
func BenchmarkESortCount(b *testing.B) {
	benchSortCmd(b, "SORT RETURN (COUNT MIN) (DATE) UTF-8 UNSEEN")
}
func BenchmarkThreadReferences(b *testing.B)  { benchSortCmd(b, "UID THREAD REFERENCES UTF-8 ALL") }
func BenchmarkThreadOrderedSubj(b *testing.B) { benchSortCmd(b, "UID THREAD ORDEREDSUBJECT UTF-8 ALL") }

// benchIndexedSearch times SEARCH with the index built (the first search of a big folder scans and
// builds it in the background; the wait for it is not timed), and reports the index's size.
func benchIndexedSearch(b *testing.B, criteria string, noIndex bool) {
	ts := benchServer(b)
	ts.srv.opts.NoSearchIndex = noIndex
	bc := dialBench(b, ts, "INBOX")
	defer bc.close()
	start := time.Now()
	bc.run("UID SEARCH " + criteria)
	if !noIndex {
		h := &ts.srv.boxes.existing(mustMailbox(b, ts, "INBOX")).index
		for {
			h.mu.Lock()
			done := h.idx != nil && !h.building
			h.mu.Unlock()
			if done {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		build := time.Since(start)
		st := h.idx.Stats()
		defer func() {
			b.ReportMetric(float64(build.Milliseconds()), "build-ms")
			b.ReportMetric(float64(st.MemBytes)/(1<<20), "index-MiB")
			b.ReportMetric(float64(st.Tokens), "tokens")
		}()
	}
	b.ResetTimer()
	for b.Loop() {
		if _, found := bc.run("UID SEARCH " + criteria); found == 0 {
			b.Fatal("nothing found")
		}
	}
}

func BenchmarkSearchTextWordIndexed(b *testing.B) { benchIndexedSearch(b, "TEXT contract", false) }
func BenchmarkSearchTextWordScan(b *testing.B)    { benchIndexedSearch(b, "TEXT contract", true) }
func BenchmarkSearchTextRareIndexed(b *testing.B) { benchIndexedSearch(b, "TEXT bench4242@", false) }
func BenchmarkSearchTextPhraseIndexed(b *testing.B) {
	benchIndexedSearch(b, `TEXT "printer holiday"`, false)
}
