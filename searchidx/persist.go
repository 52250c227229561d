package searchidx

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/bits"
	"os"
	"path/filepath"

	"postie/safeio"
)

// The file: magic, then uvarints: validity; covered and unsure UID lists (count, deltas); per field
// (header, body) the token count, then per token its length, bytes, postings length, postings;
// last, the CRC-32 (IEEE, big-endian) of everything before it.

const magic = "postie-searchidx 1\n"

// ErrCorrupt is wrapped by Open's error for a file that is not a whole index of this version.
var ErrCorrupt = errors.New("searchidx: index file is corrupt or of another version")

// New returns an empty index for validity, to be saved at path.
func New(path string, validity uint32) *Index {
	return newIndex(path, validity)
}

// Open loads the index saved at path. A missing file gives an empty index and an error that
// errors.Is fs.ErrNotExist; an unusable one an empty index and an error wrapping ErrCorrupt. The
// index returned is usable in every case (for validity 0 until Reset).
func Open(path string) (*Index, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return newIndex(path, 0), fmt.Errorf("searchidx: open: %w", err)
	}
	x, err := decode(path, b)
	if err != nil {
		return newIndex(path, 0), fmt.Errorf("searchidx: %s: %w", path, err)
	}
	return x, nil
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = ErrCorrupt
		r.b = nil
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) bytes(n uint64) []byte {
	if n > uint64(len(r.b)) {
		r.err = ErrCorrupt
		r.b = nil
		return nil
	}
	out := r.b[:n:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) uidList() bitset {
	var set bitset
	n := r.uvarint()
	var last uint64
	for i := uint64(0); i < n && r.err == nil; i++ {
		last += r.uvarint()
		if last >= MaxUID { // a UID this high was never added: corrupt
			r.err = ErrCorrupt
			return nil
		}
		set.add(uint32(last))
	}
	return set
}

func decode(path string, b []byte) (*Index, error) {
	if len(b) < len(magic)+4 || string(b[:len(magic)]) != magic {
		return nil, ErrCorrupt
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.ChecksumIEEE(body) != sum {
		return nil, ErrCorrupt
	}
	r := &reader{b: body[len(magic):]}
	x := newIndex(path, uint32(r.uvarint()))
	x.covered = r.uidList()
	x.unsure = r.uidList()
	for f := range 2 {
		n := r.uvarint()
		if n > uint64(len(r.b)) {
			return nil, ErrCorrupt
		}
		seg := &segment{offs: make([]uint32, 0, n), postOffs: make([]uint32, 0, n)}
		for i := uint64(0); i < n && r.err == nil; i++ {
			tok := r.bytes(r.uvarint())
			post := r.bytes(r.uvarint())
			seg.offs = append(seg.offs, uint32(len(seg.vocab)))
			seg.vocab = append(append(seg.vocab, tok...), 0)
			seg.postOffs = append(seg.postOffs, uint32(len(seg.posts)))
			seg.posts = append(seg.posts, post...)
		}
		x.frozen[f] = seg
	}
	if r.err != nil || len(r.b) != 0 {
		return nil, ErrCorrupt
	}
	return x, nil
}

func appendUIDList(b []byte, set bitset) []byte {
	b = appendUvarint(b, uint64(set.count()))
	var last uint32
	for w, word := range set {
		for ; word != 0; word &= word - 1 {
			u := uint32(w)<<6 | uint32(bits.TrailingZeros64(word))
			b = appendUvarint(b, uint64(u-last))
			last = u
		}
	}
	return b
}

// Save writes the index to its file (merging the in-memory delta first), replacing the old file
// only once the new one is written whole.
func (x *Index) Save() error {
	x.mu.Lock()
	x.mergeLocked()
	b := []byte(magic)
	b = appendUvarint(b, uint64(x.validity))
	b = appendUIDList(b, x.covered)
	b = appendUIDList(b, x.unsure)
	for f := range 2 {
		seg := x.frozen[f]
		b = appendUvarint(b, uint64(len(seg.offs)))
		for i := range seg.offs {
			tok, post := seg.token(i), seg.postings(i)
			b = appendUvarint(b, uint64(len(tok)))
			b = append(b, tok...)
			b = appendUvarint(b, uint64(len(post)))
			b = append(b, post...)
		}
	}
	b = binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
	unsaved := x.unsaved
	x.mu.Unlock()

	if err := writeFile(x.path, b); err != nil {
		return err
	}
	x.mu.Lock()
	x.unsaved -= unsaved
	x.mu.Unlock()
	return nil
}

func writeFile(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("searchidx: save: %w", err)
	}
	// No directory fsync: a rename lost in a crash leaves the old file (or none), which the
	// comparison with the folder then catches up.
	if err := (*safeio.FS)(nil).Replace(path, b, 0o600); err != nil {
		return fmt.Errorf("searchidx: save %s: %w", path, err)
	}
	return nil
}
