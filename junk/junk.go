// Package junk is Postie's built-in junk filter: a per-user statistical
// (Bayesian) classifier with sender reputation in front of it, trained by
// what each user does with their mail.
//
// Reputation comes first, as it works best on a small server: mail from an
// address the user has written to, or whose earlier mail the user kept as
// ham, is not junk when its identity is verified (the caller says so: DKIM-
// or SPF-aligned); mail from an address whose earlier mail the user put in
// Junk is junk. Word statistics decide only for senders with no history,
// and only once the user has trained Options.MinTrained messages of each
// kind. Every verdict carries its reason.
//
// Each user's data is one file (the caller names it; Postie keeps it beside
// the Maildir), a sorted table of hashed counts written durably through
// safeio. Classification reads it (cached, bounded by Options.CacheBytes);
// training rewrites it under a lock, so several processes can share it.
//
// The classifier is hand-written: no maintained Go library does per-user
// Robinson/Fisher classification over a compact on-disk table.
package junk

import (
	"cmp"
	"container/list"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"postie/safeio"
)

// UserFile is where the filter keeps the data of the user whose Maildir++
// root is dir.
func UserFile(dir string) string { return filepath.Join(dir, "postie-junk") }

// Options tunes a Filter. The zero value is usable.
type Options struct {
	FS         *safeio.FS // writes the per-user files; nil: the real file system
	MinTrained int        // messages of each kind trained before word statistics decide; 0: 30
	Threshold  float64    // spam probability above which statistics say junk; 0: 0.95
	CacheBytes int64      // memory for cached user tables; 0: 32 MiB
	MaxRecords int        // records kept per user (16 bytes each); 0: 200,000
}

// Filter classifies and learns. It is safe for concurrent use.
type Filter struct {
	opts Options

	mu    sync.Mutex
	lru   *list.List // of *cached, most recent first
	byKey map[string]*list.Element
	bytes int64
}

type cached struct {
	path  string
	t     *table // never changed once cached
	stamp fileStamp
}

// New returns a Filter.
func New(opts Options) *Filter {
	if opts.MinTrained <= 0 {
		opts.MinTrained = 30
	}
	if opts.Threshold <= 0 || opts.Threshold >= 1 {
		opts.Threshold = 0.95
	}
	if opts.CacheBytes <= 0 {
		opts.CacheBytes = 32 << 20
	}
	if opts.MaxRecords <= 0 {
		opts.MaxRecords = 200_000
	}
	return &Filter{opts: opts, lru: list.New(), byKey: make(map[string]*list.Element)}
}

// Sender is what delivery knows of who sent a message.
type Sender struct {
	// Verified says the From: domain passed DKIM or SPF in alignment
	// (DMARC's test), so that the From: address can be believed.
	Verified bool
}

// Verdict is a classification.
type Verdict struct {
	Junk   bool
	Score  float64 // spam probability from the word statistics, 0 to 1 (0.5: no opinion)
	Reason string  // why, for X-Spam-Reason: "known sender", "junk sender", "bayes 0.97", "untrained"
}

// Features are what the filter reads from one message (its words, its
// sender, its identity). Extract them once and classify the message for
// each recipient from them.
type Features struct{ f features }

// Extract reads a message and returns its features. It never fails: what
// cannot be parsed contributes nothing.
func (f *Filter) Extract(msg io.Reader) *Features { return &Features{extract(msg)} }

// Classify reads a message and decides whether it is junk for the user
// whose data is at path.
func (f *Filter) Classify(path string, msg io.Reader, s Sender) (Verdict, error) {
	return f.ClassifyFeatures(path, f.Extract(msg), s)
}

// ClassifyFeatures is Classify on features already extracted.
func (f *Filter) ClassifyFeatures(path string, ft *Features, s Sender) (Verdict, error) {
	t, err := f.load(path)
	if err != nil {
		return Verdict{Score: 0.5, Reason: "filter unavailable"}, err
	}
	fe := ft.f
	score, _ := t.score(fe.tokens)
	v := Verdict{Score: score}
	if fe.from != "" {
		rep := t.get(key(kindSender, fe.from))
		sent := t.get(key(kindSent, fe.from))
		switch {
		case rep.spam > rep.ham:
			v.Junk, v.Reason = true, "junk sender"
			return v, nil
		case s.Verified && (sent.ham > 0 || rep.ham > 0):
			v.Reason = "known sender"
			return v, nil
		}
	}
	if int(t.nham) < f.opts.MinTrained || int(t.nspam) < f.opts.MinTrained {
		v.Reason = "untrained"
		return v, nil
	}
	v.Junk = score > f.opts.Threshold
	v.Reason = fmt.Sprintf("bayes %.2f", score)
	return v, nil
}

// Train learns from messages the user filed as spam (or as ham). A message
// trained before the other way is un-trained first; one trained the same
// way again counts once.
func (f *Filter) Train(path string, spam bool, msgs ...io.Reader) error {
	return f.update(path, func(t *table, e edits) {
		marks := make(map[uint64]int) // changes to message marks within this call
		for _, r := range msgs {
			fe := extract(r)
			mk := key(kindMsg, messageIdentity(fe))
			was, ok := marks[mk]
			if !ok {
				m := t.get(mk)
				was = sign(int64(m.spam) - int64(m.ham))
			}
			now := -1
			if spam {
				now = 1
			}
			if was == now {
				continue
			}
			if was != 0 {
				learn(t, e, fe, was == 1, -1)
			}
			learn(t, e, fe, spam, 1)
			marks[mk] = now
			if spam {
				e.add(mk, -1, 1)
			} else {
				e.add(mk, 1, -1)
			}
		}
	})
}

// learn adds (n=1) or removes (n=-1) one message's counts.
func learn(t *table, e edits, fe features, spam bool, n int64) {
	ham, sp := n, int64(0)
	if spam {
		ham, sp = 0, n
	}
	for _, tok := range fe.tokens {
		e.add(key(kindToken, tok), ham, sp)
	}
	if fe.from != "" {
		e.add(key(kindSender, fe.from), ham, sp)
	}
	t.nham = clampAdd(t.nham, ham)
	t.nspam = clampAdd(t.nspam, sp)
}

// NoteSent records addresses the user wrote to: their mail is then
// welcome when verified.
func (f *Filter) NoteSent(path string, rcpts ...string) error {
	return f.update(path, func(_ *table, e edits) {
		for _, r := range rcpts {
			e.add(key(kindSent, strings.ToLower(r)), 1, 0)
		}
	})
}

// Status is what the filter knows of one user.
type Status struct {
	Ham, Spam  int   // messages trained
	Tokens     int   // distinct words
	Senders    int   // senders with a reputation
	WrittenTo  int   // addresses the user has written to
	FileBytes  int64 // size of the user's file
	MinTrained int   // messages of each kind before word statistics decide
}

// Status reports what the filter knows of the user whose data is at path.
func (f *Filter) Status(path string) (Status, error) {
	t, _, err := readTable(path)
	if err != nil {
		return Status{}, err
	}
	st := Status{Ham: int(t.nham), Spam: int(t.nspam), MinTrained: f.opts.MinTrained}
	for _, r := range t.recs {
		switch kindOf(r.key) {
		case kindToken:
			st.Tokens++
		case kindSender:
			st.Senders++
		case kindSent:
			st.WrittenTo++
		}
	}
	if fi, err := os.Stat(path); err == nil {
		st.FileBytes = fi.Size()
	}
	return st, nil
}

// update reads the user's table afresh under the file's lock, lets change
// fill edits (and adjust the message counts), applies them and writes the
// table back durably.
func (f *Filter) update(path string, change func(*table, edits)) error {
	lk, err := safeio.Lock(path+".lock", false, false)
	if err != nil {
		return fmt.Errorf("junk: lock: %w", err)
	}
	defer lk.Close()
	t, _, err := readTable(path)
	if err != nil && !errors.Is(err, errCorrupt) {
		return err
	}
	if err != nil {
		t = &table{} // a damaged file is started afresh rather than blocking training
	}
	e := make(edits)
	change(t, e)
	t.apply(e)
	t.prune(f.opts.MaxRecords)
	if err := writeTable(f.opts.FS, path, t); err != nil {
		return err
	}
	f.forget(path)
	return nil
}

// load returns the user's table, from the cache when the file has not
// changed since.
func (f *Filter) load(path string) (*table, error) {
	st := statFile(path)
	f.mu.Lock()
	if el, ok := f.byKey[path]; ok {
		c := el.Value.(*cached)
		if c.stamp == st {
			f.lru.MoveToFront(el)
			f.mu.Unlock()
			return c.t, nil
		}
	}
	f.mu.Unlock()
	t, stamp, err := readTable(path)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if el, ok := f.byKey[path]; ok {
		f.removeLocked(el)
	}
	c := &cached{path: path, t: t, stamp: stamp}
	f.byKey[path] = f.lru.PushFront(c)
	f.bytes += c.size()
	for f.bytes > f.opts.CacheBytes && f.lru.Len() > 1 {
		f.removeLocked(f.lru.Back())
	}
	return t, nil
}

func (f *Filter) forget(path string) {
	f.mu.Lock()
	if el, ok := f.byKey[path]; ok {
		f.removeLocked(el)
	}
	f.mu.Unlock()
}

func (f *Filter) removeLocked(el *list.Element) {
	c := el.Value.(*cached)
	f.lru.Remove(el)
	delete(f.byKey, c.path)
	f.bytes -= c.size()
}

func (c *cached) size() int64 { return int64(len(c.t.recs))*recordSize + 128 }

// statFile is the stamp of the file now; the zero stamp when missing.
func statFile(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}
	}
	return stampOf(fi)
}

// messageIdentity names a message for un-training: its Message-ID, or a
// digest of its features when it has none.
func messageIdentity(fe features) string {
	if fe.msgID != "" {
		return "id:" + fe.msgID
	}
	toks := slices.Clone(fe.tokens)
	slices.Sort(toks)
	h := sha256.Sum256([]byte(fe.from + "\x00" + strings.Join(toks, "\x00")))
	return "digest:" + hex.EncodeToString(h[:16])
}

func sign(n int64) int { return cmp.Compare(n, 0) }
