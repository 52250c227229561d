package tlsrpt

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"postie/safeio"
)

// The recorder's directory holds one file per UTC day, "YYYY-MM-DD.jsonl":
// one JSON PolicyReport per line (a Flush's counts for one policy, see
// daylog.go), appended (and fsynced) at each Flush and compacted when it
// has doubled. A line cut short by a crash is skipped when the day is read. Once a day's reports
// are sent, "YYYY-MM-DD.done" lists the policy domains done; when every
// domain is, both files go.
const (
	dayFormat  = "2006-01-02"
	recordExt  = ".jsonl"
	doneExt    = ".done"
	lockName   = "report.lock"
	flushEvery = time.Second
	// maxPending bounds the Results held in memory between flushes; more
	// are dropped (and counted in the log) while the disk is failing.
	maxPending = 100000
	// maxLine bounds one stored Result, against a pathological policy.
	maxLine = 64 << 10
	// minCompact is the size below which a day's file is not compacted.
	minCompact = 256 << 10
)

// Options configure a Recorder.
type Options struct {
	Dir    string           // where the days are kept: data_dir/tlsrpt; created if missing
	FS     *safeio.FS       // nil: the real file system; tests inject faults
	Now    func() time.Time // nil: time.Now
	Logger *slog.Logger     // nil: slog.Default()
}

// Recorder keeps the Results of outbound TLS attempts on disk, by UTC day.
// Record is cheap (it only queues the Result in memory); Flush, which Run
// calls every second, writes them durably. It is safe for concurrent use.
type Recorder struct {
	opts Options
	log  *slog.Logger
	now  func() time.Time

	mu      sync.Mutex
	pending []stored
	dropped int

	flushMu sync.Mutex // one Flush at a time, so that a day's lines keep their order
	// compacted is a day file's size after its last compaction (under
	// flushMu); it grows to twice that before the next.
	compacted map[string]int64
}

// stored is a Result as kept on disk, with its time.
type stored struct {
	Result
	At time.Time `json:"at"`
}

// NewRecorder returns a Recorder over opts.Dir, which it creates.
func NewRecorder(opts Options) (*Recorder, error) {
	if opts.Dir == "" {
		return nil, errors.New("tlsrpt: no directory")
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("tlsrpt: %w", err)
	}
	r := &Recorder{opts: opts, log: opts.Logger, now: opts.Now}
	if r.log == nil {
		r.log = slog.Default()
	}
	if r.now == nil {
		r.now = time.Now
	}
	return r, nil
}

// Record notes the outcome of one TLS attempt. Results without a policy
// domain are ignored.
func (r *Recorder) Record(res Result) {
	if res.PolicyDomain == "" {
		return
	}
	res.PolicyDomain = strings.ToLower(strings.TrimSuffix(res.PolicyDomain, "."))
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.pending) >= maxPending {
		r.dropped++
		return
	}
	r.pending = append(r.pending, stored{res, r.now().UTC()})
}

// ReportTLS is Record, under the name package outbound's TLSReporter uses.
func (r *Recorder) ReportTLS(res Result) { r.Record(res) }

// Flush writes the Results recorded so far to their days' files and
// fsyncs them. On error they stay in memory for the next Flush.
func (r *Recorder) Flush() error {
	r.flushMu.Lock()
	defer r.flushMu.Unlock()
	r.mu.Lock()
	batch, dropped := r.pending, r.dropped
	r.pending, r.dropped = nil, 0
	r.mu.Unlock()
	if dropped > 0 {
		r.log.Warn("tlsrpt: results dropped while they could not be written", "count", dropped)
	}
	if len(batch) == 0 {
		return nil
	}
	byDay := map[string]*dayAgg{}
	var days []string
	for _, s := range batch {
		day := s.At.Format(dayFormat)
		a := byDay[day]
		if a == nil {
			a = newDayAgg()
			byDay[day] = a
			days = append(days, day)
		}
		a.addResult(s.Result)
	}
	var failed []stored
	var firstErr error
	for _, day := range days {
		if err := r.appendDay(day, byDay[day].lines()); err != nil {
			firstErr = cmpOr(firstErr, err)
			for _, s := range batch {
				if s.At.Format(dayFormat) == day {
					failed = append(failed, s)
				}
			}
		}
	}
	if len(failed) > 0 {
		r.mu.Lock()
		r.pending = append(failed, r.pending...)
		if len(r.pending) > maxPending {
			r.dropped += len(r.pending) - maxPending
			r.pending = r.pending[:maxPending]
		}
		r.mu.Unlock()
	}
	return firstErr
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// appendDay appends data to the day's file, creating it first. A line
// torn by an earlier failed append is ended, so it spoils only itself.
func (r *Recorder) appendDay(day string, data []byte) error {
	path := filepath.Join(r.opts.Dir, day+recordExt)
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := r.opts.FS.CreateNew(path, nil, 0o600); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("tlsrpt: create %s: %w", path, err)
		}
	case err != nil:
		return fmt.Errorf("tlsrpt: %w", err)
	case fi.Size() > 0 && !endsWithNewline(path, fi.Size()):
		data = append([]byte{'\n'}, data...)
	}
	size, err := r.opts.FS.Append(path, data)
	if err != nil {
		return fmt.Errorf("tlsrpt: append to %s: %w", path, err)
	}
	if size > max(minCompact, 2*r.compacted[day]) {
		r.compact(day, path)
	}
	return nil
}

// compact rewrites a day's file with one line per policy. The counts are
// durable before (appended); a failure leaves the file as it was.
func (r *Recorder) compact(day, path string) {
	reports, err := readDay(r.opts.Dir, day)
	if err == nil {
		agg := newDayAgg()
		for _, pr := range reports {
			agg.addReport(pr)
		}
		data := agg.lines()
		if err = r.opts.FS.WriteFile(path, data, 0o600); err == nil {
			// Only the days being written are remembered.
			r.compacted = map[string]int64{day: int64(len(data))}
			return
		}
	}
	r.log.Warn("tlsrpt: compacting a day's results; tried again later", "day", day, "err", err)
}

func endsWithNewline(path string, size int64) bool {
	f, err := os.Open(path)
	if err != nil {
		return true
	}
	defer f.Close()
	var b [1]byte
	if _, err := f.ReadAt(b[:], size-1); err != nil {
		return true
	}
	return b[0] == '\n'
}
