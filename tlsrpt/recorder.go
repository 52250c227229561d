package tlsrpt

import (
	"bufio"
	"bytes"
	"encoding/json"
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
// one JSON Result per line, appended (and fsynced) in batches. A line cut
// short by a crash is skipped when the day is read. Once a day's reports
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
	byDay := map[string]*bytes.Buffer{}
	var days []string
	for _, s := range batch {
		line, err := json.Marshal(s)
		if err != nil || len(line) > maxLine {
			continue // plain data: cannot fail; an oversized one is not kept
		}
		day := s.At.Format(dayFormat)
		b := byDay[day]
		if b == nil {
			b = &bytes.Buffer{}
			byDay[day] = b
			days = append(days, day)
		}
		b.Write(line)
		b.WriteByte('\n')
	}
	var failed []stored
	var firstErr error
	for _, day := range days {
		if err := r.appendDay(day, byDay[day].Bytes()); err != nil {
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
	if _, err := r.opts.FS.Append(path, data); err != nil {
		return fmt.Errorf("tlsrpt: append to %s: %w", path, err)
	}
	return nil
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

// readDay returns the Results stored for a day, skipping lines that do
// not parse (a torn tail).
func readDay(dir, day string) ([]stored, error) {
	f, err := os.Open(filepath.Join(dir, day+recordExt))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []stored
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine+1024)
	for sc.Scan() {
		var s stored
		if json.Unmarshal(sc.Bytes(), &s) == nil && s.PolicyDomain != "" {
			out = append(out, s)
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, bufio.ErrTooLong) {
		return out, err
	}
	return out, nil
}
