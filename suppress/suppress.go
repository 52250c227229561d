// Package suppress keeps the suppression list: recipients to whom the queue
// must not send again for a while because delivery to them failed for good
// as "no such user" (a hard bounce: 5.1.1, 5.1.10, a disabled mailbox).
// Receivers such as Gmail and Microsoft lower a sender's reputation when it
// keeps mailing dead addresses, so the submission role refuses them at
// RCPT (550 5.1.1 with the date of the bounce) until the entry is older
// than Options.For. Mail from outside (the MX role) never consults it.
//
// The list is a JSON snapshot (Options.Path) and a journal beside it
// (Path+".log": one JSON line per addition or removal since the snapshot),
// both changed through package safeio under a flock(2) on a lock file
// beside them, so that the server (adding bounces) and `postie suppress`
// (adding and removing by hand) may change the list at the same time
// without losing each other's changes. A change is one line appended and
// fsynced: once Add returns, the refusal survives a crash. When the journal
// has more lines than twice the live entries, the snapshot is rewritten
// (temporary file, fsync, rename, directory fsync) and the journal removed;
// replaying a journal over a snapshot that already holds it changes
// nothing, so a crash between the two is harmless. A journal line torn by a
// crash is skipped. Readers see a change at their next lookup: Check
// re-reads when either file's size or modification time changed.
package suppress

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

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
	stat fileStamp        // of the snapshot memo was read from
	jst  fileStamp        // of the journal memo was read from
	// jlines is the journal's line count; jtorn: it ends in a torn line.
	jlines int
	jtorn  bool
	// nextCheck is the journal length at which the live entries are
	// counted again, to see whether it is time to compact.
	nextCheck int
}

type fileStamp struct {
	size   int64
	mtime  time.Time
	ok     bool
	exists bool
}

type fileData struct {
	Version int     `json:"version"`
	Entries []Entry `json:"entries"`
}

const fileVersion = 1

// logLine is one journal line: an entry added (or refreshed), or with Del
// an address removed.
type logLine struct {
	Entry
	Del bool `json:"del,omitempty"`
}

// minCompact is the journal length below which it is never compacted.
const minCompact = 64

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
	return l.edit(envelope.Key(addr), func(Entry, bool) (Entry, bool, bool) {
		return Entry{Addr: addr, Since: now, Reason: oneLine(reason)}, true, true
	})
}

// Remove takes addr off the list; it reports whether it was there.
func (l *List) Remove(addr string) (bool, error) {
	found := false
	err := l.edit(envelope.Key(addr), func(_ Entry, ok bool) (Entry, bool, bool) {
		found = ok
		return Entry{}, false, ok
	})
	return found, err
}

// edit changes the entry of key (an envelope.Key) as on disk, under the
// file lock: change gets the entry (and whether there is one) and returns
// the new one, whether to keep it (else it is removed) and whether
// anything changed; a change is journaled.
func (l *List) edit(key string, change func(old Entry, ok bool) (e Entry, keep, changed bool)) error {
	lk, err := safeio.Lock(l.opts.Path+".lock", false, false)
	if err != nil {
		return fmt.Errorf("suppress: lock: %w", err)
	}
	defer lk.Close()
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.refreshLocked(); err != nil {
		return err
	}
	old, ok := l.memo[key]
	e, keep, changed := change(old, ok)
	if !changed {
		return nil
	}
	ll := logLine{Entry: e}
	if !keep {
		ll = logLine{Entry: Entry{Addr: key}, Del: true}
	}
	line, err := json.Marshal(ll)
	if err != nil {
		return fmt.Errorf("suppress: encode: %w", err)
	}
	var b bytes.Buffer
	if l.jtorn {
		b.WriteByte('\n') // the torn line spoils only itself
	}
	b.Write(line)
	b.WriteByte('\n')
	if err := l.appendLog(b.Bytes()); err != nil {
		l.jst = fileStamp{} // read it again: part may be there
		return fmt.Errorf("suppress: write %s: %w", l.logPath(), err)
	}
	if keep {
		l.memo[key] = e
	} else {
		delete(l.memo, key)
	}
	l.jlines++
	l.jtorn = false
	if l.jst, err = stamp(l.logPath()); err != nil {
		l.jst = fileStamp{}
	}
	if l.jlines > max(minCompact, l.nextCheck) {
		l.maybeCompactLocked()
	}
	return nil
}

// maybeCompactLocked compacts when the journal has more lines than twice
// the live entries; else it sets when to count them again (counting is
// linear, so it is done once per half the live entries' worth of lines).
func (l *List) maybeCompactLocked() {
	live := 0
	for _, e := range l.memo {
		if !l.Enabled() || l.live(e) {
			live++
		}
	}
	if l.jlines <= 2*live {
		l.nextCheck = l.jlines + live/2
		return
	}
	if err := l.compactLocked(); err != nil {
		// The change is durable in the journal; the next edit tries again.
		l.opts.Logger.Warn("suppress: compacting the list", "err", err)
	}
}

func (l *List) logPath() string { return l.opts.Path + ".log" }

// appendLog appends data to the journal, creating it first.
func (l *List) appendLog(data []byte) error {
	path := l.logPath()
	if !l.jst.exists {
		err := l.opts.FS.CreateNew(path, data, 0o600)
		if !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
	_, err := l.opts.FS.Append(path, data)
	return err
}

// compactLocked writes the live entries as the snapshot and removes the
// journal.
func (l *List) compactLocked() error {
	d := fileData{Version: fileVersion}
	for _, e := range l.memo {
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
	if err := l.opts.FS.Remove(l.logPath()); err != nil {
		return fmt.Errorf("suppress: %w", err)
	}
	// Without this fsync a crash may bring the journal back: harmless.
	l.opts.FS.SyncDir(filepath.Dir(l.opts.Path))
	l.stat, l.jst = fileStamp{}, fileStamp{}
	return l.refreshLocked()
}

// stamp is path's size and modification time; a missing file has the zero
// stamp with ok set.
func stamp(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	switch {
	case os.IsNotExist(err):
		return fileStamp{ok: true}, nil
	case err != nil:
		return fileStamp{}, fmt.Errorf("suppress: %w", err)
	}
	return fileStamp{size: fi.Size(), mtime: fi.ModTime(), ok: true, exists: true}, nil
}

// refreshLocked re-reads the files if either changed since the last read.
func (l *List) refreshLocked() error {
	st, err := stamp(l.opts.Path)
	if err != nil {
		return err
	}
	jst, err := stamp(l.logPath())
	if err != nil {
		return err
	}
	if l.memo != nil && st == l.stat && jst == l.jst {
		return nil
	}
	m, err := l.readSnapshot()
	if err != nil {
		return err
	}
	n, torn, err := l.replay(m)
	if err != nil {
		return err
	}
	// Stamped before reading: a change while reading is read next time.
	l.memo, l.stat, l.jst, l.jlines, l.jtorn, l.nextCheck = m, st, jst, n, torn, 0
	return nil
}

// readSnapshot reads the snapshot as it is now.
func (l *List) readSnapshot() (map[string]Entry, error) {
	m := map[string]Entry{}
	f, err := os.Open(l.opts.Path)
	if os.IsNotExist(err) {
		return m, nil
	} else if err != nil {
		return nil, fmt.Errorf("suppress: %w", err)
	}
	defer f.Close()
	var d fileData
	if err := json.NewDecoder(f).Decode(&d); err != nil {
		return nil, fmt.Errorf("suppress: %s is damaged: %w", l.opts.Path, err)
	}
	if d.Version != fileVersion {
		return nil, fmt.Errorf("suppress: %s has version %d, want %d", l.opts.Path, d.Version, fileVersion)
	}
	for _, e := range d.Entries {
		m[envelope.Key(e.Addr)] = e
	}
	return m, nil
}

// replay applies the journal to m, skipping lines that do not parse; it
// returns the number of lines and whether the last is torn (unended).
func (l *List) replay(m map[string]Entry) (lines int, torn bool, err error) {
	data, err := os.ReadFile(l.logPath())
	if os.IsNotExist(err) {
		return 0, false, nil
	} else if err != nil {
		return 0, false, fmt.Errorf("suppress: %w", err)
	}
	torn = len(data) > 0 && data[len(data)-1] != '\n'
	for line := range bytes.Lines(data) {
		lines++
		var ll logLine
		if json.Unmarshal(line, &ll) != nil || ll.Addr == "" {
			continue
		}
		if ll.Del {
			delete(m, envelope.Key(ll.Addr))
		} else {
			m[envelope.Key(ll.Addr)] = ll.Entry
		}
	}
	return lines, torn, nil
}

func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if cut := 300; len(s) > cut {
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut-- // not inside a character: the JSON would get U+FFFD
		}
		s = s[:cut] + "..."
	}
	return strings.TrimSpace(s)
}
