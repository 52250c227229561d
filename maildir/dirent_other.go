//go:build !linux

package maildir

import (
	"io"
	"os"
)

// readDirNames calls fn with the name of every entry of dir except "." and
// "..", in directory order; name is valid only during the call.
func (s *Store) readDirNames(dir string, fn func(name []byte)) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	for {
		names, err := f.Readdirnames(4096)
		for _, n := range names {
			fn([]byte(n))
		}
		if err == io.EOF || len(names) == 0 && err == nil {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
