package maildir

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"postie/envelope"
)

// DeliverOptions tunes one delivery.
type DeliverOptions struct {
	Quota   int64  // bytes; 0 = no quota
	Mailbox string // folder to deliver into; "" = INBOX
}

// Delivered describes a stored message.
type Delivered struct {
	Name string // base name
	Size int64  // bytes written
}

// Deliver writes one message into the user's INBOX new/ durably (tmp →
// fsync → rename → directory fsync; concurrent deliveries share the
// directory fsync) and accounts it in maildirsize. With a quota and
// usage+size > quota it removes the temporary file and returns an error
// that errors.Is(err, ErrQuotaExceeded) (and that wraps
// envelope.ErrQuotaExceeded). If the mailbox is loaded in this process, it
// is refreshed so IDLE sessions see the message at once.
//
// Delivery takes no lock: another process may deliver or read at the same
// time.
func (u *User) Deliver(r io.Reader, opts DeliverOptions) (Delivered, error) {
	name := "INBOX"
	if opts.Mailbox != "" {
		var err error
		if name, err = canonicalName(opts.Mailbox); err != nil {
			return Delivered{}, err
		}
	}
	dir := filepath.Join(u.dir, folderDir(name))
	if name != "INBOX" {
		if _, err := os.Stat(filepath.Join(dir, "new")); err != nil {
			u.mu.Lock()
			ok, rerr := u.repairFolder(dir) // half-made: heal it
			u.mu.Unlock()
			if rerr != nil {
				return Delivered{}, fmt.Errorf("maildir: deliver: %w", rerr)
			}
			if !ok {
				return Delivered{}, fmt.Errorf("%w: %s", ErrNoSuchMailbox, name)
			}
		}
	}
	// The caller knows the account's current quota: keep it for Append and
	// CopyTo too, including a quota just lifted (0).
	u.SetQuota(opts.Quota)
	var used int64
	if opts.Quota > 0 {
		var err error
		if used, _, err = u.Usage(); err != nil {
			return Delivered{}, fmt.Errorf("maildir: deliver: %w", err)
		}
		if used >= opts.Quota {
			return Delivered{}, &quotaError{used: used, quota: opts.Quota}
		}
	}
	tmp, size, err := u.s.writeTmp(u.dir, r, time.Time{})
	if err != nil {
		return Delivered{}, fmt.Errorf("maildir: deliver: %w", err)
	}
	if opts.Quota > 0 && used+size > opts.Quota {
		u.s.fs.Remove(tmp)
		return Delivered{}, &quotaError{used: used, size: size, quota: opts.Quota}
	}
	key := u.s.newKey(time.Now(), size)
	newDir := filepath.Join(dir, "new")
	dst := filepath.Join(newDir, key)
	err = u.quotaTx(func() (int64, int64, error) {
		if err := u.s.fs.Rename(tmp, dst); err != nil {
			return 0, 0, err
		}
		return size, 1, nil
	})
	if err != nil {
		u.s.fs.Remove(tmp)
		return Delivered{}, fmt.Errorf("maildir: deliver: %w", err)
	}
	if err := u.syncDirGrouped(newDir); err != nil {
		u.unplace(dst, size) // not durable: the sender's retry must be no duplicate
		return Delivered{}, fmt.Errorf("maildir: deliver: %w", err)
	}
	if m := u.loadedMailbox(name); m != nil {
		if err := m.Refresh(); err != nil {
			u.log().Warn("maildir: refresh after delivery", "mailbox", name, "err", err)
		}
	}
	return Delivered{Name: key, Size: size}, nil
}

// quotaError is the over-quota outcome. It matches ErrQuotaExceeded and
// unwraps to envelope.ErrQuotaExceeded (552 5.2.2) for the SMTP side.
type quotaError struct{ used, size, quota int64 }

func (e *quotaError) Error() string {
	return fmt.Sprintf("maildir: quota exceeded (%d used + %d > %d bytes)", e.used, e.size, e.quota)
}
func (e *quotaError) Is(target error) bool { return target == ErrQuotaExceeded }
func (e *quotaError) Unwrap() error        { return envelope.ErrQuotaExceeded }

// newKey makes a unique base name:
// <unix>.M<usec>P<pid>Q<counter>R<random>.<host>,S=<size>.
func (s *Store) newKey(now time.Time, size int64) string {
	b := make([]byte, 0, 120)
	b = s.appendUnique(b, now)
	b = append(b, ",S="...)
	b = strconv.AppendInt(b, size, 10)
	return string(b)
}

func (s *Store) appendUnique(b []byte, now time.Time) []byte {
	b = strconv.AppendInt(b, now.Unix(), 10)
	b = append(b, ".M"...)
	b = strconv.AppendInt(b, int64(now.Nanosecond()/1000), 10)
	b = append(b, 'P')
	b = strconv.AppendInt(b, int64(s.pid), 10)
	b = append(b, 'Q')
	b = strconv.AppendUint(b, s.counter.Add(1), 10)
	b = append(b, 'R')
	b = strconv.AppendUint(b, rand.Uint64()>>16, 16)
	b = append(b, '.')
	return append(b, s.host...)
}

// writeTmp writes r into a new file in root/tmp/, sets its mtime (unless
// zero), fsyncs and closes it, through the store's FS. On error nothing is
// left behind.
func (s *Store) writeTmp(root string, r io.Reader, mtime time.Time) (path string, size int64, err error) {
	name := string(s.appendUnique(make([]byte, 0, 100), time.Now()))
	f, err := s.fs.Create(filepath.Join(root, "tmp", name), 0o600)
	if err != nil {
		return "", 0, err
	}
	bp := s.bufs.Get().(*[]byte)
	size, err = f.Copy(r, *bp)
	s.bufs.Put(bp)
	if err == nil && !mtime.IsZero() {
		err = os.Chtimes(f.Name(), mtime, mtime)
	}
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		f.Abort()
		return "", 0, err
	}
	return f.Name(), size, nil
}

// unplace takes back a message file renamed into place whose directory
// fsync failed: the caller reports failure, so the message must not stay
// (a retry would store it twice), and the quota accounting follows.
func (u *User) unplace(path string, size int64) {
	_ = u.quotaTx(func() (int64, int64, error) {
		if u.s.fs.Remove(path) != nil {
			return 0, 0, nil
		}
		return -size, -1, nil
	})
}
