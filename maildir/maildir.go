// Package maildir is Postie's mail store: Maildir++ folders on disk with safe
// (fsynced, atomic) delivery, persistent IMAP UIDs and UIDVALIDITY, flags and
// keywords kept in file names, Maildir++ quota accounting, and change
// notification for the IMAP and POP3 front-ends.
//
// Only this package knows the disk layout. A Store is the tree of all users'
// mail; a User is one Maildir++ root; a Mailbox is one folder's state (UIDs,
// flags, sizes, internal dates) held in memory, shared by every session of the
// process and revalidated cheaply by Refresh. Other processes (postie deliver,
// a second server) may write the same Maildir at the same time: delivery into
// new/ needs no lock, and every writer of a folder's UID list takes a flock(2)
// on its lock file first.
//
// Layout of a user's root (data_dir/mail/<domain>/<user>/):
//
//	cur/ new/ tmp/           INBOX
//	.Sent/ .a.b/ ...         folders (IMAP "a/b"), each with cur/ new/ tmp/ and maildirfolder
//	<folder>/postie-uidlist  "1 V<uidvalidity> N<uidnext>" then "<uid> T<date> :<base name>" lines
//	<folder>/postie-keywords "<index> <keyword>" lines; index 0-25 is the letter a-z in file names
//	<folder>/postie-uidlist.lock   flock(2) taken by every writer of the two files above
//	<folder>/postie-recent   the first UID no IMAP session has claimed as \Recent (recent.go), flocked
//	subscriptions            one IMAP name per line
//	maildirsize              Maildir++ quota accounting
//	postie-specialuse        special-use attributes of folders ("\Sent Outbox" lines)
//	postie-uidvalidity       the last UIDVALIDITY handed out, so a re-created folder gets a greater one
//
// github.com/emersion/go-maildir reads the store back in the tests, as an
// independent proof that it is standard Maildir++. It is not used to
// write: it never fsyncs (a crash
// after our 250 could lose the message), writes APPEND-style messages
// straight into cur/, has no UIDs, and finds a message by scanning cur/
// (FETCH 1:* would be quadratic). What it would give — file naming and
// the info-suffix flags — is a few dozen lines here.
package maildir

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"postie/safeio"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Errors returned by the store; test for them with errors.Is.
var (
	ErrNoSuchMailbox     = errors.New("maildir: no such mailbox")
	ErrMailboxExists     = errors.New("maildir: mailbox already exists")
	ErrInvalidName       = errors.New("maildir: invalid mailbox name")
	ErrHasChildren       = errors.New("maildir: mailbox has children")
	ErrInboxDelete       = errors.New("maildir: INBOX cannot be deleted")
	ErrNoSuchMessage     = errors.New("maildir: no such message")
	ErrQuotaExceeded     = errors.New("maildir: quota exceeded")
	ErrTooManyKeywords   = errors.New("maildir: too many keywords")
	ErrInvalidFlag       = errors.New("maildir: invalid flag")
	ErrInvalidSpecialUse = errors.New("maildir: invalid special-use attribute")
	ErrInvalidUser       = errors.New("maildir: invalid user or domain name")
)

// File names inside a user's tree.
const (
	uidlistFile    = "postie-uidlist"
	uidlistLock    = "postie-uidlist.lock"
	keywordsFile   = "postie-keywords"
	maildirsize    = "maildirsize"
	quotaLock      = "postie-quota.lock"
	rootLock       = "postie-root.lock"
	specialUseFile = "postie-specialuse"
	uidvalFile     = "postie-uidvalidity"
	subsFile       = "subscriptions"
	folderMarker   = "maildirfolder"
)

// StoreOptions configures a Store.
type StoreOptions struct {
	Hostname string       // goes into message base names; os.Hostname() when empty
	Logger   *slog.Logger // nil: slog.Default()

	// FS performs every durable write of the store (message files, UID
	// lists, folder creation, quota accounting, metadata files), so that
	// tests can fail each step. nil: the real file system.
	FS *safeio.FS
}

// Store is the root of every user's mail (data_dir/mail). It is safe for
// concurrent use; create one per process.
type Store struct {
	root string
	host string // sanitised for base names
	pid  int
	log  *slog.Logger
	fs   *safeio.FS // nil: the real file system

	counter atomic.Uint64 // the Q part of base names
	boxIDs  atomic.Uint64
	bufs    sync.Pool // *[]byte copy and readdir buffers

	mu    sync.Mutex
	users map[string]*User
}

// NewStore returns the store rooted at root. Nothing is touched on disk until
// a user is opened.
func NewStore(root string, opts StoreOptions) *Store {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	host := opts.Hostname
	if host == "" {
		host, _ = os.Hostname()
	}
	s := &Store{
		root:  root,
		host:  sanitizeHost(host),
		pid:   os.Getpid(),
		log:   log,
		fs:    opts.FS,
		users: make(map[string]*User),
	}
	s.bufs.New = func() any { b := make([]byte, 64<<10); return &b }
	return s
}

// User is one user's Maildir++ tree. Safe for concurrent use.
type User struct {
	s      *Store
	dir    string
	domain string
	local  string
	quota  atomic.Int64 // bytes; 0 = none (set by SetQuota or DeliverOptions.Quota)

	cleaned atomic.Int64 // when tmp/ was last cleaned (unix ns)

	mu    sync.Mutex // folder operations and the boxes map
	boxes map[string]*Mailbox

	syncMu  sync.Mutex
	syncers map[string]*safeio.DirSyncer // group commit of directory fsyncs, by path
}

// User returns the user's mail tree, creating the Maildir++ root and the
// default folders INBOX, Sent, Drafts, Trash, Junk and Archive when missing.
// domain and local are validated (ValidateUserName) and used lower-case. The
// same *User is returned for the same name within a process.
func (s *Store) User(domain, local string) (*User, error) {
	domain, local = strings.ToLower(domain), strings.ToLower(local)
	if err := ValidateUserName(domain); err != nil {
		return nil, err
	}
	if err := ValidateUserName(local); err != nil {
		return nil, err
	}
	key := domain + "/" + local
	s.mu.Lock()
	if u := s.users[key]; u != nil {
		s.mu.Unlock()
		u.maybeCleanTmp()
		return u, nil
	}
	defer s.mu.Unlock()
	u := &User{
		s:       s,
		dir:     filepath.Join(s.root, domain, local),
		domain:  domain,
		local:   local,
		boxes:   make(map[string]*Mailbox),
		syncers: make(map[string]*safeio.DirSyncer),
	}
	if err := u.init(); err != nil {
		return nil, fmt.Errorf("maildir: open user %s@%s: %w", local, domain, err)
	}
	s.users[key] = u
	return u, nil
}

// ValidateUserName checks that s (a user's local part or a domain) is safe
// as one path element: not empty, at most 255 bytes, valid UTF-8, no '/',
// '\\', control characters or white space, and no leading '.'.
func ValidateUserName(s string) error {
	if s == "" || len(s) > 255 || !utf8.ValidString(s) || s[0] == '.' {
		return fmt.Errorf("%w: %q", ErrInvalidUser, s)
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '/' || r == '\\' || r == utf8.RuneError {
			return fmt.Errorf("%w: %q", ErrInvalidUser, s)
		}
	}
	return nil
}

// SetQuota sets the byte quota that Append and CopyTo enforce (Deliver takes
// its own in DeliverOptions, and remembers it here). 0 means no quota.
func (u *User) SetQuota(bytes int64) { u.quota.Store(max(bytes, 0)) }

// Dir is the root of the user's Maildir++ tree. Files of other
// components that belong with the user's mail (the junk filter's data) live
// there too, under names that are not folders (no leading '.').
func (u *User) Dir() string { return u.dir }

func (u *User) log() *slog.Logger { return u.s.log }

// init creates the root and the default folders, and clears old tmp/ files.
func (u *User) init() error {
	fresh := false
	if _, err := os.Stat(filepath.Join(u.dir, "cur")); errors.Is(err, os.ErrNotExist) {
		fresh = true
	}
	for _, d := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(u.dir, d), 0o700); err != nil {
			return err
		}
	}
	if fresh {
		if err := u.s.fs.SyncDir(filepath.Dir(u.dir)); err != nil {
			return err
		}
	}
	u.cleaned.Store(time.Now().UnixNano())
	u.cleanTmp(filepath.Join(u.dir, "tmp"))
	if !fresh {
		if err := u.repairFoldersLocked(); err != nil {
			return err
		}
	}
	return u.ensureDefaults(fresh)
}
