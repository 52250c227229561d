package maildir

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Message is one message's state. A mailbox's messages are sorted by UID;
// index+1 is the sequence number.
type Message struct {
	UID   uint32
	Size  int64     // bytes of the file (RFC822.SIZE; stored with CRLF)
	Date  time.Time // internal date, whole seconds
	Flags Flags
	// ModSeq is the modseq of the message's last change (RFC 7162): its
	// arrival or its latest flag change. At least 1.
	ModSeq uint64
}

// ChangeKind says what a Change is.
type ChangeKind int

// The kinds of change a Watch callback receives.
const (
	Added           ChangeKind = iota + 1 // Seq is the message's new position
	Expunged                              // Seq is its position before removal; delivered from the highest down
	FlagsChanged                          // Seq is its position; Message has the new flags
	KeywordsChanged                       // the folder's keyword list grew (Seq 0): send a new FLAGS
)

// Change is one change to a mailbox, in the order it happened.
type Change struct {
	Kind    ChangeKind
	Seq     uint32
	Message Message
	Origin  any // the origin passed to the operation; nil for Refresh and Deliver
}

// oddName describes a message whose file name is not the canonical form
// for its flags: info letters we do not know (kept on every rename), or an
// info part we cannot parse (kept as it is until the flags change).
type oddName struct {
	suffix  string // exact name after the key (":2,SR"), when not canonical
	exact   bool   // suffix is valid
	unknown string // letters to keep, sorted
}

// Mailbox is one folder's state (UIDs, flags, sizes, internal dates) kept in
// memory and shared by every session in the process. It is safe for
// concurrent use.
type Mailbox struct {
	u  *User
	id uint64 // lock order between two mailboxes

	mu      sync.RWMutex
	name    string
	dir     string
	deleted bool

	uidValidity uint32
	uidNext     uint32
	msgs        []Message
	keys        []string          // keys[i]: msgs[i]'s base name without info
	byKey       map[string]uint32 // base name → UID
	odd         map[uint32]oddName
	size        int64
	pending     map[string]ulLine // UIDs other processes gave files we have not listed yet
	dead        int               // UID list lines not matching a message we hold
	ul          ulState

	modseq    uint64            // HIGHESTMODSEQ: the greatest modseq applied here (modseq.go)
	modseqTop uint64            // the greatest modseq in the UID list, handed out by any process
	vanished  []vanishedUID     // expunges remembered, ascending modseq
	floor     uint64            // greatest modseq of an expunge forgotten
	goneSeen  map[uint32]uint64 // expunges other processes recorded of messages we still hold

	kw        [MaxKeywords]string
	kwDefined Flags
	kwStamp   [2]int64 // mtime, size of postie-keywords when read

	flocked     bool  // we hold the folder's flock (see lockUIDList)
	othersUntil int64 // until then (ns), assume other processes write cur/ (see dirStamp)
	cur, new    dirStamp
	seen        []bool // scratch for scans

	watchers    []watcher
	nextWatch   int
	listings    int // directory listings made (for tests)
	curListings int // of cur/
}

type watcher struct {
	id int
	fn func(Change)
}

// Name is the mailbox's IMAP name.
func (m *Mailbox) Name() string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.name
}

// UIDValidity is the folder's UIDVALIDITY.
func (m *Mailbox) UIDValidity() uint32 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.uidValidity
}

// UIDNext is the UID the next message will get (at least).
func (m *Mailbox) UIDNext() uint32 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.uidNext
}

// Size is the total size of the messages in bytes (STATUS SIZE).
func (m *Mailbox) Size() int64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.size
}

// View calls fn with the messages, sorted by UID (index+1 is the sequence
// number), with the read lock held: fn must not keep msgs or call methods
// of m that change it.
func (m *Mailbox) View(fn func(msgs []Message)) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	fn(m.msgs)
}

// Watch registers fn for every change, from this process or found by
// Refresh, in order. fn is called with the mailbox lock held: it must not
// call back into the Mailbox (nor call cancel). Changes come as Added (one
// per message, ascending; Seq its new position), Expunged (one per message,
// from the highest Seq down; Seq its position before removal),
// FlagsChanged and KeywordsChanged.
func (m *Mailbox) Watch(fn func(Change)) (cancel func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.watchLocked(fn)
}

// ViewAndWatch is View and Watch under one lock, so that the state fn sees
// first and the changes watch receives next fit together (start an IMAP
// MailboxTracker with len(msgs), then feed it the changes).
func (m *Mailbox) ViewAndWatch(view func(msgs []Message), watch func(Change)) (cancel func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	view(m.msgs)
	return m.watchLocked(watch)
}

func (m *Mailbox) watchLocked(fn func(Change)) (cancel func()) {
	id := m.nextWatch
	m.nextWatch++
	m.watchers = append(m.watchers, watcher{id: id, fn: fn})
	return sync.OnceFunc(func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		m.watchers = slices.DeleteFunc(m.watchers, func(w watcher) bool { return w.id == id })
	})
}

func (m *Mailbox) emit(c Change) {
	for _, w := range m.watchers {
		w.fn(c)
	}
}

// list reads a directory of the folder (m.mu held), counting listings.
func (m *Mailbox) list(dir string, fn func(name []byte)) error {
	m.listings++
	if filepath.Base(dir) == "cur" {
		m.curListings++
	}
	return m.u.s.readDirNames(dir, fn)
}

// indexLocked finds uid by binary search.
func (m *Mailbox) indexLocked(uid uint32) (int, bool) {
	lo, hi := 0, len(m.msgs)
	for lo < hi {
		h := int(uint(lo+hi) >> 1)
		if m.msgs[h].UID < uid {
			lo = h + 1
		} else {
			hi = h
		}
	}
	return lo, lo < len(m.msgs) && m.msgs[lo].UID == uid
}

// indicesLocked returns the positions of the uids present, ascending, once.
func (m *Mailbox) indicesLocked(uids []uint32) []int {
	idx := make([]int, 0, len(uids))
	for _, uid := range uids {
		if i, ok := m.indexLocked(uid); ok {
			idx = append(idx, i)
		}
	}
	slices.Sort(idx)
	return slices.Compact(idx)
}

func (m *Mailbox) lastUIDLocked() uint32 {
	if len(m.msgs) == 0 {
		return 0
	}
	return m.msgs[len(m.msgs)-1].UID
}

// fileNameLocked is the current name of message i in cur/.
func (m *Mailbox) fileNameLocked(i int) string {
	var o oddName
	if len(m.odd) > 0 {
		o = m.odd[m.msgs[i].UID]
	}
	if o.exact {
		return m.keys[i] + o.suffix
	}
	return canonicalFileName(m.keys[i], m.msgs[i].Flags, o.unknown)
}

// canonicalFileName is key plus the canonical info for flags and unknown letters.
func canonicalFileName(key string, f Flags, unknown string) string {
	b := make([]byte, 0, len(key)+40)
	b = append(b, key...)
	return string(appendInfo(b, f, unknown))
}

// setOddLocked records how uid's file name departs from the canonical form.
func (m *Mailbox) setOddLocked(uid uint32, o oddName) {
	if !o.exact && o.unknown == "" {
		if len(m.odd) > 0 {
			delete(m.odd, uid)
		}
		return
	}
	if m.odd == nil {
		m.odd = make(map[uint32]oddName)
	}
	m.odd[uid] = o
}

// addMessageLocked appends a message (its UID greater than every other) and
// tells the watchers.
func (m *Mailbox) addMessageLocked(msg Message, key string, o oddName, origin any) {
	m.msgs = append(m.msgs, msg)
	m.keys = append(m.keys, key)
	m.byKey[key] = msg.UID
	m.setOddLocked(msg.UID, o)
	m.size += msg.Size
	m.modseq = max(m.modseq, msg.ModSeq)
	if len(m.pending) > 0 {
		delete(m.pending, key)
	}
	m.emit(Change{Kind: Added, Seq: uint32(len(m.msgs)), Message: msg, Origin: origin})
}

// removeLocked removes the messages at positions idx (ascending) and tells
// the watchers, from the highest position down.
func (m *Mailbox) removeLocked(idx []int, origin any) {
	if len(idx) == 0 {
		return
	}
	for k := len(idx) - 1; k >= 0; k-- {
		i := idx[k]
		m.emit(Change{Kind: Expunged, Seq: uint32(i + 1), Message: m.msgs[i], Origin: origin})
	}
	w, k := idx[0], 0
	for r := idx[0]; r < len(m.msgs); r++ {
		if k < len(idx) && idx[k] == r {
			k++
			uid := m.msgs[r].UID
			delete(m.byKey, m.keys[r])
			if len(m.odd) > 0 {
				delete(m.odd, uid)
			}
			m.size -= m.msgs[r].Size
			continue
		}
		m.msgs[w], m.keys[w] = m.msgs[r], m.keys[r]
		w++
	}
	clear(m.keys[w:])
	m.msgs, m.keys = m.msgs[:w], m.keys[:w]
	m.dead += len(idx)
}

// compactKeys copies the base names into one new string, so the memory of
// removed ones is freed and the live ones sit together.
func (m *Mailbox) compactKeys() {
	n := 0
	for _, k := range m.keys {
		n += len(k)
	}
	var b strings.Builder
	b.Grow(n)
	for _, k := range m.keys {
		b.WriteString(k)
	}
	arena := b.String()
	m.byKey = make(map[string]uint32, len(m.keys))
	off := 0
	for i, k := range m.keys {
		m.keys[i] = arena[off : off+len(k)]
		off += len(k)
		m.byKey[m.keys[i]] = m.msgs[i].UID
	}
}

// splitName splits a file name into the base name and the info (after ':';
// nil when there is no ':').
func splitName(name []byte) (key, info []byte) {
	for i, c := range name {
		if c == ':' {
			return name[:i], name[i+1:]
		}
	}
	return name, nil
}

// keySize reads the ",S=<bytes>" field of a base name.
func keySize(key string) (int64, bool) {
	i := strings.Index(key, ",S=")
	if i < 0 {
		return 0, false
	}
	s := key[i+3:]
	if j := strings.IndexByte(s, ','); j >= 0 {
		s = s[:j]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil && n >= 0
}

// keyTime reads the leading unix time of a base name (when it was
// delivered).
func keyTime(key string) (int64, bool) {
	i := strings.IndexByte(key, '.')
	if i <= 0 {
		return 0, false
	}
	t, err := strconv.ParseInt(key[:i], 10, 64)
	return t, err == nil && t > 0
}

// fileFacts finds a file's size and date from its base name, stat-ing it only
// when the name does not carry them.
func fileFacts(path, key string) (size, date int64) {
	size, okS := keySize(key)
	date, okT := keyTime(key)
	if okS && okT {
		return size, date
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return size, time.Now().Unix()
	}
	if !okS {
		size = fi.Size()
	}
	if !okT {
		date = fi.ModTime().Unix()
	}
	return size, date
}

// oddFor describes a listed name's departure from the canonical form.
func oddFor(name []byte, keyLen int, unknown string, canonical bool) oddName {
	o := oddName{unknown: unknown}
	if !canonical {
		o.exact = true
		o.suffix = string(name[keyLen:])
	}
	return o
}
