// Package searchidx is a per-folder full-text index that lets a substring search (IMAP SEARCH TEXT
// and BODY) skip the messages that cannot match, without changing what matches.
//
// The index keeps, per message (by UID), the tokens of its searchable text: the caller feeds the
// exact text its search looks in, already case-folded, part by part (Doc). A token is a maximal run
// of word bytes: ASCII letters and digits and every byte of a multi-byte UTF-8 sequence. Header text
// and body text are indexed apart, so a body-only search can be answered too.
//
// Query answers for one folded needle, with the needle's runs of word bytes:
//   - a needle that is one run is decided: a part's text contains it exactly when one of the
//     part's tokens does, and the index knows every token, so the set of messages is exact;
//   - a needle of several runs (or with other bytes around its run) gets candidates: the messages
//     that have a token containing each run; the caller checks those, and only those, exactly;
//   - a needle with no word byte cannot be narrowed (Undecided).
//
// Messages the index could not read, and those with a token longer than MaxToken, are never
// excluded: Query lists them as candidates to check.
//
// The index is never a second source of truth: it says which UIDs of which UIDVALIDITY it covers,
// the caller compares that with the folder (Missing, Retain) and indexes what is new before asking.
// On disk it is one file, written whole to a temporary name and renamed over the old one, ending in
// a CRC-32 of its contents: a file that is truncated, corrupt or of another format version is not
// used (Open reports it and returns an empty index, which the caller fills again).
//
// An Index is safe for concurrent use.
package searchidx

import (
	"bytes"
	"math/bits"
	"slices"
	"sort"
	"sync"
)

// MaxToken is the longest token indexed; a message with a longer one is always a candidate.
const MaxToken = 64

// MaxUID bounds the UIDs an index takes (its sets are bitmaps: 8 MiB at most); a folder with
// higher UIDs is not indexed.
const MaxUID = 1 << 26

// mergeEvery is how many documents the in-memory delta takes before it is merged into the frozen
// segments.
const mergeEvery = 4096

// field indexes: header text and body text.
const (
	fieldHeader = 0
	fieldBody   = 1
)

// Index is one folder's index.
type Index struct {
	mu       sync.RWMutex
	path     string
	validity uint32
	covered  bitset // UIDs indexed
	unsure   bitset // covered UIDs that are candidates for every query (unreadable, over-long tokens)
	frozen   [2]*segment
	delta    [2]map[string][]uint32
	deltaN   int // documents in delta
	unsaved  int // changes since the last Save
	stale    int // expunged UIDs still in the postings
}

func newIndex(path string, validity uint32) *Index {
	x := &Index{path: path, validity: validity}
	x.frozen = [2]*segment{{}, {}}
	x.delta = [2]map[string][]uint32{{}, {}}
	return x
}

// Validity is the UIDVALIDITY the index is for.
func (x *Index) Validity() uint32 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.validity
}

// Reset empties the index and makes it one for validity.
func (x *Index) Reset(validity uint32) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.validity = validity
	x.covered, x.unsure = nil, nil
	x.frozen = [2]*segment{{}, {}}
	x.delta = [2]map[string][]uint32{{}, {}}
	x.deltaN, x.stale = 0, 0
	x.unsaved = 1
}

// Covers reports whether uid is indexed.
func (x *Index) Covers(uid uint32) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.covered.has(uid)
}

// Missing returns the UIDs of live (ascending) that the index does not cover.
func (x *Index) Missing(live []uint32) []uint32 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	var out []uint32
	for _, u := range live {
		if !x.covered.has(u) {
			out = append(out, u)
		}
	}
	return out
}

// Retain forgets the covered UIDs that are not in live (ascending): expunged messages.
func (x *Index) Retain(live []uint32) {
	x.mu.Lock()
	defer x.mu.Unlock()
	var keep bitset
	for _, u := range live {
		if x.covered.has(u) {
			keep.add(u)
		}
	}
	gone := x.covered.count() - keep.count()
	if gone == 0 {
		return
	}
	x.covered = keep
	x.unsure = x.unsure.and(keep)
	x.stale += gone
	x.unsaved += gone
}

// Stats describes an index's size.
type Stats struct {
	Docs      int   // messages covered
	Tokens    int   // distinct tokens (header and body counted apart)
	MemBytes  int64 // heap the index holds, approximately
	Postings  int64 // bytes of encoded postings
	VocabSize int64 // bytes of token text
}

// Stats returns the index's size.
func (x *Index) Stats() Stats {
	x.mu.RLock()
	defer x.mu.RUnlock()
	var s Stats
	s.Docs = x.covered.count()
	for f := range 2 {
		seg := x.frozen[f]
		s.Tokens += len(seg.offs)
		s.VocabSize += int64(len(seg.vocab))
		s.Postings += int64(len(seg.posts))
		s.MemBytes += int64(len(seg.vocab) + len(seg.posts) + 8*len(seg.offs))
		for tok, p := range x.delta[f] {
			s.Tokens++
			s.MemBytes += int64(len(tok) + 4*cap(p) + 64)
		}
	}
	s.MemBytes += int64(len(x.covered)+len(x.unsure)) * 8
	return s
}

// Doc is one message being indexed; it is a mimeparse.TextSink.
type Doc struct {
	uid    uint32
	field  int
	tok    []byte
	long   bool
	tokens [2]map[string]struct{}
}

// NewDoc starts indexing the message uid; give it to the text walk, then to Add.
func NewDoc(uid uint32) *Doc {
	return &Doc{uid: uid, tokens: [2]map[string]struct{}{{}, {}}}
}

// Reset starts a part: header text (body false) or body text.
func (d *Doc) Reset(body bool) {
	d.flush()
	d.field = fieldHeader
	if body {
		d.field = fieldBody
	}
}

// Write takes the next folded bytes of the part.
func (d *Doc) Write(folded []byte) {
	for _, c := range folded {
		if isWordByte(c) {
			d.tok = append(d.tok, c)
			continue
		}
		d.flush()
	}
}

func (d *Doc) flush() {
	if len(d.tok) == 0 {
		return
	}
	if len(d.tok) > MaxToken {
		d.long = true
	} else {
		d.tokens[d.field][string(d.tok)] = struct{}{}
	}
	d.tok = d.tok[:0]
}

func isWordByte(c byte) bool {
	return c >= 0x80 || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

// Add records a document; failed says its text could not be read whole (it is then a candidate
// for every query). Adding a covered UID does nothing.
func (x *Index) Add(d *Doc, failed bool) {
	d.flush()
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.covered.has(d.uid) || d.uid >= MaxUID {
		return
	}
	x.covered.add(d.uid)
	if failed || d.long {
		x.unsure.add(d.uid)
	}
	if !failed {
		for f := range 2 {
			for tok := range d.tokens[f] {
				x.delta[f][tok] = append(x.delta[f][tok], d.uid)
			}
		}
	}
	x.deltaN++
	x.unsaved++
	if x.deltaN >= mergeEvery {
		x.mergeLocked()
	}
}

// Result is a query's answer for one needle.
type Result struct {
	// Decided: Match is exactly the set of covered messages whose text contains the needle, except
	// that Maybe messages must be checked. Not decided: Match holds the candidates (to check).
	Decided bool
	// Undecided: the index cannot narrow this needle at all; every message must be checked.
	Undecided bool
	match     bitset
	maybe     bitset
	known     bitset // the UIDs covered when the query ran
}

// Excludes reports whether message uid certainly does not contain the needle (false for a
// message the index did not cover when queried).
func (r *Result) Excludes(uid uint32) bool {
	return !r.Undecided && r.known.has(uid) && !r.match.has(uid) && !r.maybe.has(uid)
}

// Includes reports whether message uid certainly contains the needle.
func (r *Result) Includes(uid uint32) bool {
	return r.Decided && r.known.has(uid) && r.match.has(uid) && !r.maybe.has(uid)
}

// Candidates is the number of messages the needle may be in (for logs and tests).
func (r *Result) Candidates() int { return r.match.or(r.maybe).count() }

// Query answers for a folded needle (as mimeparse.Fold folds it); body limits it to body text.
// Only covered UIDs are answered for: the caller checks the others.
func (x *Index) Query(needle []byte, body bool) *Result {
	runs, pure := wordRuns(needle)
	if len(runs) == 0 {
		return &Result{Undecided: true}
	}
	x.mu.RLock()
	defer x.mu.RUnlock()
	r := &Result{Decided: pure, maybe: slices.Clone(x.unsure), known: slices.Clone(x.covered)}
	for i, run := range runs {
		var set bitset
		if len(run) <= MaxToken {
			set = x.lookupLocked(run, fieldBody)
			if !body {
				set = set.or(x.lookupLocked(run, fieldHeader))
			}
		}
		if i == 0 {
			r.match = set
		} else {
			r.match = r.match.and(set)
		}
	}
	r.match = r.match.and(r.known)
	return r
}

// wordRuns splits a needle into its runs of word bytes; pure reports that it is exactly one run.
func wordRuns(needle []byte) (runs [][]byte, pure bool) {
	start := -1
	for i := 0; i <= len(needle); i++ {
		if i < len(needle) && isWordByte(needle[i]) {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 {
			runs = append(runs, needle[start:i])
			start = -1
		}
	}
	return runs, len(runs) == 1 && len(runs[0]) == len(needle)
}

// lookupLocked returns the UIDs with a token of field f containing run.
func (x *Index) lookupLocked(run []byte, f int) bitset {
	var set bitset
	x.frozen[f].find(run, func(p []byte) { decodePostings(p, set.add) })
	for tok, uids := range x.delta[f] {
		if len(tok) >= len(run) && bytes.Contains([]byte(tok), run) {
			for _, u := range uids {
				set.add(u)
			}
		}
	}
	return set
}

// Unsaved reports how many changes the file lacks.
func (x *Index) Unsaved() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.unsaved
}

// mergeLocked folds the delta into the frozen segments, dropping expunged UIDs.
func (x *Index) mergeLocked() {
	for f := range 2 {
		x.frozen[f] = x.frozen[f].merge(x.delta[f], x.covered)
		x.delta[f] = map[string][]uint32{}
	}
	x.deltaN, x.stale = 0, 0
}

// segment is an immutable token table: vocab holds the tokens sorted, each followed by a 0 byte;
// offs[i] is where token i starts; posts holds each token's UIDs (ascending, delta-varint coded),
// postOffs[i] where token i's start (the end is the next one's start).
type segment struct {
	vocab    []byte
	offs     []uint32
	posts    []byte
	postOffs []uint32
}

func (s *segment) token(i int) []byte {
	end := len(s.vocab) - 1
	if i+1 < len(s.offs) {
		end = int(s.offs[i+1]) - 1
	}
	return s.vocab[s.offs[i]:end]
}

func (s *segment) postings(i int) []byte {
	end := len(s.posts)
	if i+1 < len(s.postOffs) {
		end = int(s.postOffs[i+1])
	}
	return s.posts[s.postOffs[i]:end]
}

// find calls fn with the postings of every token that contains run.
func (s *segment) find(run []byte, fn func(postings []byte)) {
	pos := 0
	for pos < len(s.vocab) {
		j := bytes.Index(s.vocab[pos:], run)
		if j < 0 {
			return
		}
		at := uint32(pos + j)
		i := sort.Search(len(s.offs), func(i int) bool { return s.offs[i] > at }) - 1
		fn(s.postings(i))
		if i+1 < len(s.offs) {
			pos = int(s.offs[i+1])
		} else {
			return
		}
	}
}

// merge returns a new segment with s's tokens and delta's, keeping only UIDs in live.
func (s *segment) merge(delta map[string][]uint32, live bitset) *segment {
	keys := make([]string, 0, len(delta))
	for k := range delta {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := &segment{}
	var uids []uint32
	emit := func(tok []byte, uids []uint32) {
		n := len(out.posts)
		var last uint32
		for _, u := range uids {
			if live.has(u) && (len(out.posts) == n || u > last) {
				out.posts = appendUvarint(out.posts, uint64(u-last))
				last = u
			}
		}
		if len(out.posts) == n {
			return // no live message has it
		}
		out.offs = append(out.offs, uint32(len(out.vocab)))
		out.postOffs = append(out.postOffs, uint32(n))
		out.vocab = append(append(out.vocab, tok...), 0)
	}
	i, k := 0, 0
	for i < len(s.offs) || k < len(keys) {
		var c int
		switch {
		case i == len(s.offs):
			c = 1
		case k == len(keys):
			c = -1
		default:
			c = bytes.Compare(s.token(i), []byte(keys[k]))
		}
		uids = uids[:0]
		var tok []byte
		if c <= 0 {
			tok = s.token(i)
			decodePostings(s.postings(i), func(u uint32) { uids = append(uids, u) })
			i++
		}
		if c >= 0 {
			tok = []byte(keys[k])
			uids = append(uids, delta[keys[k]]...)
			k++
		}
		if c >= 0 {
			slices.Sort(uids) // delta lists are in the order documents were added
		}
		emit(tok, uids)
	}
	return out
}

func appendUvarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// decodePostings calls fn with each UID of a delta-varint list.
func decodePostings(p []byte, fn func(uint32)) {
	var last, v uint64
	var shift uint
	for _, c := range p {
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			last += v
			fn(uint32(last))
			v, shift = 0, 0
			continue
		}
		shift += 7
		if shift > 63 {
			return
		}
	}
}

// bitset is a set of UIDs.
type bitset []uint64

func (b *bitset) add(u uint32) {
	if u >= MaxUID {
		return
	}
	w := int(u >> 6)
	if w >= len(*b) {
		*b = append(*b, make([]uint64, w+1-len(*b))...)
	}
	(*b)[w] |= 1 << (u & 63)
}

func (b bitset) has(u uint32) bool {
	w := int(u >> 6)
	return w < len(b) && b[w]&(1<<(u&63)) != 0
}

func (b bitset) count() int {
	n := 0
	for _, w := range b {
		n += bits.OnesCount64(w)
	}
	return n
}

func (b bitset) and(o bitset) bitset {
	out := make(bitset, min(len(b), len(o)))
	for i := range out {
		out[i] = b[i] & o[i]
	}
	return out
}

func (b bitset) or(o bitset) bitset {
	if len(b) < len(o) {
		b, o = o, b
	}
	out := slices.Clone(b)
	for i := range o {
		out[i] |= o[i]
	}
	return out
}
