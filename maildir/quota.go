package maildir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Quota accounting follows Maildir++: maildirsize in the root holds a quota
// line, then "<bytes> <count>" lines appended by every writer (negative for
// removals), summed on read. It is recomputed by walking every folder only
// when missing, damaged or over 5120 bytes.
//
// Writers append under a shared flock of postie-quota.lock, together with
// the file operation the line accounts for; the recomputation takes it
// exclusively, so it never counts a file and then its line too.

const maildirsizeMax = 5120

// Usage returns the bytes and messages stored, from maildirsize (no walk
// per call).
func (u *User) Usage() (bytes, messages int64, err error) {
	if b, c, ok := u.readMaildirsize(); ok {
		return b, c, nil
	}
	return u.recomputeUsage()
}

func (u *User) maildirsizePath() string { return filepath.Join(u.dir, maildirsize) }

// readMaildirsize sums the file; ok is false when it must be recomputed.
func (u *User) readMaildirsize() (bytes, count int64, ok bool) {
	data, err := os.ReadFile(u.maildirsizePath())
	if err != nil || len(data) > maildirsizeMax || len(data) == 0 {
		return 0, 0, false
	}
	s := string(data)
	nl := strings.IndexByte(s, '\n')
	if nl < 0 {
		return 0, 0, false
	}
	for line := range strings.Lines(s[nl+1:]) {
		if !strings.HasSuffix(line, "\n") {
			return 0, 0, false
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			return 0, 0, false
		}
		b, err1 := strconv.ParseInt(f[0], 10, 64)
		c, err2 := strconv.ParseInt(f[1], 10, 64)
		if err1 != nil || err2 != nil {
			return 0, 0, false
		}
		bytes += b
		count += c
	}
	return max(bytes, 0), max(count, 0), true
}

// recomputeUsage walks every folder and writes maildirsize anew.
func (u *User) recomputeUsage() (bytes, count int64, err error) {
	unlock, err := flock(filepath.Join(u.dir, quotaLock), false)
	if err != nil {
		return 0, 0, fmt.Errorf("maildir: quota: %w", err)
	}
	defer unlock()
	if b, c, ok := u.readMaildirsize(); ok { // another process just did it
		return b, c, nil
	}
	dirs := []string{u.dir}
	ents, err := os.ReadDir(u.dir)
	if err != nil {
		return 0, 0, fmt.Errorf("maildir: quota: %w", err)
	}
	for _, e := range ents {
		if n := e.Name(); e.IsDir() && len(n) > 1 && n[0] == '.' && n != ".." {
			dirs = append(dirs, filepath.Join(u.dir, n))
		}
	}
	for _, d := range dirs {
		for _, sub := range []string{"cur", "new"} {
			b, c, err := u.s.sumDir(filepath.Join(d, sub))
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return 0, 0, fmt.Errorf("maildir: quota: %w", err)
			}
			bytes += b
			count += c
		}
	}
	data := fmt.Sprintf("%dS\n%d %d\n", u.quota.Load(), bytes, count)
	if err := u.s.fs.WriteFile(u.maildirsizePath(), []byte(data), 0o600); err != nil {
		return 0, 0, fmt.Errorf("maildir: quota: %w", err)
	}
	return bytes, count, nil
}

// sumDir adds up the sizes of the messages in one cur/ or new/ directory.
func (s *Store) sumDir(dir string) (bytes, count int64, err error) {
	err = s.readDirNames(dir, func(name []byte) {
		if name[0] == '.' {
			return
		}
		key, _ := splitName(name)
		n, ok := keySize(string(key))
		if !ok {
			if fi, err := os.Lstat(filepath.Join(dir, string(name))); err == nil {
				n = fi.Size()
			}
		}
		bytes += n
		count++
	})
	return bytes, count, err
}

// quotaTx runs fn, which changes files and returns the usage it added (or
// removed), under the shared quota lock, and appends that to maildirsize.
func (u *User) quotaTx(fn func() (bytes, count int64, err error)) error {
	unlock, err := flock(filepath.Join(u.dir, quotaLock), true)
	if err != nil {
		return fmt.Errorf("maildir: quota: %w", err)
	}
	b, c, err := fn()
	var big bool
	if b != 0 || c != 0 {
		big = u.appendUsage(b, c)
	}
	unlock()
	if big {
		if _, _, err := u.recomputeUsage(); err != nil {
			u.log().Warn("maildir: quota recompute", "user", u.local+"@"+u.domain, "err", err)
		}
	}
	return err
}

// appendUsage appends one line (fsynced); it reports whether the file is
// now due for recomputation. A missing file is left missing: the next read
// recomputes it, counting what fn did. A failed append may leave part of
// the line, and leaves the sum unknown: the file is removed, so that the
// next read recomputes it from the folders (the operation it accounts for
// stands; maildirsize is a cache of what is on disk).
func (u *User) appendUsage(bytes, count int64) (recompute bool) {
	path := u.maildirsizePath()
	// Append never creates the file: without one (not computed yet, or
	// dropped to be recomputed) it reports ErrNotExist, below.
	line := strconv.AppendInt(nil, bytes, 10)
	line = append(line, ' ')
	line = strconv.AppendInt(line, count, 10)
	line = append(line, '\n')
	size, err := u.s.fs.Append(path, line)
	if errors.Is(err, os.ErrNotExist) {
		return false
	}
	if err != nil {
		u.log().Warn("maildir: maildirsize append failed; it will be recomputed", "user", u.local+"@"+u.domain, "err", err)
		if rerr := u.s.fs.Remove(path); rerr != nil {
			u.log().Error("maildir: maildirsize left wrong", "user", u.local+"@"+u.domain, "err", rerr)
		}
		return false
	}
	return size > maildirsizeMax
}

// checkQuota fails with a quota error when adding size bytes would pass the
// user's quota (SetQuota), for Append and CopyTo.
func (u *User) checkQuota(size int64) error {
	q := u.quota.Load()
	if q <= 0 {
		return nil
	}
	used, _, err := u.Usage()
	if err != nil {
		return err
	}
	if used+size > q {
		return &quotaError{used: used, size: size, quota: q}
	}
	return nil
}
