package imapd

import (
	"sync"
	"sync/atomic"

	"postie/imapd/mimeparse"
)

// The header-field cache keeps, per message, the raw bytes of the header fields that clients ask for on
// every sync (Thunderbird's BODY.PEEK[HEADER.FIELDS (...)], ENVELOPE, SEARCH FROM/SUBJECT/...), so a
// second sync reads no message file. A message's bytes never change and a UID is never reused within a
// UIDVALIDITY, so entries are never stale; they are dropped on expunge and evicted mailbox by mailbox
// (least recently used first) when the server's budget is spent.

// cachedFields are the fields kept (lower case). A request for any subset of them is answered from the
// cache with exactly the bytes the file would give.
var cachedFields = map[string]bool{
	"date": true, "from": true, "sender": true, "reply-to": true, "to": true, "cc": true, "bcc": true,
	"subject": true, "message-id": true, "in-reply-to": true, "references": true, "content-type": true,
	"priority": true, "x-priority": true, "importance": true, "newsgroups": true, "list-id": true,
	"x-ref": true, "x-msmail-priority": true, "x-msoesrec": true,
}

// isCachedField reports whether a field name (any case) is one the cache keeps.
func isCachedField(name string) bool {
	if len(name) > 32 {
		return false
	}
	var buf [32]byte
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return cachedFields[string(buf[:len(name)])]
}

// allCached reports whether every name is a cached field.
func allCached(names []string) bool {
	for _, n := range names {
		if !isCachedField(n) {
			return false
		}
	}
	return len(names) > 0
}

// cachedSubset returns the raw bytes of h's cached fields, in order.
func cachedSubset(h mimeparse.Header) string {
	n := 0
	for _, f := range h {
		if f.Name != "" && isCachedField(f.Name) {
			n += len(f.Raw)
		}
	}
	b := make([]byte, 0, n)
	for _, f := range h {
		if f.Name != "" && isCachedField(f.Name) {
			b = append(b, f.Raw...)
		}
	}
	return string(b)
}

// entryOverhead approximates a map entry's cost beyond its bytes.
const entryOverhead = 48

// fieldCache is the server-wide budget shared by the per-mailbox caches.
type fieldCache struct {
	mu     sync.Mutex
	budget int64
	used   int64
	clock  atomic.Uint64
	boxes  map[*boxCache]struct{}
}

func newFieldCache(budget int64) *fieldCache {
	return &fieldCache{budget: budget, boxes: make(map[*boxCache]struct{})}
}

// newBox returns an empty cache for one mailbox.
func (c *fieldCache) newBox() *boxCache {
	b := &boxCache{parent: c, entries: make(map[uint32]string)}
	c.mu.Lock()
	c.boxes[b] = struct{}{}
	c.mu.Unlock()
	return b
}

// reserve accounts n more bytes for b, evicting other mailboxes' caches (least recently used first)
// when over budget. It reports whether the bytes fit.
func (c *fieldCache) reserve(b *boxCache, n int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.used+n > c.budget {
		var victim *boxCache
		for o := range c.boxes {
			if o != b && o.bytes.Load() > 0 && (victim == nil || o.lastUse.Load() < victim.lastUse.Load()) {
				victim = o
			}
		}
		if victim == nil {
			return false
		}
		c.used -= victim.clear()
	}
	c.used += n
	return true
}

func (c *fieldCache) release(n int64) {
	c.mu.Lock()
	c.used -= n
	c.mu.Unlock()
}

// boxCache is one mailbox's cache: UID → raw cached fields, for one UIDVALIDITY.
type boxCache struct {
	parent   *fieldCache
	mu       sync.RWMutex
	validity uint32
	entries  map[uint32]string
	bytes    atomic.Int64
	lastUse  atomic.Uint64
}

func (b *boxCache) touch() { b.lastUse.Store(b.parent.clock.Add(1)) }

func (b *boxCache) get(validity, uid uint32) (string, bool) {
	b.mu.RLock()
	s, ok := b.entries[uid]
	ok = ok && b.validity == validity
	b.mu.RUnlock()
	return s, ok
}

func (b *boxCache) put(validity, uid uint32, s string) {
	n := int64(len(s)) + entryOverhead
	var freed int64
	b.mu.Lock()
	if b.validity != validity {
		freed = b.clearLocked()
		b.validity = validity
	}
	_, dup := b.entries[uid]
	b.mu.Unlock()
	if freed > 0 {
		b.parent.release(freed) // never hold b.mu while taking the parent's lock: reserve locks the other way
	}
	if dup || !b.parent.reserve(b, n) {
		return
	}
	b.mu.Lock()
	if _, dup := b.entries[uid]; dup || b.validity != validity {
		b.mu.Unlock()
		b.parent.release(n)
		return
	}
	b.entries[uid] = s
	b.bytes.Add(n)
	b.mu.Unlock()
}

// drop forgets expunged messages.
func (b *boxCache) drop(uid uint32) {
	b.mu.Lock()
	s, ok := b.entries[uid]
	if ok {
		delete(b.entries, uid)
		b.bytes.Add(-(int64(len(s)) + entryOverhead))
	}
	b.mu.Unlock()
	if ok {
		b.parent.release(int64(len(s)) + entryOverhead)
	}
}

// clear empties the cache and returns the bytes freed; the caller accounts them.
func (b *boxCache) clear() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.clearLocked()
}

func (b *boxCache) clearLocked() int64 {
	n := b.bytes.Swap(0)
	b.entries = make(map[uint32]string)
	return n
}
