package tlsconf

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/crypto/acme/autocert"

	"postie/safeio"
)

// dirCache is autocert's Cache in a directory, like autocert.DirCache
// (one file per entry, named by autocert's key: the account key
// "acme_account+key", a certificate with its private key under the
// domain's name), but written through safeio: DirCache does not fsync, so
// a crash after an issuance could leave an empty account key that autocert
// then refuses for good. Every file is 0600 (they hold private keys), the
// directory 0700.
type dirCache struct {
	dir string
	fs  *safeio.FS // nil: the real file system
}

// newDirCache makes dir (0700), or narrows an existing one to 0700.
func newDirCache(dir string) (*dirCache, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("tlsconf: ACME cache: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("tlsconf: ACME cache: %w", err)
	}
	return &dirCache{dir: dir}, nil
}

// directoryFile records which ACME server the cache belongs to. No
// autocert entry has this name: theirs are host names (with dots),
// "acme_account+key", and names with a "+" suffix.
const directoryFile = "directory_url"

// bindDirectory makes the cache belong to the ACME server at url: a cache
// of another server (say Let's Encrypt's staging, after trying it) is
// emptied, or its untrusted certificates would be served until renewal.
// It reports whether it emptied one.
func (c *dirCache) bindDirectory(url string) (bool, error) {
	old, err := os.ReadFile(c.path(directoryFile))
	switch {
	case err == nil && string(old) == url:
		return false, nil
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return false, fmt.Errorf("tlsconf: ACME cache: %w", err)
	}
	entries, err := os.ReadDir(c.dir)
	if err != nil {
		return false, fmt.Errorf("tlsconf: ACME cache: %w", err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(c.dir, e.Name())); err != nil {
			return false, fmt.Errorf("tlsconf: ACME cache: %w", err)
		}
	}
	if err := c.fs.WriteFile(c.path(directoryFile), []byte(url), 0o600); err != nil {
		return false, fmt.Errorf("tlsconf: ACME cache: %w", err)
	}
	return len(entries) > 0, nil
}

// path keeps name inside the directory, whatever it holds.
func (c *dirCache) path(name string) string {
	return filepath.Join(c.dir, filepath.Clean("/"+name))
}

func (c *dirCache) Get(_ context.Context, name string) ([]byte, error) {
	b, err := os.ReadFile(c.path(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, autocert.ErrCacheMiss
	}
	if err != nil {
		return nil, fmt.Errorf("tlsconf: ACME cache: %w", err)
	}
	return b, nil
}

func (c *dirCache) Put(_ context.Context, name string, data []byte) error {
	if err := c.fs.WriteFile(c.path(name), data, 0o600); err != nil {
		return fmt.Errorf("tlsconf: ACME cache: write %s: %w", name, err)
	}
	return nil
}

func (c *dirCache) Delete(_ context.Context, name string) error {
	if err := os.Remove(c.path(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("tlsconf: ACME cache: %w", err)
	}
	return nil
}
