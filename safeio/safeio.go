// Package safeio is durable, multi-process-safe file handling: writes that
// a crash leaves either old or new and complete (a temporary file in the
// same directory, fsynced, renamed into place, the directory fsynced), and
// the flock(2) lock files that writers in several processes share.
//
// FS is the one durable-write primitive: every package that writes
// something it will acknowledge (a delivered message, a queued one, a state
// file, a password file, a key) does it through an *FS, whose Fault hook lets
// tests fail each step (create, write, fsync, rename, directory fsync) in
// turn. This is hand-written (as chasquid's safeio is) because no library
// offers the steps separately with such a seam.
package safeio

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
)

// SyncDir is FS.SyncDir on the real file system, for callers without a
// seam.
func SyncDir(dir string) error { return (*FS)(nil).SyncDir(dir) }

// WriteFile is FS.WriteFile on the real file system, for callers without a
// seam.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	return (*FS)(nil).WriteFile(path, data, perm)
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
	return flock(f, path, shared, nonblock)
}

// LockDir takes an exclusive flock(2) on the directory at path, which must
// exist, as Lock does on a lock file: a folder being built or taken apart
// is locked by its owner so that nobody cleans it away meanwhile.
func LockDir(path string, nonblock bool) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	return flock(f, path, false, nonblock)
}

// flock locks the open file f (named path, for errors), closing it if it
// cannot.
func flock(f *os.File, path string, shared, nonblock bool) (*os.File, error) {
	how := syscall.LOCK_EX
	if shared {
		how = syscall.LOCK_SH
	}
	if nonblock {
		how |= syscall.LOCK_NB
	}
	var err error
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
	FS  *FS // nil: the real file system

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
	b.err = g.FS.SyncDir(g.Dir)
	close(b.done)
	return b.err
}
