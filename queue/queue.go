// Package queue is the durable outbound spool and its scheduler. It keeps
// every message handed to it on disk until each recipient is delivered or
// has failed for good, makes the delivery attempts through a Deliverer
// (one per recipient domain, with exponential backoff and concurrency
// limits), gives up after a lifetime, and tells the sender with RFC 3464
// delivery status notifications: a bounce for recipients that failed and
// one delay notice for mail that is slow to go.
//
// One process owns a spool and runs its scheduler; other processes on the
// same machine may enqueue into it and administer it (List, Flush, Delete,
// Bounce) while it runs.
package queue

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"postie/safeio"
	"sync"
	"time"

	"postie/envelope"
)

// Deliverer makes one delivery attempt of a message to recipients that all share one domain.
// It returns one error per rcpt (nil = delivered): an *envelope.Error with the remote reply (Code 4xx → retry,
// 5xx → bounce; Message holds the remote server's text), or any other error (connection refused, timeout, DNS
// trouble) which counts as temporary. A permanent non-SMTP failure (null MX, no such domain) is an
// *envelope.Error with a 5xx code built by the deliverer.
// The *envelope.Error's Remote, when set, becomes the DSN's Remote-MTA.
type Deliverer interface {
	Deliver(ctx context.Context, from string, rcpts []string, body io.ReaderAt, size int64) []error
}

// Bouncer takes a DSN (or a delay notice) from the null sender and delivers it: to a local sender's INBOX at once,
// or back into this queue for a remote one. It is the MDA, wired by the lead.
type Bouncer interface {
	Deliver(ctx context.Context, env *envelope.Envelope, body io.Reader) []error
}

// Options configure a Queue. Zero durations and limits take the defaults
// below, except DelayWarning, where zero means no delay notices.
type Options struct {
	Dir            string        // the spool directory; created if missing
	Hostname       string        // Reporting-MTA and MAILER-DAEMON@Hostname in DSNs
	MinRetry       time.Duration // first retry after a temporary failure (5m)
	MaxRetry       time.Duration // ceiling of the doubling backoff (1h)
	Lifetime       time.Duration // after this since arrival, what is left bounces (120h)
	DelayWarning   time.Duration // one delay notice after this; 0: none
	MaxConcurrency int           // attempts (and DSN hand-overs) at once (20)
	MaxPerDomain   int           // attempts at once to one recipient domain (4)
	Deliverer      Deliverer     // required by Run
	Bouncer        Bouncer       // required by Run
	Logger         *slog.Logger  // nil: slog.Default()
	Now            func() time.Time
}

const (
	defaultMinRetry       = 5 * time.Minute
	defaultMaxRetry       = time.Hour
	defaultLifetime       = 120 * time.Hour
	defaultMaxConcurrency = 20
	defaultMaxPerDomain   = 4

	// pollInterval is how often the scheduler looks for requests from
	// other processes; it bounds how long `postie queue flush` waits.
	pollInterval = time.Second
	// rescanInterval is how often the owner lists the whole spool, a
	// safety net for messages enqueued by another process whose notice
	// was lost.
	rescanInterval = time.Minute
	// ownerWait is how long Run waits for another process (a `postie
	// deliver` that found no server) to release the spool.
	ownerWait = 10 * time.Second
)

// ErrNotFound is returned by the admin functions for an unknown queue ID.
var ErrNotFound = errors.New("queue: no such message")

// Queue is an open spool. Its methods are safe for concurrent use.
type Queue struct {
	opts      Options
	dir       string
	log       *slog.Logger
	now       func() time.Time
	dirSync   *safeio.DirSyncer
	pollEvery time.Duration // pollInterval; tests shorten it

	lockMu    sync.Mutex
	ownerLock *os.File // nil while another process owns the spool

	mu        sync.Mutex
	owner     bool // this Queue runs recovery and schedules; else Enqueue only writes
	running   bool // Run is active
	items     map[string]*item
	units     unitHeap
	liveUnits int // len(units) after the last compaction
	seq       uint64
	waiting   map[string][]unit // due units held back by MaxPerDomain
	inflight  int
	perDomain map[string]int

	wakeCh chan struct{}
	tasks  sync.WaitGroup
}

// Open opens the spool in opts.Dir. If no other process owns it, this
// Queue becomes its owner: it cleans up after a crash (a message file
// without its state file, or a temporary file, is removed; a state file
// without its message file is dropped with a log line) and loads every
// message with its state. If another process owns it (a server is
// running), the Queue can only Enqueue, handing new messages to that
// server, until Run takes the spool over.
func Open(opts Options) (*Queue, error) {
	if opts.Dir == "" {
		return nil, errors.New("queue: no spool directory")
	}
	if opts.Hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("queue: no hostname: %w", err)
		}
		opts.Hostname = h
	}
	setDefaults(&opts)
	q := &Queue{
		opts:      opts,
		dir:       opts.Dir,
		log:       opts.Logger,
		now:       opts.Now,
		pollEvery: pollInterval,
		items:     make(map[string]*item),
		waiting:   make(map[string][]unit),
		perDomain: make(map[string]int),
		wakeCh:    make(chan struct{}, 1),
	}
	q.dirSync = &safeio.DirSyncer{Dir: q.dir}
	if err := os.MkdirAll(filepath.Join(q.dir, adminDirName), 0o700); err != nil {
		return nil, fmt.Errorf("queue: open: %w", err)
	}
	if err := q.acquire(); err != nil && !errors.Is(err, safeio.ErrLocked) {
		return nil, fmt.Errorf("queue: open %s: %w", q.dir, err)
	} else if err != nil {
		q.log.Info("queue: spool owned by another process; enqueue only", "dir", q.dir, "pid", ownerPID(q.dir))
	}
	return q, nil
}

func setDefaults(o *Options) {
	if o.MinRetry <= 0 {
		o.MinRetry = defaultMinRetry
	}
	if o.MaxRetry <= 0 {
		o.MaxRetry = defaultMaxRetry
	}
	if o.MaxRetry < o.MinRetry {
		o.MaxRetry = o.MinRetry
	}
	if o.Lifetime <= 0 {
		o.Lifetime = defaultLifetime
	}
	if o.DelayWarning < 0 {
		o.DelayWarning = 0
	}
	if o.MaxConcurrency <= 0 {
		o.MaxConcurrency = defaultMaxConcurrency
	}
	if o.MaxPerDomain <= 0 {
		o.MaxPerDomain = defaultMaxPerDomain
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// acquire tries once to become the spool's owner; safeio.ErrLocked if another
// process is. On success the spool is recovered and loaded.
func (q *Queue) acquire() error {
	q.lockMu.Lock()
	defer q.lockMu.Unlock()
	if q.ownerLock != nil {
		return nil
	}
	f, err := safeio.Lock(filepath.Join(q.dir, ownerLockName), false, true)
	if err != nil {
		return err
	}
	if err := f.Truncate(0); err == nil {
		fmt.Fprintf(f, "%d\n", os.Getpid())
	}
	if err := q.recoverAndLoad(); err != nil {
		f.Close()
		return err
	}
	q.ownerLock = f
	return nil
}

// Close releases the spool. Call it after Run has returned.
func (q *Queue) Close() error {
	q.lockMu.Lock()
	defer q.lockMu.Unlock()
	q.mu.Lock()
	if q.running {
		q.mu.Unlock()
		return errors.New("queue: close: Run is still active")
	}
	q.owner = false
	q.items = make(map[string]*item)
	q.units = nil
	q.waiting = make(map[string][]unit)
	q.mu.Unlock()
	if q.ownerLock == nil {
		return nil
	}
	err := q.ownerLock.Close()
	q.ownerLock = nil
	return err
}

// Enqueue writes the message and its envelope durably (message file
// written and fsynced, state file written and fsynced through a temporary
// file and a rename, directory fsynced) before it returns; only then may
// the caller answer 250. The body is streamed to disk. On any error
// nothing of the message is left in the spool. It returns the queue ID.
func (q *Queue) Enqueue(ctx context.Context, env *envelope.Envelope, body io.Reader) (string, error) {
	return q.enqueue(ctx, env, body, nil)
}

// EnqueueFailed records, as durably as Enqueue, a message that could not
// be delivered to the recipients of env: failed[i] is env.To[i]'s
// permanent or temporary error, with its SMTP reply. The queue sends the
// sender one bounce for them and then forgets the message. It is how a
// failure found after RCPT was accepted (a mailbox that filled up during
// DATA) reaches the sender instead of being lost behind a 250.
func (q *Queue) EnqueueFailed(ctx context.Context, env *envelope.Envelope, body io.Reader, failed []error) (string, error) {
	if len(failed) != len(env.To) {
		return "", fmt.Errorf("queue: enqueue failed: %d errors for %d recipients", len(failed), len(env.To))
	}
	return q.enqueue(ctx, env, body, failed)
}

func (q *Queue) enqueue(ctx context.Context, env *envelope.Envelope, body io.Reader, failed []error) (string, error) {
	rcpts, err := cleanRcpts(env.To)
	if err != nil {
		return "", fmt.Errorf("queue: enqueue: %w", err)
	}
	if env.From != "" {
		if err := envelope.ValidateSender(env.From); err != nil {
			return "", fmt.Errorf("queue: enqueue: sender: %w", err)
		}
	}
	q.mu.Lock()
	owner := q.owner
	q.mu.Unlock()
	if !owner {
		// Keep the owner's crash cleanup from taking our half-written files.
		lk, err := safeio.Lock(filepath.Join(q.dir, writeLockName), true, false)
		if err != nil {
			return "", fmt.Errorf("queue: enqueue: %w", err)
		}
		defer lk.Close()
	}

	now := q.now()
	id, size, err := q.writeMsg(ctx, now, body)
	if err != nil {
		return "", fmt.Errorf("queue: enqueue: %w", err)
	}
	st := &state{
		Version: stateVersion, ID: id, EnvID: env.ID, From: env.From, Created: now, Size: size,
		RemoteAddr: env.RemoteAddr, AuthUser: env.AuthUser,
	}
	for _, r := range rcpts {
		st.Rcpts = append(st.Rcpts, RcptState{Addr: r, Status: StatusPending})
	}
	if failed != nil {
		if len(rcpts) != len(failed) {
			return "", errors.New("queue: enqueue failed: duplicate recipients")
		}
		for i, err := range failed {
			st.markFailed(i, envelope.AsError(err), now)
		}
	}
	if err := writeState(q.dir, st); err == nil {
		err = q.dirSync.Sync()
	}
	if err != nil {
		os.Remove(filepath.Join(q.dir, id+stateExt))
		os.Remove(filepath.Join(q.dir, id+msgExt))
		return "", fmt.Errorf("queue: enqueue %s: %w", id, err)
	}

	q.log.Info("queue: queued", "id", id, "env_id", env.ID, "from", env.From, "rcpts", len(rcpts), "size", size)
	if owner {
		q.mu.Lock()
		if q.owner && q.items[id] == nil {
			q.addLocked(st)
		}
		q.mu.Unlock()
		q.wake()
	} else {
		q.notifyOwner()
	}
	return id, nil
}

// writeMsg streams body into a new message file and fsyncs it.
func (q *Queue) writeMsg(ctx context.Context, now time.Time, body io.Reader) (id string, size int64, err error) {
	var f *os.File
	for range 5 {
		id = newID(now)
		f, err = os.OpenFile(filepath.Join(q.dir, id+msgExt), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if !errors.Is(err, os.ErrExist) {
			break
		}
	}
	if err != nil {
		return "", 0, err
	}
	size, err = io.CopyBuffer(f, ctxReader{ctx, body}, make([]byte, 32<<10))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", 0, err
	}
	return id, size, nil
}

// ctxReader stops a copy when its context is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// cleanRcpts validates the recipients and drops repeats (compared as
// envelope.Key does).
func cleanRcpts(to []string) ([]string, error) {
	if len(to) == 0 {
		return nil, errors.New("no recipients")
	}
	seen := make(map[string]bool, len(to))
	out := make([]string, 0, len(to))
	for _, r := range to {
		// A bounce goes back to whatever sender the MX accepted.
		if err := envelope.ValidateSender(r); err != nil {
			return nil, fmt.Errorf("recipient: %w", err)
		}
		if k := envelope.Key(r); !seen[k] {
			seen[k] = true
			out = append(out, r)
		}
	}
	return out, nil
}

// rcptDomain is the key recipients are grouped and limited by.
func rcptDomain(addr string) string {
	_, d := envelope.Split(addr)
	return envelope.CanonDomain(d)
}

// Flush makes everything in the queue due now: pending recipients and
// DSNs waiting to be handed over.
func (q *Queue) Flush() {
	q.mu.Lock()
	now := q.now()
	for _, it := range q.items {
		for i := range it.st.Rcpts {
			if r := &it.st.Rcpts[i]; r.Status == StatusPending {
				r.NextAttempt = now
			}
		}
		for dom, s := range it.groups {
			if !s.running {
				q.scheduleLocked(it, dom, s, now)
			}
		}
		if !it.notice.running && it.hasStatus(StatusFailed) {
			it.st.NoticeNext = time.Time{}
			q.scheduleNoticeLocked(it)
		}
	}
	q.mu.Unlock()
	q.wake()
}

// wake makes the scheduler look at the queue again.
func (q *Queue) wake() {
	select {
	case q.wakeCh <- struct{}{}:
	default:
	}
}
