package maildir

import (
	"os"
	"postie/safeio"
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

// syncDirGrouped fsyncs dir, sharing the fsync with concurrent callers.
func (u *User) syncDirGrouped(dir string) error {
	u.syncMu.Lock()
	g := u.syncers[dir]
	if g == nil {
		g = &safeio.DirSyncer{Dir: dir, FS: u.s.fs}
		u.syncers[dir] = g
	}
	u.syncMu.Unlock()
	return g.Sync()
}

// faultRename asks fs's Fault hook about a rename to newPath, as
// safeio.FS.Rename does, for the renames dirMover makes itself.
func faultRename(fs *safeio.FS, newPath string) error {
	if fs == nil || fs.Fault == nil {
		return nil
	}
	if err := fs.Fault(safeio.OpRename, newPath); err != nil {
		return &os.PathError{Op: string(safeio.OpRename), Path: newPath, Err: err}
	}
	return nil
}

// traceRename reports a rename dirMover made to fs's Trace hook.
func traceRename(fs *safeio.FS, newPath string) {
	if fs != nil && fs.Trace != nil {
		fs.Trace(safeio.OpRename, newPath)
	}
}
