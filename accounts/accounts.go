// Package accounts is Postie's user database: the users of accounts.toml
// with their password hashes and limits, the aliases, the resolution of a
// recipient address to local mailboxes and remote addresses, password
// authentication, and the login throttle shared by IMAP, POP3 and submission.
//
// A running server reads the file through a DB, which notices a rewrite (by
// the admin commands of Admin, or by hand) within a second; the admin
// commands edit the file under a lock and replace it atomically.
package accounts

import (
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"postie/envelope"
)

// User is one mailbox owner. Address, Local and Domain are lower-case.
// Users handed out by a DB are shared: treat them as read-only.
type User struct {
	Address            string
	Local              string
	Domain             string
	Quota              int64 // bytes; 0 = no quota
	MaxMessagesPerHour int   // submission limit; 0 = the configured default
}

// Resolution is where mail for one recipient goes: local mailboxes
// (each user once) and external addresses (each once, as written).
type Resolution struct {
	Users  []*User
	Remote []string
}

// maxAliasDepth bounds the nesting of aliases during resolution.
const maxAliasDepth = 10

// defaultCheckEvery is how often lookups stat the file for changes.
const defaultCheckEvery = time.Second

// DB is the live, read-only view of accounts.toml. Its methods are safe for
// concurrent use; lookups read an immutable snapshot and stat the file at
// most once per second to pick up changes.
type DB struct {
	path    string
	domains map[string]bool
	logger  *slog.Logger

	snap      atomic.Pointer[snapshot]
	reloadMu  sync.Mutex // serialises reloads; guards badSig
	badSig    *fileSig   // version of the file that failed to load, not retried
	lastCheck atomic.Int64

	// Unexported knobs, changed only by tests right after Open.
	checkEvery time.Duration
	now        func() time.Time
	params     hashParams

	authSem chan struct{} // bounds concurrent hash verifications (argon2 memory)
}

// snapshot is one loaded version of the file. It is never modified.
type snapshot struct {
	sig     fileSig
	users   map[string]*userRec // by lower-case address
	sorted  []*User
	aliases map[string][]string // by lower-case address or "@domain"
}

type userRec struct {
	user *User
	hash string
}

// Open loads the accounts file at path (a missing file is an empty
// database) for the given local domains. logger may be nil.
func Open(path string, domains []string, logger *slog.Logger) (*DB, error) {
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	db := &DB{
		path:       path,
		domains:    make(map[string]bool, len(domains)),
		logger:     logger,
		checkEvery: defaultCheckEvery,
		now:        time.Now,
		params:     defaultParams(),
		authSem:    make(chan struct{}, min(16, max(2, runtime.GOMAXPROCS(0)))), // hashing is CPU-bound: more at once only costs memory
	}
	for _, d := range domains {
		db.domains[envelope.CanonDomain(d)] = true
	}
	if err := db.Reload(); err != nil {
		return nil, err
	}
	db.lastCheck.Store(db.now().UnixNano())
	return db, nil
}

// IsLocalDomain reports whether domain is one of ours (case-insensitive, a
// trailing dot ignored).
func (db *DB) IsLocalDomain(domain string) bool { return db.domains[envelope.CanonDomain(domain)] }

// Reload re-reads the file now (the server calls it on SIGHUP). On error the
// previous contents stay in force.
func (db *DB) Reload() error {
	db.reloadMu.Lock()
	defer db.reloadMu.Unlock()
	return db.reloadLocked()
}

func (db *DB) reloadLocked() error {
	data, sig, err := readFile(db.path)
	if err != nil {
		return err
	}
	fd, err := decodeFile(db.path, data)
	if err != nil {
		db.badSig = &sig
		return err
	}
	s := db.buildSnapshot(fd, sig)
	db.snap.Store(s)
	db.badSig = nil
	db.logger.Info("accounts loaded", "path", db.path, "users", len(s.sorted), "aliases", len(s.aliases))
	return nil
}

// current returns the snapshot to answer from, reloading first when the
// file changed (checked at most once per checkEvery, by one goroutine).
func (db *DB) current() *snapshot {
	s := db.snap.Load()
	now := db.now().UnixNano()
	last := db.lastCheck.Load()
	if now-last < int64(db.checkEvery) || !db.lastCheck.CompareAndSwap(last, now) {
		return s
	}
	sig, err := statSig(db.path)
	if err != nil {
		db.logger.Warn("accounts: cannot stat file", "err", err)
		return s
	}
	if sig == s.sig {
		return s
	}
	db.reloadMu.Lock()
	defer db.reloadMu.Unlock()
	if cur := db.snap.Load(); sig == cur.sig || db.badSig != nil && sig == *db.badSig {
		return cur
	}
	if err := db.reloadLocked(); err != nil {
		db.logger.Error("accounts file changed but cannot be loaded; keeping the previous version", "err", err)
	}
	return db.snap.Load()
}

// buildSnapshot indexes fd. Entries outside our domains are left out with a
// warning (the config may have dropped a domain); alias problems are logged
// here, once per load, rather than on every message.
func (db *DB) buildSnapshot(fd *fileData, sig fileSig) *snapshot {
	s := &snapshot{
		sig:     sig,
		users:   make(map[string]*userRec, len(fd.Users)),
		aliases: make(map[string][]string, len(fd.Aliases)),
	}
	for _, fu := range fd.Users {
		local, domain := envelope.Split(fu.Address)
		if !db.domains[domain] {
			db.logger.Warn("accounts: user ignored: domain not in config", "user", fu.Address)
			continue
		}
		u := &User{Address: fu.Address, Local: local, Domain: domain, Quota: fu.Quota, MaxMessagesPerHour: fu.MaxMessagesPerHour}
		s.users[u.Address] = &userRec{user: u, hash: fu.Password}
		s.sorted = append(s.sorted, u)
	}
	slices.SortFunc(s.sorted, func(a, b *User) int { return strings.Compare(a.Address, b.Address) })
	for _, fa := range fd.Aliases {
		_, domain := envelope.Split(fa.Address)
		if !db.domains[domain] {
			db.logger.Warn("accounts: alias ignored: domain not in config", "alias", fa.Address)
			continue
		}
		if s.userFor(fa.Address) != nil {
			db.logger.Warn("accounts: alias is shadowed by a user of the same address", "alias", fa.Address)
		}
		s.aliases[fa.Address] = fa.Targets
	}
	for _, fa := range fd.Aliases {
		if _, ok := s.aliases[fa.Address]; !ok {
			continue
		}
		r := db.newResolver(s)
		r.expandAlias(fa.Address, 0)
		for _, p := range r.problems {
			db.logger.Warn("accounts: alias problem", "alias", fa.Address, "problem", p)
		}
	}
	return s
}

// userFor returns the user an address (lookup form) belongs to after
// stripping any +tag.
func (s *snapshot) userFor(key string) *User {
	local, domain := envelope.Split(key)
	base, _ := envelope.StripTag(local)
	if rec := s.users[base+"@"+domain]; rec != nil {
		return rec.user
	}
	return nil
}

// Lookup returns the user addr belongs to (case-insensitive, +tag stripped).
func (db *DB) Lookup(addr string) (*User, bool) {
	if envelope.Validate(addr) != nil {
		return nil, false
	}
	u := db.current().userFor(envelope.Key(addr))
	return u, u != nil
}

// Users returns every user, sorted by address.
func (db *DB) Users() []*User { return slices.Clone(db.current().sorted) }

// Resolve maps a recipient to where its mail goes. Order: a user (after
// stripping a +tag), an alias of the full address, an alias of the
// tag-stripped address, the catch-all alias "@domain". Alias targets are
// resolved the same way, recursively, to maxAliasDepth, each alias expanded
// once (which also breaks loops); targets outside our domains are returned
// as Remote. Local targets that lead nowhere are skipped (and logged when
// the file is loaded). Errors: envelope.ErrRelayDenied when the domain is
// not ours, envelope.ErrUnknownUser when nothing is found. postmaster gets
// no special treatment here: the caller handles it.
func (db *DB) Resolve(addr string) (Resolution, error) {
	key := envelope.Key(addr)
	_, domain := envelope.Split(key)
	if !db.IsLocalDomain(domain) {
		return Resolution{}, envelope.ErrRelayDenied
	}
	if envelope.Validate(addr) != nil {
		return Resolution{}, envelope.ErrUnknownUser
	}
	r := db.newResolver(db.current())
	r.expand(key, 0)
	if len(r.res.Users) == 0 && len(r.res.Remote) == 0 {
		return Resolution{}, envelope.ErrUnknownUser
	}
	return r.res, nil
}

// CanSendAs reports whether u may use addr (case-insensitive, +tag allowed)
// as its sender: addr is u's own address, or an alias (not a catch-all)
// whose resolution includes u.
func (db *DB) CanSendAs(u *User, addr string) bool {
	if u == nil || envelope.Validate(addr) != nil {
		return false
	}
	s := db.current()
	if s.users[u.Address] == nil {
		return false // deleted since it logged in
	}
	key := envelope.Key(addr)
	if owner := s.userFor(key); owner != nil {
		return owner.Address == u.Address
	}
	local, domain := envelope.Split(key)
	base, _ := envelope.StripTag(local)
	for _, ak := range []string{key, base + "@" + domain} {
		if _, ok := s.aliases[ak]; !ok {
			continue
		}
		r := db.newResolver(s)
		r.expandAlias(ak, 0)
		return slices.ContainsFunc(r.res.Users, func(x *User) bool { return x.Address == u.Address })
	}
	return false
}

// resolver carries one resolution: the result so far and what was seen.
type resolver struct {
	db       *DB
	s        *snapshot
	res      Resolution
	users    map[string]bool
	remote   map[string]bool
	aliases  map[string]bool // expanded (or being expanded)
	onPath   map[string]bool // being expanded: seeing one again is a loop
	problems []string        // for the load-time check; ignored at run time
}

func (db *DB) newResolver(s *snapshot) *resolver {
	return &resolver{db: db, s: s, users: map[string]bool{}, remote: map[string]bool{},
		aliases: map[string]bool{}, onPath: map[string]bool{}}
}

// expand resolves one local address (lookup form), reporting whether
// anything (a user or an alias) answers for it.
func (r *resolver) expand(key string, depth int) bool {
	if u := r.s.userFor(key); u != nil {
		if !r.users[u.Address] {
			r.users[u.Address] = true
			r.res.Users = append(r.res.Users, u)
		}
		return true
	}
	local, domain := envelope.Split(key)
	base, _ := envelope.StripTag(local)
	for _, ak := range [...]string{key, base + "@" + domain, "@" + domain} {
		if _, ok := r.s.aliases[ak]; ok {
			return r.expandAlias(ak, depth)
		}
	}
	return false
}

// expandAlias adds the targets of alias ak. An alias already expanded in
// this resolution adds nothing more: that is both deduplication (two paths
// to one alias) and loop detection.
func (r *resolver) expandAlias(ak string, depth int) bool {
	if r.onPath[ak] {
		r.problems = append(r.problems, fmt.Sprintf("%s leads back to itself (a loop)", ak))
	}
	if r.aliases[ak] {
		return true
	}
	if depth >= maxAliasDepth {
		r.problems = append(r.problems, fmt.Sprintf("%s is nested deeper than %d aliases; not expanded", ak, maxAliasDepth))
		return false
	}
	r.aliases[ak] = true
	r.onPath[ak] = true
	defer delete(r.onPath, ak)
	for _, t := range r.s.aliases[ak] {
		tk := envelope.Key(t)
		_, domain := envelope.Split(tk)
		if !r.db.IsLocalDomain(domain) {
			if !r.remote[tk] {
				r.remote[tk] = true
				r.res.Remote = append(r.res.Remote, t)
			}
			continue
		}
		if !r.expand(tk, depth+1) {
			r.problems = append(r.problems, fmt.Sprintf("target %s of %s is no user or alias", t, ak))
		}
	}
	return true
}
