package tlsrpt

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-message"

	"postie/envelope"
	"postie/safeio"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

type fakeDNS struct {
	mu   sync.Mutex
	txt  map[string][]string
	fail map[string]bool // temporary failure
	asks []string
}

func (f *fakeDNS) LookupTXT(_ context.Context, name string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asks = append(f.asks, name)
	if f.fail[name] {
		return nil, &net.DNSError{Err: "server failure", Name: name, IsTemporary: true}
	}
	if t, ok := f.txt[name]; ok {
		return t, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

type sentMail struct {
	env  envelope.Envelope
	body []byte
}

type fakeMailer struct {
	mu   sync.Mutex
	err  error
	sent []sentMail
}

func (f *fakeMailer) Deliver(_ context.Context, env *envelope.Envelope, body io.Reader) []error {
	b, _ := io.ReadAll(body)
	f.mu.Lock()
	defer f.mu.Unlock()
	errs := make([]error, len(env.To))
	if f.err != nil {
		for i := range errs {
			errs[i] = f.err
		}
		return errs
	}
	f.sent = append(f.sent, sentMail{*env, b})
	return errs
}

var day1 = time.Date(2026, 3, 10, 8, 0, 0, 0, time.UTC)

func results() []Result {
	sts := []string{"version: STSv1", "mode: enforce", "mx: mx1.a.test", "mx: *.backup.a.test", "max_age: 86400"}
	return []Result{
		{PolicyDomain: "A.test.", PolicyType: PolicySTS, PolicyStrings: sts, MXHost: "mx1.a.test", SendingIP: "192.0.2.1", ReceivingIP: "198.51.100.1"},
		{PolicyDomain: "a.test", PolicyType: PolicySTS, PolicyStrings: sts, MXHost: "mx1.a.test", SendingIP: "192.0.2.1", ReceivingIP: "198.51.100.1"},
		{PolicyDomain: "a.test", PolicyType: PolicySTS, PolicyStrings: sts, MXHost: "mx2.backup.a.test", SendingIP: "192.0.2.1",
			ReceivingIP: "198.51.100.2", Type: CertificateExpired, Detail: "x509: certificate has expired"},
		{PolicyDomain: "a.test", PolicyType: PolicySTS, PolicyStrings: sts, MXHost: "mx2.backup.a.test", SendingIP: "192.0.2.1",
			ReceivingIP: "198.51.100.2", Type: CertificateExpired, Detail: "x509: certificate has expired"},
		{PolicyDomain: "a.test", PolicyType: PolicySTS, PolicyStrings: sts, MXHost: "mx1.a.test", SendingIP: "192.0.2.1",
			ReceivingIP: "198.51.100.1", Type: StartTLSNotSupported},
		{PolicyDomain: "b.test", PolicyType: PolicyNoneFound, MXHost: "mx.b.test", Type: Success},
		{PolicyDomain: "c.test", PolicyType: PolicyTLSA, PolicyStrings: []string{"3 1 1 abcd"}, MXHost: "mx.c.test", Type: TLSAInvalid},
	}
}

type fixture struct {
	dir  string
	clk  *clock
	rec  *Recorder
	rep  *Reporter
	dns  *fakeDNS
	mail *fakeMailer
	inj  *safeio.Injector
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir(), clk: &clock{t: day1}, mail: &fakeMailer{}, inj: &safeio.Injector{},
		dns: &fakeDNS{txt: map[string][]string{
			"_smtp._tls.a.test": {"v=spf1 -all", "v=TLSRPTv1; rua=mailto:tls%2Breports@a.test,https://reports.a.test/tlsrpt"},
			"_smtp._tls.c.test": {"v=TLSRPTv1;rua=mailto:rua@c.test"},
		}, fail: map[string]bool{}}}
	fsys := &safeio.FS{Fault: func(op safeio.Op, path string) error { return f.inj.Fault(op, filepath.Base(path)) }}
	log := slog.New(slog.DiscardHandler)
	var err error
	if f.rec, err = NewRecorder(Options{Dir: f.dir, FS: fsys, Now: f.clk.Now, Logger: log}); err != nil {
		t.Fatal(err)
	}
	f.rep, err = NewReporter(ReporterOptions{Dir: f.dir, Hostname: "mail.example.org", From: "postmaster@example.org",
		Resolver: f.dns, Mailer: f.mail, FS: fsys, Now: f.clk.Now, Logger: log,
		HTTPClient: &http.Client{Transport: roundTripper(func(*http.Request) (*http.Response, error) {
			return nil, errors.New("no network in tests")
		})}})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

type roundTripper func(*http.Request) (*http.Response, error)

func (r roundTripper) RoundTrip(req *http.Request) (*http.Response, error) { return r(req) }

// parsed is a report mail taken apart.
type parsed struct {
	header   message.Header
	filename string
	report   Report
}

func parseReportMail(t *testing.T, body []byte) parsed {
	t.Helper()
	e, err := message.Read(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("report mail: %v\n%s", err, body)
	}
	p := parsed{header: e.Header}
	mt, params, _ := e.Header.ContentType()
	if mt != "multipart/report" || params["report-type"] != "tlsrpt" {
		t.Fatalf("Content-Type %q %v", mt, params)
	}
	mr := e.MultipartReader()
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if pt, _, _ := part.Header.ContentType(); pt != "application/tlsrpt+gzip" {
			continue
		}
		_, dp, _ := part.Header.ContentDisposition()
		p.filename = dp["filename"]
		zr, err := gzip.NewReader(part.Body)
		if err != nil {
			t.Fatalf("report is not gzip: %v", err)
		}
		if err := json.NewDecoder(zr).Decode(&p.report); err != nil {
			t.Fatalf("report is not JSON: %v", err)
		}
	}
	if p.filename == "" {
		t.Fatal("no application/tlsrpt+gzip part")
	}
	return p
}

func (f *fixture) record(t *testing.T) {
	t.Helper()
	for _, r := range results() {
		f.rec.ReportTLS(r)
	}
	if err := f.rec.Flush(); err != nil {
		t.Fatal(err)
	}
}

// A day's results become one report per domain with a TLSRPT record,
// with the right counts, sent once the day is over, and the day is then
// forgotten.
func TestReportAfterTheDay(t *testing.T) {
	f := newFixture(t)
	f.record(t)
	ctx := context.Background()
	if n, err := f.rep.Send(ctx, false); n != 0 || err != nil {
		t.Fatalf("Send during the day = %d, %v; want nothing", n, err)
	}
	f.clk.set(day1.Add(24 * time.Hour))
	n, err := f.rep.Send(ctx, false)
	if err != nil || n != 2 {
		t.Fatalf("Send = %d, %v; want 2 reports (a.test, c.test; b.test has no record)", n, err)
	}
	var a parsed
	for _, m := range f.mail.sent {
		if m.env.To[0] == "tls+reports@a.test" {
			a = parseReportMail(t, m.body)
			if m.env.From != "postmaster@example.org" {
				t.Errorf("envelope sender %q", m.env.From)
			}
		}
	}
	if a.filename == "" {
		t.Fatalf("no report to tls+reports@a.test: %+v", f.mail.sent)
	}
	if got := a.header.Get("TLS-Report-Domain"); got != "a.test" {
		t.Errorf("TLS-Report-Domain %q", got)
	}
	if got := a.header.Get("TLS-Report-Submitter"); got != "mail.example.org" {
		t.Errorf("TLS-Report-Submitter %q", got)
	}
	if got := a.header.Get("TLS-Required"); got != "No" {
		t.Errorf("TLS-Required %q, want No: a report must go out despite TLS failures (RFC 8460 §3)", got)
	}
	// RFC 8460 §5.3's Subject form.
	if got, want := a.header.Get("Subject"), "Report Domain: a.test Submitter: mail.example.org Report-ID: <"+a.report.ReportID+">"; got != want {
		t.Errorf("Subject %q, want %q", got, want)
	}
	if ct, params, _ := a.header.ContentType(); ct != "multipart/report" || params["report-type"] != "tlsrpt" {
		t.Errorf("Content-Type %q %v", ct, params)
	}
	start := time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC)
	if want := "mail.example.org!a.test!1773100800!1773187199!20260310.json.gz"; a.filename != want || start.Unix() != 1773100800 {
		t.Errorf("filename %q, want %q", a.filename, want)
	}
	r := a.report
	if !r.DateRange.Start.Equal(start) || r.ContactInfo != "postmaster@example.org" || r.ReportID == "" || r.OrganizationName == "" {
		t.Errorf("report head: %+v", r)
	}
	if len(r.Policies) != 1 {
		t.Fatalf("policies: %+v", r.Policies)
	}
	p := r.Policies[0]
	if p.Policy.Type != PolicySTS || p.Policy.Domain != "a.test" || strings.Join(p.Policy.MXHost, ",") != "mx1.a.test,*.backup.a.test" || len(p.Policy.String) != 5 {
		t.Errorf("policy: %+v", p.Policy)
	}
	if p.Summary != (Summary{Successful: 2, Failed: 3}) {
		t.Errorf("summary %+v, want 2 successful, 3 failed", p.Summary)
	}
	if len(p.FailureDetails) != 2 || p.FailureDetails[0].ResultType != CertificateExpired || p.FailureDetails[0].FailedSessionCount != 2 ||
		p.FailureDetails[0].ReceivingMXHostname != "mx2.backup.a.test" || p.FailureDetails[0].ReceivingIP != "198.51.100.2" ||
		p.FailureDetails[1].ResultType != StartTLSNotSupported || p.FailureDetails[1].FailedSessionCount != 1 {
		t.Errorf("failure details: %+v", p.FailureDetails)
	}
	if files, _ := filepath.Glob(filepath.Join(f.dir, "2026-*")); len(files) != 0 {
		t.Errorf("a reported day is kept: %v", files)
	}
	if n, _ := f.rep.Send(ctx, false); n != 0 {
		t.Errorf("sent again: %d", n)
	}
}

// A DNS or mail failure keeps the day; the next Send sends what is left
// and not again what went.
func TestReportRetried(t *testing.T) {
	f := newFixture(t)
	f.record(t)
	f.clk.set(day1.Add(24 * time.Hour))
	f.dns.fail["_smtp._tls.c.test"] = true
	ctx := context.Background()
	if n, err := f.rep.Send(ctx, false); n != 1 || err == nil {
		t.Fatalf("Send = %d, %v; want 1 report and an error", n, err)
	}
	delete(f.dns.fail, "_smtp._tls.c.test")
	f.mail.err = errors.New("queue full")
	if n, err := f.rep.Send(ctx, false); n != 0 || err == nil {
		t.Fatalf("Send with the mail failing = %d, %v", n, err)
	}
	f.mail.err = nil
	if n, err := f.rep.Send(ctx, false); n != 1 || err != nil {
		t.Fatalf("Send = %d, %v; want c.test alone", n, err)
	}
	if len(f.mail.sent) != 2 || f.mail.sent[1].env.To[0] != "rua@c.test" {
		t.Errorf("sent %+v", f.mail.sent)
	}
}

// A failing disk keeps the results in memory until a Flush succeeds.
func TestRecorderFlushFault(t *testing.T) {
	for _, op := range []safeio.Op{safeio.OpWrite, safeio.OpSync} {
		t.Run(string(op), func(t *testing.T) {
			f := newFixture(t)
			f.inj.Arm(op, ".jsonl")
			for _, r := range results() {
				f.rec.Record(r)
			}
			if err := f.rec.Flush(); err == nil || f.inj.Hits() == 0 {
				t.Fatalf("Flush with %s failing: %v", op, err)
			}
			f.inj.Disarm()
			if err := f.rec.Flush(); err != nil {
				t.Fatal(err)
			}
			got, err := readDay(f.dir, day1.Format(dayFormat))
			if err != nil {
				t.Fatal(err)
			}
			// A failed fsync may leave the lines written: then they are
			// there twice at most, never missing.
			if n := sessions(got); n < len(results()) || n > 2*len(results()) {
				t.Errorf("%d results stored, want %d", n, len(results()))
			}
		})
	}
}

// A torn last line (a crash in the middle of an append) is skipped and
// does not spoil the lines appended after it.
func TestRecorderTornLine(t *testing.T) {
	f := newFixture(t)
	path := filepath.Join(f.dir, day1.Format(dayFormat)+recordExt)
	if err := os.WriteFile(path, []byte(`{"PolicyDomain":"a.test","Type":"`), 0o600); err != nil {
		t.Fatal(err)
	}
	f.record(t)
	got, err := readDay(f.dir, day1.Format(dayFormat))
	if err != nil || sessions(got) != len(results()) {
		t.Fatalf("read %d results (%v), want %d", sessions(got), err, len(results()))
	}
}

// A day file of the earlier format (one Result per line) still counts.
func TestReadDayOldFormat(t *testing.T) {
	f := newFixture(t)
	var b strings.Builder
	for _, r := range results() {
		r.PolicyDomain = strings.ToLower(strings.TrimSuffix(r.PolicyDomain, ".")) // as Record kept it
		line, _ := json.Marshal(stored{r, day1})
		b.Write(line)
		b.WriteByte('\n')
	}
	if err := os.WriteFile(filepath.Join(f.dir, day1.Format(dayFormat)+recordExt), []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	f.record(t)
	got, err := readDay(f.dir, day1.Format(dayFormat))
	if err != nil || sessions(got) != 2*len(results()) || len(got) != 3 {
		t.Fatalf("read %d sessions in %d policies (%v), want %d in 3", sessions(got), len(got), err, 2*len(results()))
	}
}

// sessions is the number of sessions the stored sums count.
func sessions(prs []PolicyReport) int {
	n := 0
	for _, pr := range prs {
		n += int(pr.Summary.Successful + pr.Summary.Failed)
	}
	return n
}

// The day's file holds sums, not sessions: many flushes of the same few
// policies keep it within twice its compacted size, and a compaction that
// fails leaves every count in place.
func TestRecorderCompacts(t *testing.T) {
	f := newFixture(t)
	path := filepath.Join(f.dir, day1.Format(dayFormat)+recordExt)
	const flushes = 3000
	for i := range flushes {
		if i == flushes/2 {
			f.inj.Arm(safeio.OpRename, ".jsonl") // compactions fail for a while
		}
		if i == flushes/2+200 {
			f.inj.Disarm()
		}
		for _, r := range results() {
			f.rec.Record(r)
		}
		if err := f.rec.Flush(); err != nil {
			t.Fatalf("flush %d: %v", i, err)
		}
	}
	got, err := readDay(f.dir, day1.Format(dayFormat))
	if err != nil {
		t.Fatal(err)
	}
	if n := sessions(got); n != flushes*len(results()) {
		t.Errorf("%d sessions counted, want %d", n, flushes*len(results()))
	}
	if len(got) != 3 {
		t.Errorf("%d policies, want 3: %+v", len(got), got)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > 2*minCompact {
		t.Errorf("day file is %d bytes after %d flushes; want at most %d", fi.Size(), flushes, 2*minCompact)
	}
	if f.inj.Hits() == 0 {
		t.Error("no compaction was tried while the renames failed")
	}
}

func TestParseRecords(t *testing.T) {
	for _, tc := range []struct {
		txts   []string
		mailto string
		https  string
	}{
		{[]string{"v=TLSRPTv1; rua=mailto:a@x.test"}, "a@x.test", ""},
		{[]string{"v=TLSRPTv1;rua=mailto:a@x.test, https://r.x.test/p,mailto:b@x.test?subject=x"}, "a@x.test,b@x.test", "https://r.x.test/p"},
		{[]string{"v=TLSRPTv1; rua=mailto:a@x.test", "v=TLSRPTv1; rua=mailto:b@x.test"}, "", ""}, // two records: none
		{[]string{"v=TLSRPTv2; rua=mailto:a@x.test"}, "", ""},
		{[]string{"v=TLSRPTv1; rua=http://r.x.test/, mailto:bad address"}, "", ""},
		{[]string{"v=TLSRPTv1"}, "", ""},
		{[]string{"v=TLSRPTv1 ; rua=mailto:a@x.test"}, "a@x.test", ""}, // WSP before the delimiter
		{[]string{"v=TLSRPTv1x; rua=mailto:a@x.test"}, "", ""},
	} {
		d, err := parseRecords(tc.txts)
		if strings.Join(d.Mailto, ",") != tc.mailto || strings.Join(d.HTTPS, ",") != tc.https || (err != nil) != (tc.mailto == "" && tc.https == "") {
			t.Errorf("parseRecords(%q) = %+v, %v", tc.txts, d, err)
		}
	}
}

// The https rua gets the gzip report by POST (RFC 8460 §5.4).
func TestReportHTTPS(t *testing.T) {
	f := newFixture(t)
	var mu sync.Mutex
	var got []byte
	var ctype string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		got, _ = io.ReadAll(r.Body)
		ctype = r.Header.Get("Content-Type")
	}))
	defer srv.Close()
	f.dns.txt["_smtp._tls.a.test"] = []string{"v=TLSRPTv1; rua=" + srv.URL + "/report"}
	f.rep.http = srv.Client()
	f.record(t)
	if n, err := f.rep.Send(context.Background(), true); n != 2 || err != nil {
		t.Fatalf("forced Send = %d, %v", n, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if ctype != "application/tlsrpt+gzip" {
		t.Errorf("Content-Type %q", ctype)
	}
	zr, err := gzip.NewReader(bytes.NewReader(got))
	if err != nil {
		t.Fatal(err)
	}
	var r Report
	if err := json.NewDecoder(zr).Decode(&r); err != nil || len(r.Policies) != 1 || r.Policies[0].Summary.Failed != 3 {
		t.Errorf("posted report %+v, %v", r, err)
	}
}

// FuzzParseRecords: a _smtp._tls TXT record from the network never panics
// the parser, and what it returns is bounded and usable.
func FuzzParseRecords(f *testing.F) {
	f.Add("v=TLSRPTv1; rua=mailto:a@x.test", "")
	f.Add("v=TLSRPTv1;rua=mailto:a@x.test, https://r.x.test/p,mailto:b@x.test?subject=x", "v=spf1 -all")
	f.Fuzz(func(t *testing.T, a, b string) {
		d, err := parseRecords([]string{a, b})
		if err != nil {
			if len(d.Mailto)+len(d.HTTPS) != 0 {
				t.Fatalf("error %v with destinations %+v", err, d)
			}
			return
		}
		if n := len(d.Mailto) + len(d.HTTPS); n == 0 || n > maxRUA {
			t.Fatalf("%d destinations", n)
		}
		for _, m := range d.Mailto {
			if envelope.ValidateSender(m) != nil || strings.ContainsAny(m, "\r\n") {
				t.Fatalf("unusable mailto %q", m)
			}
		}
		for _, h := range d.HTTPS {
			if u, err := url.Parse(h); err != nil || u.Scheme != "https" || u.Host == "" {
				t.Fatalf("unusable https %q", h)
			}
		}
	})
}
