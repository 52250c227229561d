package tlsrpt

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"

	"postie/envelope"
	"postie/internal/dnsutil"
	"postie/safeio"
)

// Resolver looks up the _smtp._tls TXT records.
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
}

// Mailer delivers a report by mail: the router's relaying delivery, so a
// rua at one of our own domains reaches its mailbox and any other goes
// through the queue (and is DKIM-signed there, as all outgoing mail).
type Mailer interface {
	Deliver(ctx context.Context, env *envelope.Envelope, body io.Reader) []error
}

// ReporterOptions configure a Reporter.
type ReporterOptions struct {
	Dir      string // the Recorder's directory
	Hostname string // our host name: the report's submitter and the right side of its report-id
	// OrganizationName is the report's "organization-name"; "" means Hostname.
	OrganizationName string
	// From is the address reports come from and the report's
	// "contact-info": a postmaster address of ours. Required.
	From     string
	Resolver Resolver // required
	Mailer   Mailer   // required for mailto: destinations
	// HTTPClient posts to https: destinations; nil: a client with a 30 s
	// timeout.
	HTTPClient *http.Client
	FS         *safeio.FS       // nil: the real file system
	Now        func() time.Time // nil: time.Now
	Logger     *slog.Logger     // nil: slog.Default()
}

// Reporter sends the daily aggregate reports of the days a Recorder kept.
type Reporter struct {
	opts ReporterOptions
	log  *slog.Logger
	now  func() time.Time
	http *http.Client
}

// Limits of sending.
const (
	lookupTimeout = 30 * time.Second
	postTimeout   = 30 * time.Second
	// maxAge: a day whose reports could not all be sent in this long is
	// given up.
	maxAge = 7 * 24 * time.Hour
)

// NewReporter returns a Reporter.
func NewReporter(opts ReporterOptions) (*Reporter, error) {
	switch {
	case opts.Dir == "" || opts.Hostname == "" || opts.From == "":
		return nil, errors.New("tlsrpt: reporter needs a directory, a hostname and a From address")
	case opts.Resolver == nil:
		return nil, errors.New("tlsrpt: reporter needs a resolver")
	}
	r := &Reporter{opts: opts, log: opts.Logger, now: opts.Now, http: opts.HTTPClient}
	if r.log == nil {
		r.log = slog.Default()
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.http == nil {
		r.http = &http.Client{Timeout: postTimeout}
	}
	if r.opts.OrganizationName == "" {
		r.opts.OrganizationName = opts.Hostname
	}
	return r, nil
}

// Send reports every day before today (UTC) that is not reported yet; with
// today, the current day so far too (for `postie tlsrpt send -today` and
// tests: what is recorded for a domain after its report is not reported).
// It returns the number of reports handed over. A day whose reports could
// not all go (a DNS or delivery failure) is kept and tried at the next
// Send, the domains already done skipped. Only one Send runs at a time on
// a directory; another one returns at once with nothing done.
func (r *Reporter) Send(ctx context.Context, today bool) (int, error) {
	lk, err := safeio.Lock(filepath.Join(r.opts.Dir, lockName), false, true)
	if errors.Is(err, safeio.ErrLocked) {
		return 0, nil
	} else if err != nil {
		return 0, fmt.Errorf("tlsrpt: %w", err)
	}
	defer lk.Close()
	days, err := r.days()
	if err != nil {
		return 0, err
	}
	now := r.now().UTC()
	cur := now.Format(dayFormat)
	sent := 0
	var firstErr error
	for _, day := range days {
		if day > cur || day == cur && !today {
			continue
		}
		n, err := r.sendDay(ctx, day, day == cur, now)
		sent += n
		firstErr = cmpOr(firstErr, err)
	}
	return sent, firstErr
}

// days lists the days on disk, oldest first.
func (r *Reporter) days() ([]string, error) {
	entries, err := os.ReadDir(r.opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("tlsrpt: %w", err)
	}
	var days []string
	for _, e := range entries {
		if day, ok := strings.CutSuffix(e.Name(), recordExt); ok {
			if _, err := time.Parse(dayFormat, day); err == nil {
				days = append(days, day)
			}
		}
	}
	slices.Sort(days)
	return days, nil
}

// sendDay sends one day's reports, domain by domain.
func (r *Reporter) sendDay(ctx context.Context, day string, isToday bool, now time.Time) (int, error) {
	start, _ := time.Parse(dayFormat, day)
	results, err := readDay(r.opts.Dir, day)
	if err != nil {
		return 0, fmt.Errorf("tlsrpt: read %s: %w", day, err)
	}
	done := r.doneDomains(day)
	// Grouped once: scanning every result for every domain would cost
	// domains × sessions on a newsletter's day.
	byDomain := map[string][]PolicyReport{}
	var domains []string
	for _, pr := range results {
		dom := pr.Policy.Domain
		if done[dom] {
			continue
		}
		if _, ok := byDomain[dom]; !ok {
			domains = append(domains, dom)
		}
		byDomain[dom] = append(byDomain[dom], pr)
	}
	results = nil
	slices.Sort(domains)
	sent := 0
	var firstErr error
	for _, dom := range domains {
		if ctx.Err() != nil {
			return sent, ctx.Err()
		}
		ok, err := r.sendDomain(ctx, dom, start, byDomain[dom])
		if err != nil {
			r.log.Warn("tlsrpt: report not sent; tried again later", "domain", dom, "day", day, "err", err)
			firstErr = cmpOr(firstErr, err)
			continue
		}
		if ok {
			sent++
		}
		if err := r.markDone(day, dom); err != nil {
			firstErr = cmpOr(firstErr, err)
		}
	}
	switch {
	case isToday:
	case firstErr == nil:
		r.removeDay(day)
	case now.Sub(start) > maxAge:
		r.log.Error("tlsrpt: giving up the reports of an old day", "day", day, "err", firstErr)
		r.removeDay(day)
	}
	return sent, firstErr
}

// sendDomain looks up where domain wants its report and sends it there.
// ok is false when the domain takes no reports; err is a failure worth
// trying again (DNS trouble, mail not taken).
func (r *Reporter) sendDomain(ctx context.Context, domain string, day time.Time, policies []PolicyReport) (ok bool, err error) {
	lctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	txts, err := r.opts.Resolver.LookupTXT(lctx, "_smtp._tls."+domain)
	cancel()
	switch {
	case dnsutil.NotFound(err):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("looking up _smtp._tls.%s: %w", domain, err)
	}
	dest, err := parseRecords(txts)
	if err != nil {
		return false, nil
	}
	id := fmt.Sprintf("%s.%s@%s", day.Format("20060102"), domain, r.opts.Hostname)
	rep := aggregate(day, policies, r.opts.OrganizationName, r.opts.From, id)
	gz, err := rep.gzipJSON()
	if err != nil {
		return false, err
	}
	name := fmt.Sprintf("%s!%s!%d!%d!%s.json.gz", r.opts.Hostname, domain,
		rep.DateRange.Start.Unix(), rep.DateRange.End.Unix(), day.Format("20060102"))
	for _, u := range dest.HTTPS {
		// Optional (RFC 8460 §3): a failure is logged, not retried.
		if err := r.post(ctx, u, gz); err != nil {
			r.log.Warn("tlsrpt: https report refused", "domain", domain, "url", u, "err", err)
		}
	}
	if len(dest.Mailto) > 0 {
		if err := r.mail(ctx, rep, dest.Mailto, name, gz); err != nil {
			return false, err
		}
	}
	r.log.Info("tlsrpt: report sent", "domain", domain, "day", day.Format(dayFormat),
		"mailto", dest.Mailto, "https", len(dest.HTTPS), "policies", len(rep.Policies))
	return true, nil
}

// post sends the report to an https rua (RFC 8460 §5.4).
func (r *Reporter) post(ctx context.Context, u string, gz []byte) error {
	ctx, cancel := context.WithTimeout(ctx, postTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(gz))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/tlsrpt+gzip")
	resp, err := r.http.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("HTTP %s", resp.Status)
	}
	return nil
}

// mail sends the report as RFC 8460 §5.3 says: multipart/report;
// report-type=tlsrpt with the gzip JSON as application/tlsrpt+gzip, and
// the TLS-Report-Domain and TLS-Report-Submitter fields.
func (r *Reporter) mail(ctx context.Context, rep *Report, to []string, name string, gz []byte) error {
	if r.opts.Mailer == nil {
		return errors.New("no mailer")
	}
	var buf bytes.Buffer
	if err := r.writeMessage(&buf, rep, to, name, gz); err != nil {
		return fmt.Errorf("building the report message: %w", err)
	}
	env := &envelope.Envelope{ID: newID(), From: r.opts.From, To: to, Protocol: "LOCAL", Received: r.now()}
	for i, err := range r.opts.Mailer.Deliver(ctx, env, &buf) {
		if err != nil {
			return fmt.Errorf("mail to %s: %w", to[i], err)
		}
	}
	return nil
}

func (r *Reporter) writeMessage(w io.Writer, rep *Report, to []string, name string, gz []byte) error {
	domain := rep.Policies[0].Policy.Domain
	var h mail.Header
	var boundary [16]byte
	rand.Read(boundary[:])
	h.SetContentType("multipart/report", map[string]string{
		"report-type": "tlsrpt", "boundary": "=_" + hex.EncodeToString(boundary[:]),
	})
	h.Set("MIME-Version", "1.0")
	h.Set("Auto-Submitted", "auto-generated")
	// RFC 8460 §3: reports go out despite TLS failures, since they may be
	// what tells the domain of them; RFC 8689 §5's field says so to our
	// own outbound delivery, which then leaves the domain's MTA-STS and
	// DANE policy aside for this message.
	h.Set("TLS-Required", "No")
	h.Set("TLS-Report-Submitter", r.opts.Hostname)
	h.Set("TLS-Report-Domain", domain)
	h.SetMessageID(newID() + "@" + r.opts.Hostname)
	h.SetDate(r.now())
	h.SetSubject(fmt.Sprintf("Report Domain: %s Submitter: %s Report-ID: <%s>", domain, r.opts.Hostname, rep.ReportID))
	addrs := make([]*mail.Address, len(to))
	for i, a := range to {
		addrs[i] = &mail.Address{Address: a}
	}
	h.SetAddressList("To", addrs)
	h.SetAddressList("From", []*mail.Address{{Name: "TLS reports", Address: r.opts.From}})
	mw, err := message.CreateWriter(w, h.Header)
	if err != nil {
		return err
	}
	text := fmt.Sprintf("This is an aggregate TLS report (RFC 8460) from %s for %s,\r\n"+
		"covering %s to %s UTC.\r\n", r.opts.Hostname, domain,
		rep.DateRange.Start.Format(time.DateTime), rep.DateRange.End.Format(time.DateTime))
	var th message.Header
	th.SetContentType("text/plain", map[string]string{"charset": "us-ascii"})
	th.Set("Content-Transfer-Encoding", "7bit")
	if err := writePart(mw, th, []byte(text)); err != nil {
		return err
	}
	var ah message.Header
	ah.SetContentType("application/tlsrpt+gzip", map[string]string{"name": name})
	ah.SetContentDisposition("attachment", map[string]string{"filename": name})
	ah.Set("Content-Transfer-Encoding", "base64")
	if err := writePart(mw, ah, gz); err != nil {
		return err
	}
	return mw.Close()
}

func writePart(mw *message.Writer, h message.Header, body []byte) error {
	pw, err := mw.CreatePart(h)
	if err != nil {
		return err
	}
	if _, err := pw.Write(body); err != nil {
		return err
	}
	return pw.Close()
}

// doneDomains reads the day's list of domains already reported.
func (r *Reporter) doneDomains(day string) map[string]bool {
	done := map[string]bool{}
	data, err := os.ReadFile(filepath.Join(r.opts.Dir, day+doneExt))
	if err != nil {
		return done
	}
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			done[l] = true
		}
	}
	return done
}

// markDone records that domain's report for day is sent (or not wanted).
func (r *Reporter) markDone(day, domain string) error {
	path := filepath.Join(r.opts.Dir, day+doneExt)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		if err := r.opts.FS.CreateNew(path, nil, 0o600); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("tlsrpt: %w", err)
		}
	}
	if _, err := r.opts.FS.Append(path, []byte(domain+"\n")); err != nil {
		return fmt.Errorf("tlsrpt: %w", err)
	}
	return nil
}

// removeDay drops a day that is fully reported.
func (r *Reporter) removeDay(day string) {
	for _, ext := range []string{recordExt, doneExt} {
		if err := r.opts.FS.Remove(filepath.Join(r.opts.Dir, day+ext)); err != nil {
			r.log.Warn("tlsrpt: removing a reported day", "day", day, "err", err)
		}
	}
}

func newID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Run flushes rec every second and, every hour, has rep send the reports
// of the days that are over, until ctx ends; then it flushes once more.
// rep may be nil (recording only).
func Run(ctx context.Context, rec *Recorder, rep *Reporter) {
	flush := time.NewTicker(flushEvery)
	defer flush.Stop()
	const sendEvery = time.Hour
	next := time.Now().Add(time.Minute) // the first check shortly after start
	for {
		select {
		case <-ctx.Done():
			if err := rec.Flush(); err != nil {
				rec.log.Error("tlsrpt: results lost at shutdown", "err", err)
			}
			return
		case <-flush.C:
		}
		if err := rec.Flush(); err != nil {
			rec.log.Warn("tlsrpt: recording results; retrying", "err", err)
		}
		if rep != nil && !time.Now().Before(next) {
			next = time.Now().Add(sendEvery)
			if _, err := rep.Send(ctx, false); err != nil && ctx.Err() == nil {
				rep.log.Warn("tlsrpt: sending reports", "err", err)
			}
		}
	}
}
