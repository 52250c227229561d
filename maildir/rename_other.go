//go:build !linux

package maildir

import (
	"os"
	"path/filepath"
)

// dirMover renames files from one directory of a folder into another.
type dirMover struct{ fromPath, toPath string }

func openDirMover(from, to string, many bool) *dirMover { return &dirMover{fromPath: from, toPath: to} }

func (d *dirMover) rename(oldName, newName string) error {
	return os.Rename(filepath.Join(d.fromPath, oldName), filepath.Join(d.toPath, newName))
}

func (d *dirMover) close() {}
