// Package suppress keeps the suppression list: recipients to whom the queue
// must not send again for a while because delivery to them failed for good
// as "no such user" (a hard bounce: 5.1.1, 5.1.10, a disabled mailbox).
// Receivers such as Gmail and Microsoft lower a sender's reputation when it
// keeps mailing dead addresses, so the submission role refuses them at
// RCPT (550 5.1.1 with the date of the bounce) until the entry is older
// than Options.For. Mail from outside (the MX role) never consults it.
//
// The list is one JSON file, replaced whole through package safeio (a
// temporary file, fsync, rename, directory fsync) under a flock(2) on a lock
// file beside it, so that the server (adding bounces) and `postie suppress`
// (adding and removing by hand) may change it at the same time without
// losing each other's changes. Readers see a change at their next lookup:
// Check re-reads the file when its size or modification time changed.
package suppress

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"postie/envelope"
	"postie/safeio"
)

// Entry is one suppressed recipient.
type Entry struct {
	Addr   string    `json:"addr"`
	Since  time.Time `json:"since"`  // when it bounced (or was added by hand)
	Reason string    `json:"reason"` // the remote reply, or "added by the administrator"
}

// Options configure a List.
type Options struct {
	Path string        // the list's file; its directory must exist
	For  time.Duration // how long an entry is enforced; 0: the list is off (Check never matches, Add does nothing)
	// FS makes the durable writes; nil: the real file system. Tests set
	// its Fault to fail each step.
	FS     *safeio.FS
	Now    func() time.Time // nil: time.Now
	Logger *slog.Logger     // nil: slog.Default()
}

// List is an open suppression list. It is safe for concurrent use.
type List struct {
	opts Options
	mu   sync.Mutex
	memo map[string]Entry // by envelope.Key
	stat fileStamp        // of the file memo was read from
}

type fileStamp struct {
	size  int64
	mtime time.Time
	ok    bool
}

type fileData struct {
	Version int     `json:"version"`
	Entries []Entry `json:"entries"`
}

const fileVersion = 1

// ReasonManual is the reason of an entry added with `postie suppress add`.
const ReasonManual = "added by the administrator"

// Open returns the list kept in opts.Path. A missing file is an empty
// list; an unreadable one is an error.
func Open(opts Options) (*List, error) {
	if opts.Path == "" {
		return nil, errors.New("suppress: no file")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	l := &List{opts: opts}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.refreshLocked(); err != nil {
		return nil, err
	}
	return l, nil
}

// Enabled reports whether the list is in force (Options.For > 0).
func (l *List) Enabled() bool { return l.opts.For > 0 }

// Check returns the entry for addr if it is suppressed now. A file that
// cannot be read now is logged and the last good copy used.
func (l *List) Check(addr string) (Entry, bool) {
	if !l.Enabled() {
		return Entry{}, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.refreshLocked(); err != nil {
		l.opts.Logger.Error("suppress: reading the list; using the last copy", "err", err)
	}
	e, ok := l.memo[envelope.Key(addr)]
	if !ok || !l.live(e) {
		return Entry{}, false
	}
	return e, true
}

// Suppressed returns when addr hard-bounced, if it is suppressed now: the
// form package smtpd's submission role asks for.
func (l *List) Suppressed(addr string) (time.Time, bool) {
	e, ok := l.Check(addr)
	return e.Since, ok
}

// live reports whether e is still enforced.
func (l *List) live(e Entry) bool {
	return l.opts.Now().Before(e.Since.Add(l.opts.For))
}

// Until is when e stops being enforced.
func (l *List) Until(e Entry) time.Time { return e.Since.Add(l.opts.For) }

// Entries returns the entries in force, oldest first.
func (l *List) Entries() ([]Entry, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.refreshLocked(); err != nil {
		return nil, err
	}
	var out []Entry
	for _, e := range l.memo {
		if !l.Enabled() || l.live(e) {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b Entry) int {
		if c := a.Since.Compare(b.Since); c != 0 {
			return c
		}
		return strings.Compare(a.Addr, b.Addr)
	})
	return out, nil
}

// Add suppresses addr from now on (a later bounce refreshes the date). It
// returns once the list is on disk.
func (l *List) Add(addr, reason string) error {
	if !l.Enabled() {
		return nil
	}
	if err := envelope.ValidateSender(addr); err != nil || addr == "" {
		return fmt.Errorf("suppress: add %q: not an address", addr)
	}
	now := l.opts.Now().UTC().Truncate(time.Second)
	return l.edit(func(m map[string]Entry) bool {
		m[envelope.Key(addr)] = Entry{Addr: addr, Since: now, Reason: oneLine(reason)}
		return true
	})
}

// Remove takes addr off the list; it reports whether it was there.
func (l *List) Remove(addr string) (bool, error) {
	found := false
	err := l.edit(func(m map[string]Entry) bool {
		k := envelope.Key(addr)
		_, found = m[k]
		delete(m, k)
		return found
	})
	return found, err
}

// edit applies change to the list as on disk, under the file lock, and
// writes it back (without the expired entries) if change says so.
func (l *List) edit(change func(map[string]Entry) bool) error {
	lk, err := safeio.Lock(l.opts.Path+".lock", false, false)
	if err != nil {
		return fmt.Errorf("suppress: lock: %w", err)
	}
	defer lk.Close()
	l.mu.Lock()
	defer l.mu.Unlock()
	m, _, err := l.read()
	if err != nil {
		return err
	}
	if !change(m) {
		return nil
	}
	d := fileData{Version: fileVersion}
	for _, e := range m {
		if !l.Enabled() || l.live(e) {
			d.Entries = append(d.Entries, e)
		}
	}
	slices.SortFunc(d.Entries, func(a, b Entry) int { return strings.Compare(a.Addr, b.Addr) })
	data, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return fmt.Errorf("suppress: encode: %w", err)
	}
	if err := l.opts.FS.WriteFile(l.opts.Path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("suppress: write %s: %w", l.opts.Path, err)
	}
	l.stat = fileStamp{} // read it back at the next lookup
	return l.refreshLocked()
}

// refreshLocked re-reads the file if it changed since the last read.
func (l *List) refreshLocked() error {
	fi, err := os.Stat(l.opts.Path)
	switch {
	case os.IsNotExist(err):
		l.memo, l.stat = map[string]Entry{}, fileStamp{ok: true}
		return nil
	case err != nil:
		return fmt.Errorf("suppress: %w", err)
	}
	st := fileStamp{size: fi.Size(), mtime: fi.ModTime(), ok: true}
	if l.memo != nil && st == l.stat {
		return nil
	}
	m, st, err := l.read()
	if err != nil {
		return err
	}
	l.memo, l.stat = m, st
	return nil
}

// read reads the file as it is now.
func (l *List) read() (map[string]Entry, fileStamp, error) {
	m := map[string]Entry{}
	f, err := os.Open(l.opts.Path)
	if os.IsNotExist(err) {
		return m, fileStamp{ok: true}, nil
	} else if err != nil {
		return nil, fileStamp{}, fmt.Errorf("suppress: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fileStamp{}, fmt.Errorf("suppress: %w", err)
	}
	var d fileData
	if err := json.NewDecoder(f).Decode(&d); err != nil {
		return nil, fileStamp{}, fmt.Errorf("suppress: %s is damaged: %w", l.opts.Path, err)
	}
	if d.Version != fileVersion {
		return nil, fileStamp{}, fmt.Errorf("suppress: %s has version %d, want %d", l.opts.Path, d.Version, fileVersion)
	}
	for _, e := range d.Entries {
		m[envelope.Key(e.Addr)] = e
	}
	return m, fileStamp{size: fi.Size(), mtime: fi.ModTime(), ok: true}, nil
}

func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return strings.TrimSpace(s)
}
