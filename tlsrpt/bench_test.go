package tlsrpt

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
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

// BenchmarkSendDay is a forced report run over a day of 100,000 sessions
// with 2,000 policy domains (a newsletter's), one in ten taking reports:
// reading the day and building each domain's report.
func BenchmarkSendDay(b *testing.B) {
	const sessions, domains = 100000, 2000
	dir := b.TempDir()
	dns := &fakeDNS{txt: map[string][]string{}, fail: map[string]bool{}}
	for d := 0; d < domains; d += 10 {
		dns.txt[fmt.Sprintf("_smtp._tls.d%d.test", d)] = []string{"v=TLSRPTv1; rua=mailto:rua@d.test"}
	}
	log := slog.New(slog.DiscardHandler)
	for b.Loop() {
		b.StopTimer()
		os.RemoveAll(dir)
		rec, err := NewRecorder(Options{Dir: dir, Logger: log})
		if err != nil {
			b.Fatal(err)
		}
		for i := range sessions {
			rec.Record(Result{PolicyDomain: fmt.Sprintf("d%d.test", i%domains), PolicyType: PolicyNoneFound,
				MXHost: fmt.Sprintf("mx.d%d.test", i%domains), SendingIP: "192.0.2.1", ReceivingIP: "198.51.100.1"})
		}
		if err := rec.Flush(); err != nil {
			b.Fatal(err)
		}
		mail := &fakeMailer{}
		rep, err := NewReporter(ReporterOptions{Dir: dir, Hostname: "mail.example.org", From: "postmaster@example.org",
			Resolver: dns, Mailer: mail, Logger: log})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if n, err := rep.Send(context.Background(), true); err != nil || n != domains/10 {
			b.Fatalf("Send = %d, %v", n, err)
		}
	}
}

// BenchmarkDayFile records a day of 100,000 sessions to 2,000 MTA-STS
// domains, flushed every 100 sessions (a second's worth at volume), and
// reports the size of the day's file (file-bytes) and the cost of a report
// run over it.
func BenchmarkDayFile(b *testing.B) {
	const sessions, domains = 100000, 2000
	log := slog.New(slog.DiscardHandler)
	for b.Loop() {
		b.StopTimer()
		dir := b.TempDir()
		rec, err := NewRecorder(Options{Dir: dir, Logger: log, Now: func() time.Time { return day1 }})
		if err != nil {
			b.Fatal(err)
		}
		for i := range sessions {
			d := fmt.Sprintf("d%d.test", i%domains)
			res := Result{PolicyDomain: d, PolicyType: PolicySTS, MXHost: "mx1." + d, SendingIP: "192.0.2.1", ReceivingIP: "198.51.100.1",
				PolicyStrings: []string{"version: STSv1", "mode: enforce", "mx: mx1." + d, "mx: *.backup." + d, "max_age: 604800"}}
			if i%50 == 0 {
				res.Type, res.Detail = CertificateExpired, "x509: certificate has expired or is not yet valid"
			}
			rec.Record(res)
			if i%100 == 99 {
				if err := rec.Flush(); err != nil {
					b.Fatal(err)
				}
			}
		}
		fi, err := os.Stat(filepath.Join(dir, day1.Format(dayFormat)+recordExt))
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(fi.Size()), "file-bytes")
		rep, err := NewReporter(ReporterOptions{Dir: dir, Hostname: "mail.example.org", From: "postmaster@example.org",
			Resolver: &fakeDNS{txt: map[string][]string{}}, Mailer: &fakeMailer{}, Logger: log})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := rep.Send(context.Background(), true); err != nil {
			b.Fatal(err)
		}
	}
}
