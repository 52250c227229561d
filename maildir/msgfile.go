package maildir

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// MessageFile is a message file open for reading: a bare descriptor. An
// *os.File costs several system calls more per open on Linux (it tries the
// network poller, which refuses regular files, setting and clearing
// O_NONBLOCK on the way) and a finalizer; a FETCH 1:* opens every file of the
// folder. The caller must Close it. It is not safe for concurrent Read
// (ReadAt is).
type MessageFile struct {
	fd   int
	path string
	off  int64 // for Read
	size int64 // -1 until Stat asked
}

// OpenMessage opens the message's file for reading, as Open does, without an
// *os.File. ErrNoSuchMessage if it is gone.
func (m *Mailbox) OpenMessage(uid uint32) (*MessageFile, error) {
	fd, path, err := m.openFD(uid)
	if err != nil {
		return nil, err
	}
	return &MessageFile{fd: fd, path: path, size: -1}, nil
}

// Open opens the message's file for reading. ErrNoSuchMessage if it is gone.
func (m *Mailbox) Open(uid uint32) (*os.File, error) {
	fd, path, err := m.openFD(uid)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), path), nil // not offered to the poller: a regular file
}

// openFD opens the message's file read-only. A file renamed by another
// process (its flags changed) or removed is looked for again after a rescan.
func (m *Mailbox) openFD(uid uint32) (fd int, path string, err error) {
	for attempt := 0; ; attempt++ {
		m.mu.RLock()
		i, ok := m.indexLocked(uid)
		if ok {
			path = filepath.Join(m.dir, "cur", m.fileNameLocked(i))
		}
		m.mu.RUnlock()
		if !ok {
			return -1, "", ErrNoSuchMessage
		}
		for {
			fd, err = syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC|syscall.O_NOCTTY, 0)
			if err != syscall.EINTR {
				break
			}
		}
		if err == nil {
			return fd, path, nil
		}
		if err != syscall.ENOENT || attempt > 0 {
			if err == syscall.ENOENT {
				return -1, "", ErrNoSuchMessage
			}
			return -1, "", &os.PathError{Op: "open", Path: path, Err: err}
		}
		m.mu.Lock()
		m.cur.valid = false
		err = m.refreshLocked()
		m.mu.Unlock()
		if err != nil {
			return -1, "", err
		}
	}
}

var errClosed = errors.New("maildir: message file closed")

// ReadAt implements io.ReaderAt.
func (f *MessageFile) ReadAt(p []byte, off int64) (int, error) {
	if f.fd < 0 {
		return 0, errClosed
	}
	if off < 0 {
		return 0, &os.PathError{Op: "readat", Path: f.path, Err: errors.New("negative offset")}
	}
	n := 0
	for n < len(p) {
		k, err := syscall.Pread(f.fd, p[n:], off+int64(n))
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return n, &os.PathError{Op: "read", Path: f.path, Err: err}
		}
		if k == 0 {
			return n, io.EOF
		}
		n += k
	}
	return n, nil
}

// Read implements io.Reader.
func (f *MessageFile) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if f.fd < 0 {
		return 0, errClosed
	}
	for {
		k, err := syscall.Pread(f.fd, p, f.off)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return 0, &os.PathError{Op: "read", Path: f.path, Err: err}
		}
		if k == 0 {
			return 0, io.EOF
		}
		f.off += int64(k)
		return k, nil
	}
}

// Size returns the file's size (one fstat, remembered).
func (f *MessageFile) Size() (int64, error) {
	if f.size >= 0 {
		return f.size, nil
	}
	if f.fd < 0 {
		return 0, errClosed
	}
	var st syscall.Stat_t
	for {
		err := syscall.Fstat(f.fd, &st)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return 0, &os.PathError{Op: "stat", Path: f.path, Err: err}
		}
		break
	}
	f.size = st.Size
	return f.size, nil
}

// Close releases the descriptor; further calls do nothing.
func (f *MessageFile) Close() error {
	if f.fd < 0 {
		return nil
	}
	err := syscall.Close(f.fd)
	f.fd = -1
	if err != nil {
		return &os.PathError{Op: "close", Path: f.path, Err: err}
	}
	return nil
}
