//go:build !linux

package maildir

import (
	"path/filepath"
	"postie/safeio"
)

// dirMover renames files from one directory of a folder into another,
// through the store's FS.
type dirMover struct {
	fs               *safeio.FS
	fromPath, toPath string
}

func openDirMover(fs *safeio.FS, from, to string, many bool) *dirMover {
	return &dirMover{fs: fs, fromPath: from, toPath: to}
}

func (d *dirMover) rename(oldName, newName string) error {
	return d.fs.Rename(filepath.Join(d.fromPath, oldName), filepath.Join(d.toPath, newName))
}

func (d *dirMover) close() {}
