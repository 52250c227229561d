// Package safeio is durable, multi-process-safe file handling: writes that
// a crash leaves either old or new and complete (a temporary file in the
// same directory, fsynced, renamed into place, the directory fsynced), and
// the flock(2) lock files that writers in several processes share.
package safeio

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// SyncDir fsyncs a directory, so that the names created, renamed or
// removed in it are on stable storage.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

// WriteFile replaces path with data, with permissions perm. When root
// rewrites a file owned by another user (the server's account, edited by
// an admin running the CLI as root), the owner is kept, so the server can
// still read it.
func WriteFile(path string, data []byte, perm os.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if err = keepOwner(f, path); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	return SyncDir(dir)
}

func keepOwner(f *os.File, path string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil // a new file: ours
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || int(st.Uid) == os.Geteuid() {
		return nil
	}
	return f.Chown(int(st.Uid), int(st.Gid))
}

// ErrLocked is Lock's answer, with nonblock, when another holder has the
// lock.
var ErrLocked = errors.New("locked by another holder")

// Lock takes a flock(2) on the lock file at path, creating it: exclusive,
// or shared. Each call opens its own file description, so two holders in
// one process exclude each other as two processes do. Closing the returned
// file releases the lock. With nonblock, a lock held elsewhere gives
// ErrLocked at once.
func Lock(path string, shared, nonblock bool) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	how := syscall.LOCK_EX
	if shared {
		how = syscall.LOCK_SH
	}
	if nonblock {
		how |= syscall.LOCK_NB
	}
	for {
		err = syscall.Flock(int(f.Fd()), how)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, ErrLocked
		}
		return nil, fmt.Errorf("flock %s: %w", path, err)
	}
	return f, nil
}

// DirSyncer shares one fsync of a directory among the callers that ask
// while another is running (group commit): a caller is satisfied by an
// fsync that started after it asked, and only by such a one. The zero
// value is not usable; set Dir.
type DirSyncer struct {
	Dir string

	mu   sync.Mutex
	next *syncBatch // the batch new callers join; nil when none is open
	run  sync.Mutex // held by the caller doing an fsync
}

type syncBatch struct {
	done chan struct{}
	err  error
}

// Sync returns once an fsync of Dir that began after the call has ended.
func (g *DirSyncer) Sync() error {
	g.mu.Lock()
	if g.next == nil {
		g.next = &syncBatch{done: make(chan struct{})}
	}
	b := g.next
	g.mu.Unlock()

	g.run.Lock()
	defer g.run.Unlock()
	select {
	case <-b.done: // another member of the batch did it while we waited
		return b.err
	default:
	}
	g.mu.Lock()
	if g.next == b {
		g.next = nil // later callers form the next batch
	}
	g.mu.Unlock()
	b.err = SyncDir(g.Dir)
	close(b.done)
	return b.err
}
