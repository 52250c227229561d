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
	"sync"
	"time"

	"postie/envelope"
	"postie/safeio"
)

// Deliverer makes one delivery attempt of a message to recipients that all share one domain.
// It returns one error per rcpt (nil = delivered): an *envelope.Error with the remote reply (Code 4xx → retry,
// 5xx → bounce; Message holds the remote server's text), or any other error (connection refused, timeout, DNS
// trouble) which counts as temporary. A permanent non-SMTP failure (null MX, no such domain) is an
// *envelope.Error with a 5xx code built by the deliverer.
// The *envelope.Error's Remote, when set, becomes the DSN's Remote-MTA.
type Deliverer interface {
	// t holds the sender, the recipients and the message's parameters;
	// the deliverer fills in t.NoDSN.
	Deliver(ctx context.Context, t *envelope.Transfer, body io.ReaderAt, size int64) []error
}

// Bouncer takes a DSN (or a delay notice) from the null sender and delivers it: to a local sender's INBOX at once,
// or back into this queue for a remote one. It is the router (package mda), which itself queues through this
// Queue: so it is handed to Run, not to Open, and the two are built in order (Open, the router, Run).
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
	Throttle       *Throttle     // paces attempts per destination (see Throttle); nil: only MaxPerDomain
	Suppressor     Suppressor    // told about recipients that hard-bounced; nil: none
	Logger         *slog.Logger  // nil: slog.Default()
	Now            func() time.Time

	// FS makes every durable write of the spool (message files, state
	// files, directory fsyncs). nil: the real file system; tests set its
	// Fault to fail each step.
	FS *safeio.FS
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
	fs        *safeio.FS
	dirSync   *safeio.DirSyncer
	pollEvery time.Duration // pollInterval; tests shorten it
	bouncer   Bouncer       // set by Run before it starts any task

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
	parked    map[string][]unit // due units held back by the Throttle, by destination
	inflight  int
	perDomain map[string]int
	unsaved   map[*item]bool // items whose last state write failed: retried every pollEvery

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
		unsaved:   make(map[*item]bool),
		wakeCh:    make(chan struct{}, 1),
		fs:        opts.FS,
	}
	q.dirSync = &safeio.DirSyncer{Dir: q.dir, FS: q.fs}
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
	q.parked = nil
	q.unsaved = make(map[*item]bool)
	q.mu.Unlock()
	if q.ownerLock == nil {
		return nil
	}
	err := q.ownerLock.Close()
	q.ownerLock = nil
	return err
}

// Enqueue writes the message and its envelope durably before it returns
// (message file written and fsynced, state file written and fsynced
// through a temporary file and a rename, directory fsynced); only then may
// the caller answer 250. The body is streamed to disk. On any error
// nothing of the message is left in the spool, nothing is scheduled, and
// the error is not an *envelope.Error (envelope.AsError makes it a
// temporary 451) unless the envelope itself is bad. It returns the queue
// ID.
func (q *Queue) Enqueue(ctx context.Context, env *envelope.Envelope, body io.Reader) (string, error) {
	return q.enqueue(ctx, env, body, nil)
}

// EnqueueFailed records, as durably as Enqueue, a message that could not
// be delivered to the recipients of env: failed[i] is env.To[i]'s
// permanent or temporary error, with its SMTP reply. The queue sends the
// sender one bounce for them and then forgets the message. It is how a
// failure found after RCPT was accepted (a mailbox that filled up during
// DATA) reaches the sender instead of being lost behind a 250. A repeated
// recipient is reported once, with its first error.
//
// A nil failed[i] means env.To[i] was delivered (stored here): the sender
// gets a success notice ("delivered") if the recipient's NOTIFY asks for
// one (env.RcptParams), which is how the router answers NOTIFY=SUCCESS.
func (q *Queue) EnqueueFailed(ctx context.Context, env *envelope.Envelope, body io.Reader, failed []error) (string, error) {
	if len(failed) != len(env.To) {
		return "", fmt.Errorf("queue: enqueue failed: %d errors for %d recipients", len(failed), len(env.To))
	}
	return q.enqueue(ctx, env, body, failed)
}

func (q *Queue) enqueue(ctx context.Context, env *envelope.Envelope, body io.Reader, failed []error) (string, error) {
	// Everything that can refuse the envelope is checked before a byte is
	// written: an error after that must take the files back.
	rcpts, failed, err := cleanRcpts(env.To, failed)
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
	st := newState(id, env, rcpts, failed, size, now)
	if err := q.commit(st); err != nil {
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

// newState is the state of a message just written: every recipient
// pending, or failed as failed (parallel to rcpts) says.
func newState(id string, env *envelope.Envelope, rcpts []string, failed []error, size int64, now time.Time) *state {
	rcptParams := make(map[string]envelope.RcptParams, len(env.RcptParams))
	for i := range env.To {
		if k := envelope.Key(env.To[i]); rcptParams[k] == (envelope.RcptParams{}) {
			rcptParams[k] = env.RcptParam(i)
		}
	}
	st := &state{
		Version: stateVersion, ID: id, EnvID: env.ID, From: env.From, Created: now, Size: size,
		RemoteAddr: env.RemoteAddr, AuthUser: env.AuthUser,
		RequireTLS: env.Params.RequireTLS, Ret: env.Params.Ret, DSNEnvID: env.Params.EnvID,
	}
	for _, r := range rcpts {
		p := rcptParams[envelope.Key(r)]
		st.Rcpts = append(st.Rcpts, RcptState{Addr: r, Status: StatusPending, Notify: p.Notify, ORcpt: p.OriginalRecipient()})
	}
	for i, err := range failed {
		if err == nil {
			st.markDelivered(i, now)
		} else {
			st.markFailed(i, envelope.AsError(err), now)
		}
	}
	return st
}

// writeMsg streams body into a new message file and fsyncs it. On error
// the file is gone. Its name becomes durable with the directory fsync of
// commit.
func (q *Queue) writeMsg(ctx context.Context, now time.Time, body io.Reader) (id string, size int64, err error) {
	var f *safeio.File
	for range 5 {
		id = newID(now)
		f, err = q.fs.Create(filepath.Join(q.dir, id+msgExt), 0o600)
		if !errors.Is(err, os.ErrExist) {
			break
		}
	}
	if err != nil {
		return "", 0, err
	}
	size, err = f.Copy(ctxReader{ctx, body}, make([]byte, 32<<10))
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		f.Abort()
		return "", 0, err
	}
	return id, size, nil
}

// commit makes a message whose file writeMsg wrote part of the spool: its
// state file is written (the commit point) and the directory fsynced, which
// makes both names durable. On error both files are removed. A crash just
// after a failed directory fsync may still bring them back: a message the
// client was told to send again, delivered twice, never one lost.
func (q *Queue) commit(st *state) error {
	err := q.writeState(st)
	if err == nil {
		err = q.dirSync.Sync()
	}
	if err == nil {
		return nil
	}
	for _, name := range []string{st.ID + stateExt, st.ID + msgExt} { // the commit point first
		if rerr := q.fs.Remove(filepath.Join(q.dir, name)); rerr != nil {
			q.log.Error("queue: taking back a failed enqueue", "id", st.ID, "file", name, "err", rerr)
		}
	}
	return err
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
// envelope.Key does), with their entries in failed when it is not nil.
func cleanRcpts(to []string, failed []error) ([]string, []error, error) {
	if len(to) == 0 {
		return nil, nil, errors.New("no recipients")
	}
	seen := make(map[string]bool, len(to))
	out := make([]string, 0, len(to))
	var outFailed []error
	for i, r := range to {
		// A bounce goes back to whatever sender the MX accepted.
		if err := envelope.ValidateSender(r); err != nil {
			return nil, nil, fmt.Errorf("recipient: %w", err)
		}
		if k := envelope.Key(r); !seen[k] {
			seen[k] = true
			out = append(out, r)
			if failed != nil {
				outFailed = append(outFailed, failed[i])
			}
		}
	}
	return out, outFailed, nil
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
		if !it.notice.running && it.owesNotice() {
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
