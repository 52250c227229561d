package maildir

import (
	"os"
	"postie/safeio"
	"sync"
	"syscall"
	"time"
)

// flock takes an exclusive (or shared) flock(2) on the lock file at path,
// creating it. Each call opens its own file description, so two holders in
// one process exclude each other as two processes do.
func flock(path string, shared bool) (unlock func(), err error) {
	f, err := safeio.Lock(path, shared, false)
	if err != nil {
		return nil, err
	}
	return func() { f.Close() }, nil
}

// dirStamp is what we know of a directory's modification time, to decide
// whether Refresh must read it again.
//
// A directory's mtime moves with every entry added, removed or renamed, but
// timestamps are coarse (a clock tick, or a whole second on some file
// systems), so two changes in one tick leave one mtime. A listing made while
// the mtime was younger than mtimeSlack may therefore miss a change made
// later in the same tick: such an mtime is not trusted, and the directory is
// read again. With whole-second stamps, or when other processes write the
// directory (always assumed for new/, where postie deliver writes; for cur/
// once we have seen another writer), we also want one listing that began a
// second or more after the mtime.
//
// After a change of our own we record the new mtime (own) and trust it, so
// our changes cause no listing, unless other processes write the directory:
// then an own change counts for no more than a young listing.
type dirStamp struct {
	valid   bool
	strict  bool   // always assume other writers (new/)
	own     bool   // mtime was recorded after our own change, not a listing
	mtime   int64  // ns
	ino     uint64 // a directory replaced by another has another inode
	scanned int64  // wall clock (ns) when the last full listing began
}

const mtimeSlack = 2 * time.Second

type dirStat struct {
	mtime int64
	ino   uint64
}

func statDir(path string) (dirStat, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return dirStat{}, err
	}
	st := dirStat{mtime: fi.ModTime().UnixNano()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = uint64(sys.Ino)
	}
	return st, nil
}

// trusted reports whether the directory, as stat says it is now, is known
// to hold what we last read or wrote. others says whether other processes
// are known to write it.
func (d *dirStamp) trusted(st dirStat, now int64, others bool) bool {
	if !d.valid || st.mtime != d.mtime || st.ino != d.ino {
		return false
	}
	strict := d.strict || others
	if d.own && !strict {
		return true
	}
	if now-st.mtime < int64(mtimeSlack) {
		return false
	}
	coarse := st.mtime%int64(time.Second) == 0
	if (strict || coarse) && d.scanned < st.mtime+int64(time.Second) {
		return false
	}
	return true
}

// setScanned records a full listing that began at began, after stat st.
func (d *dirStamp) setScanned(st dirStat, began int64) {
	d.valid, d.own, d.mtime, d.ino, d.scanned = true, false, st.mtime, st.ino, began
}

// ownChange records the directory's mtime after a change of our own, so that
// the change does not make the next Refresh read the directory again.
func (d *dirStamp) ownChange(path string) {
	st, err := statDir(path)
	if err != nil {
		d.valid = false
		return
	}
	d.mtime, d.ino, d.own = st.mtime, st.ino, true
}

// syncGroup lets concurrent writers share one fsync of a directory (group
// commit): a writer that asks after its rename is covered by a round that
// starts after that moment; rounds never overlap.
type syncGroup struct {
	mu   sync.Mutex
	cur  *syncRound // running, nil if none
	next *syncRound // waiting for cur to end; joined by every newcomer
}

type syncRound struct {
	done chan struct{}
	err  error
}

func (g *syncGroup) sync(fn func() error) error {
	g.mu.Lock()
	if g.cur == nil && g.next == nil {
		r := &syncRound{done: make(chan struct{})}
		g.cur = r
		g.mu.Unlock()
		return g.run(r, fn)
	}
	if g.next != nil { // a round not yet started covers us: join it
		r := g.next
		g.mu.Unlock()
		<-r.done
		return r.err
	}
	r := &syncRound{done: make(chan struct{})}
	g.next = r
	prev := g.cur
	g.mu.Unlock()
	<-prev.done
	g.mu.Lock()
	g.cur, g.next = r, nil
	g.mu.Unlock()
	return g.run(r, fn)
}

func (g *syncGroup) run(r *syncRound, fn func() error) error {
	r.err = fn()
	g.mu.Lock()
	if g.cur == r {
		g.cur = nil
	}
	close(r.done)
	g.mu.Unlock()
	return r.err
}

// syncDirGrouped fsyncs dir, sharing the fsync with concurrent callers.
func (u *User) syncDirGrouped(dir string) error {
	u.syncMu.Lock()
	g := u.syncers[dir]
	if g == nil {
		g = new(syncGroup)
		u.syncers[dir] = g
	}
	u.syncMu.Unlock()
	return g.sync(func() error { return safeio.SyncDir(dir) })
}
