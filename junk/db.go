package junk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"slices"
	"sort"
	"syscall"

	"postie/safeio"
)

// The per-user file is one table of 16-byte records sorted by key:
//
//	"PJUNK1\n\x00"  magic (8 bytes)
//	nham, nspam     uint32 each: messages trained as ham and as spam
//	count           uint32: records that follow
//	reserved        uint32
//	records         key uint64, ham uint32, spam uint32 (little endian)
//
// A key is a 62-bit FNV-1a hash of the thing counted, with its kind in the
// top two bits: a word token, a trained message (ham or spam 1: how it was
// trained, for un-training), a sender's reputation (messages of it kept as
// ham or put in Junk), or an address the user has written to. Hashing keeps
// records small and the file free of the user's words; a collision merges
// two tokens' counts, which the statistics shrug off.
const (
	magic      = "PJUNK1\n\x00"
	headerSize = 24
	recordSize = 16
)

type kind uint64

const (
	kindToken kind = iota
	kindMsg
	kindSender
	kindSent
)

func key(k kind, s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()>>2 | uint64(k)<<62
}

func kindOf(key uint64) kind { return kind(key >> 62) }

type record struct {
	key       uint64
	ham, spam uint32
}

// table is one user's data in memory: records sorted by key.
type table struct {
	nham, nspam uint32
	recs        []record
}

func (t *table) find(key uint64) (int, bool) {
	return sort.Find(len(t.recs), func(i int) int {
		switch k := t.recs[i].key; {
		case key < k:
			return -1
		case key > k:
			return 1
		}
		return 0
	})
}

// get returns the counts of key (zero when absent).
func (t *table) get(key uint64) record {
	if i, ok := t.find(key); ok {
		return t.recs[i]
	}
	return record{key: key}
}

// edits are changes to apply to a table at once: added to the counts
// (negative to un-train), records whose counts reach zero removed.
type edits map[uint64][2]int64

func (e edits) add(key uint64, ham, spam int64) {
	v := e[key]
	v[0] += ham
	v[1] += spam
	e[key] = v
}

// apply merges e into t, keeping the records sorted.
func (t *table) apply(e edits) {
	keys := make([]uint64, 0, len(e))
	for k := range e {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]record, 0, len(t.recs)+len(keys))
	i := 0
	for _, k := range keys {
		for i < len(t.recs) && t.recs[i].key < k {
			out = append(out, t.recs[i])
			i++
		}
		r := record{key: k}
		if i < len(t.recs) && t.recs[i].key == k {
			r = t.recs[i]
			i++
		}
		d := e[k]
		r.ham = clampAdd(r.ham, d[0])
		r.spam = clampAdd(r.spam, d[1])
		if r.ham != 0 || r.spam != 0 {
			out = append(out, r)
		}
	}
	t.recs = append(out, t.recs[i:]...)
}

func clampAdd(v uint32, d int64) uint32 {
	n := int64(v) + d
	switch {
	case n < 0:
		return 0
	case n > 1<<31:
		return 1 << 31
	}
	return uint32(n)
}

// prune keeps the table within max records: word tokens seen least are
// dropped first, then the oldest-looking trained-message marks (any: they
// only serve un-training). Senders and written-to addresses are kept.
func (t *table) prune(max int) {
	if len(t.recs) <= max {
		return
	}
	target := max * 9 / 10
	drop := len(t.recs) - target
	for _, k := range []kind{kindToken, kindMsg} {
		if drop <= 0 {
			break
		}
		var counts []uint32
		for _, r := range t.recs {
			if kindOf(r.key) == k {
				counts = append(counts, r.ham+r.spam)
			}
		}
		if len(counts) == 0 {
			continue
		}
		slices.Sort(counts)
		n := min(drop, len(counts))
		cut := counts[n-1] // drop records counted at most cut, up to n of them
		kept := t.recs[:0]
		for _, r := range t.recs {
			if n > 0 && kindOf(r.key) == k && r.ham+r.spam <= cut {
				n--
				drop--
				continue
			}
			kept = append(kept, r)
		}
		t.recs = kept
	}
}

func (t *table) encode() []byte {
	b := make([]byte, headerSize, headerSize+len(t.recs)*recordSize)
	copy(b, magic)
	binary.LittleEndian.PutUint32(b[8:], t.nham)
	binary.LittleEndian.PutUint32(b[12:], t.nspam)
	binary.LittleEndian.PutUint32(b[16:], uint32(len(t.recs)))
	for _, r := range t.recs {
		b = binary.LittleEndian.AppendUint64(b, r.key)
		b = binary.LittleEndian.AppendUint32(b, r.ham)
		b = binary.LittleEndian.AppendUint32(b, r.spam)
	}
	return b
}

var errCorrupt = errors.New("not a junk filter file, or a damaged one")

func decode(b []byte) (*table, error) {
	if len(b) < headerSize || string(b[:8]) != magic {
		return nil, errCorrupt
	}
	n := binary.LittleEndian.Uint32(b[16:])
	if uint64(len(b)-headerSize) != uint64(n)*recordSize {
		return nil, errCorrupt
	}
	t := &table{
		nham:  binary.LittleEndian.Uint32(b[8:]),
		nspam: binary.LittleEndian.Uint32(b[12:]),
		recs:  make([]record, n),
	}
	p := b[headerSize:]
	for i := range t.recs {
		r := &t.recs[i]
		r.key = binary.LittleEndian.Uint64(p)
		r.ham = binary.LittleEndian.Uint32(p[8:])
		r.spam = binary.LittleEndian.Uint32(p[12:])
		if i > 0 && r.key <= t.recs[i-1].key {
			return nil, errCorrupt
		}
		p = p[recordSize:]
	}
	return t, nil
}

// readTable reads the file at path; a missing file is an empty table.
func readTable(path string) (*table, fileStamp, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return &table{}, fileStamp{}, nil
	}
	if err != nil {
		return nil, fileStamp{}, fmt.Errorf("junk: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fileStamp{}, fmt.Errorf("junk: %w", err)
	}
	if fi.Size() > maxFileSize {
		return nil, fileStamp{}, fmt.Errorf("junk: %s: %w", path, errCorrupt)
	}
	b := make([]byte, fi.Size())
	if _, err := f.ReadAt(b, 0); err != nil {
		return nil, fileStamp{}, fmt.Errorf("junk: read %s: %w", path, err)
	}
	t, err := decode(b)
	if err != nil {
		return nil, fileStamp{}, fmt.Errorf("junk: %s: %w", path, err)
	}
	return t, stampOf(fi), nil
}

const maxFileSize = 64 << 20

func writeTable(fsys *safeio.FS, path string, t *table) error {
	if err := fsys.WriteFile(path, t.encode(), 0o600); err != nil {
		return fmt.Errorf("junk: write %s: %w", path, err)
	}
	return nil
}

// fileStamp tells whether the file changed since it was read.
// Every write renames a new file into place, so a new inode says changed
// whatever the clock's resolution.
type fileStamp struct {
	size, mtime int64
	ino         uint64
	valid       bool
}

func stampOf(fi os.FileInfo) fileStamp {
	st := fileStamp{size: fi.Size(), mtime: fi.ModTime().UnixNano(), valid: true}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = uint64(sys.Ino)
	}
	return st
}
