package maildir

import (
	"os"
	"path/filepath"
	"postie/safeio"
	"syscall"
)

// dirMover renames files from one directory of a folder into another, by
// name, relative to descriptors of the two directories: the kernel looks up
// one name per rename instead of walking the whole path, and there is no
// lstat first (os.Rename checks that the target is not a directory; these
// are message files). The first load of a folder moves every file of new/.
//
// It is the store's FS rename (safeio.FS.Rename) batched by directory: each
// rename passes through the FS's Fault and Trace hooks as that one does.
type dirMover struct {
	fs               *safeio.FS
	from, to         int // -1: use the paths
	fromPath, toPath string
}

// openDirMover prepares renames from the directory from into to. For a few
// renames (many false) opening the directories costs more than it saves:
// the paths are used.
func openDirMover(fs *safeio.FS, from, to string, many bool) *dirMover {
	d := &dirMover{fs: fs, from: -1, to: -1, fromPath: from, toPath: to}
	if !many {
		return d
	}
	if fd, err := openDir(from); err == nil {
		d.from = fd
	}
	switch {
	case to == from:
		d.to = d.from
	default:
		if fd, err := openDir(to); err == nil {
			d.to = fd
		}
	}
	return d
}

func openDir(path string) (int, error) {
	for {
		fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
		if err != syscall.EINTR {
			return fd, err
		}
	}
}

func (d *dirMover) rename(oldName, newName string) error {
	if err := faultRename(d.fs, filepath.Join(d.toPath, newName)); err != nil {
		return err
	}
	var err error
	for {
		if d.from >= 0 && d.to >= 0 {
			err = syscall.Renameat(d.from, oldName, d.to, newName)
		} else {
			err = syscall.Rename(filepath.Join(d.fromPath, oldName), filepath.Join(d.toPath, newName))
		}
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		return &os.LinkError{Op: "rename", Old: filepath.Join(d.fromPath, oldName), New: filepath.Join(d.toPath, newName), Err: err}
	}
	traceRename(d.fs, filepath.Join(d.toPath, newName))
	return nil
}

func (d *dirMover) close() {
	if d.from >= 0 {
		syscall.Close(d.from)
	}
	if d.to >= 0 && d.to != d.from {
		syscall.Close(d.to)
	}
}
