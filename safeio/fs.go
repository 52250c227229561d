package safeio

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// Op names one step of a durable write, as FS.Fault sees it.
type Op string

// The steps of a durable write, in the order they happen.
const (
	OpCreate  Op = "create"   // a new file is created (exclusively)
	OpWrite   Op = "write"    // bytes are written to it (each Write or ReadFrom call)
	OpSync    Op = "fsync"    // the file's data is flushed (then it is closed)
	OpRename  Op = "rename"   // it is renamed (or hard-linked) into place; the path is the new name
	OpSyncDir Op = "fsyncdir" // the directory holding the name is flushed
	OpRemove  Op = "remove"   // a file is removed (a take-back); never faulted by Fault
)

// FS performs every durable write of Postie: create a file, write it, fsync
// and close it, rename it into place, fsync its directory. One type does it
// so that one seam reaches every step everywhere: a test sets Fault to fail
// a chosen step and checks that the caller reports a temporary error and
// leaves nothing behind.
//
// A nil *FS is the real file system with no faults, so a struct that holds an
// *FS needs no setup.
type FS struct {
	// Fault, when not nil, is called before each step with the step and
	// the path it acts on (the file's name for create, write and fsync; the
	// target for rename; the directory for fsyncdir). A non-nil answer
	// fails the step with that error, which is returned as the system
	// call's error would be. It must be safe for concurrent use.
	Fault func(op Op, path string) error

	// Trace, when not nil, is called after each step that succeeded
	// (including OpRemove), for tests that check the order of steps.
	Trace func(op Op, path string)
}

// ErrInjected is a convenient error for FS.Fault to return.
var ErrInjected = errors.New("injected fault")

func (fs *FS) fault(op Op, path string) error {
	if fs == nil || fs.Fault == nil {
		return nil
	}
	if err := fs.Fault(op, path); err != nil {
		return &os.PathError{Op: string(op), Path: path, Err: err}
	}
	return nil
}

func (fs *FS) trace(op Op, path string) {
	if fs != nil && fs.Trace != nil {
		fs.Trace(op, path)
	}
}

// File is a new file being written durably. Its content becomes durable at
// Sync (which also closes it); its name at the directory fsync that follows
// the rename into place. Abort takes it back at any point before.
type File struct {
	fs     *FS
	f      *os.File
	name   string
	closed bool
}

// Create makes a new file at path, which must not exist (O_EXCL), with
// permissions perm.
func (fs *FS) Create(path string, perm os.FileMode) (*File, error) {
	if err := fs.fault(OpCreate, path); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return nil, err
	}
	fs.trace(OpCreate, path)
	return &File{fs: fs, f: f, name: path}, nil
}

// CreateTemp makes a new file in dir, named from pattern as os.CreateTemp
// names it, with permissions perm.
func (fs *FS) CreateTemp(dir, pattern string, perm os.FileMode) (*File, error) {
	if err := fs.fault(OpCreate, filepath.Join(dir, pattern)); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return nil, err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	fs.trace(OpCreate, f.Name())
	return &File{fs: fs, f: f, name: f.Name()}, nil
}

// Name is the file's path.
func (t *File) Name() string { return t.name }

// OS is the open file, for what FS does not wrap (Chtimes, Chown, Stat).
func (t *File) OS() *os.File { return t.f }

// Write writes p to the file.
func (t *File) Write(p []byte) (int, error) {
	if err := t.fs.fault(OpWrite, t.name); err != nil {
		return 0, err
	}
	n, err := t.f.Write(p)
	if err == nil {
		t.fs.trace(OpWrite, t.name)
	}
	return n, err
}

// Copy writes all of r to the file through buf (nil: a buffer of its own),
// as io.CopyBuffer does.
func (t *File) Copy(r io.Reader, buf []byte) (int64, error) {
	if err := t.fs.fault(OpWrite, t.name); err != nil {
		return 0, err
	}
	n, err := io.CopyBuffer(writerOnly{t.f}, r, buf)
	if err == nil {
		t.fs.trace(OpWrite, t.name)
	}
	return n, err
}

// writerOnly hides *os.File's ReadFrom, so that CopyBuffer uses the
// caller's buffer.
type writerOnly struct{ io.Writer }

// Sync flushes the file's data to stable storage and closes it.
func (t *File) Sync() error {
	if t.closed {
		return fmt.Errorf("safeio: %s: sync after close", t.name)
	}
	err := t.fs.fault(OpSync, t.name)
	if err == nil {
		err = t.f.Sync()
	}
	if err == nil {
		t.fs.trace(OpSync, t.name)
	}
	t.closed = true
	if cerr := t.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Abort closes the file if it is open and removes it: the write is taken
// back. Safe to call after Sync or a failed step; a no-op on nil.
func (t *File) Abort() {
	if t == nil {
		return
	}
	if !t.closed {
		t.closed = true
		t.f.Close()
	}
	t.fs.Remove(t.name)
}

// Rename renames oldpath to newpath (replacing it, as rename(2) does).
func (fs *FS) Rename(oldpath, newpath string) error {
	if err := fs.fault(OpRename, newpath); err != nil {
		return err
	}
	if err := os.Rename(oldpath, newpath); err != nil {
		return err
	}
	fs.trace(OpRename, newpath)
	return nil
}

// Link gives oldpath the further name newpath, failing with an error that
// matches fs.ErrExist when newpath exists: a rename that never replaces.
func (fs *FS) Link(oldpath, newpath string) error {
	if err := fs.fault(OpRename, newpath); err != nil {
		return err
	}
	if err := os.Link(oldpath, newpath); err != nil {
		return err
	}
	fs.trace(OpRename, newpath)
	return nil
}

// Remove removes path, ignoring a missing one. Takes back are never faulted:
// they run on the error paths that tests exercise.
func (fs *FS) Remove(path string) error {
	err := os.Remove(path)
	if err == nil || errors.Is(err, os.ErrNotExist) {
		fs.trace(OpRemove, path)
		return nil
	}
	return err
}

// RemoveAll removes path and what it holds, ignoring a missing one; like
// Remove it is a take-back, traced (OpRemove) but never faulted.
func (fs *FS) RemoveAll(path string) error {
	if err := os.RemoveAll(path); err != nil {
		return err
	}
	fs.trace(OpRemove, path)
	return nil
}

// SyncDir fsyncs a directory, so that the names created, renamed or removed
// in it are on stable storage.
func (fs *FS) SyncDir(dir string) error {
	if err := fs.fault(OpSyncDir, dir); err != nil {
		return err
	}
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
	fs.trace(OpSyncDir, dir)
	return nil
}

// WriteFile replaces path with data, with permissions perm: a temporary file
// in the same directory is written, fsynced, renamed over path, and the
// directory is fsynced. On error path is unchanged and nothing is left
// behind. When root rewrites a file owned by another user (the server's
// account, edited by an admin running the CLI as root), the owner is kept,
// so the server can still read it.
func (fs *FS) WriteFile(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	if err := fs.Replace(path, data, perm); err != nil {
		return err
	}
	return fs.SyncDir(dir)
}

// Replace is WriteFile without the directory fsync, for callers that share
// one among several files (DirSyncer). Until that fsync, a crash may leave
// the old content.
func (fs *FS) Replace(path string, data []byte, perm os.FileMode) error {
	f, err := fs.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*", perm)
	if err != nil {
		return err
	}
	if err := keepOwner(f.f, path); err != nil {
		f.Abort()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Abort()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Abort()
		return err
	}
	if err := fs.Rename(f.name, path); err != nil {
		f.Abort()
		return err
	}
	return nil
}

// CreateNew stores data at path, which must not exist: a temporary file in
// the same directory is written and fsynced, then hard-linked into place
// (so a concurrent writer cannot be overwritten: the error then matches
// fs.ErrExist), and the directory is fsynced.
func (fs *FS) CreateNew(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := fs.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-*", perm)
	if err != nil {
		return err
	}
	defer f.Abort() // the temporary name goes in every case
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := fs.Link(f.name, path); err != nil {
		return err
	}
	if err := fs.SyncDir(dir); err != nil {
		fs.Remove(path) // not durable: take it back, as a failed write leaves nothing
		return err
	}
	return nil
}

// Append appends data to the existing file at path and fsyncs it. It
// returns the file's size afterwards. A failure may leave part of data at
// the end of the file: appenders must be able to recognise a torn tail.
func (fs *FS) Append(path string, data []byte) (size int64, err error) {
	if err := fs.fault(OpWrite, path); err != nil {
		return 0, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return 0, err
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	if _, err := f.Write(data); err != nil {
		return 0, err
	}
	fs.trace(OpWrite, path)
	if err := fs.fault(OpSync, path); err != nil {
		return 0, err
	}
	if err := f.Sync(); err != nil {
		return 0, err
	}
	fs.trace(OpSync, path)
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// keepOwner gives f the owner of the existing file at path, when root
// rewrites another user's file.
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
