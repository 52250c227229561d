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
