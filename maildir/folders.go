package maildir

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"postie/safeio"
)

// MailboxInfo describes a folder for LIST.
type MailboxInfo struct {
	Name        string
	SpecialUse  string // `\Sent`, `\Drafts`... or ""
	HasChildren bool
	Subscribed  bool
}

// defaultFolders are created with every user; their names give their
// special use unless the user gave that use to another folder.
var defaultFolders = [...]struct{ name, use string }{
	{"Sent", `\Sent`}, {"Drafts", `\Drafts`}, {"Trash", `\Trash`}, {"Junk", `\Junk`}, {"Archive", `\Archive`},
}

// specialUses are the RFC 6154 attributes.
var specialUses = [...]string{`\All`, `\Archive`, `\Drafts`, `\Flagged`, `\Junk`, `\Sent`, `\Trash`}

func canonicalSpecialUse(s string) (string, bool) {
	if s == "" {
		return "", true
	}
	for _, u := range specialUses {
		if strings.EqualFold(s, u) {
			return u, true
		}
	}
	return "", false
}

func (u *User) folderPath(name string) string { return filepath.Join(u.dir, folderDir(name)) }

// existsLocked reports whether the folder exists, completing it first if
// its directory is there but half-made (see repairFolder).
func (u *User) existsLocked(name string) bool {
	dir := u.folderPath(name)
	fi, err := os.Stat(filepath.Join(dir, "cur"))
	if err == nil {
		return fi.IsDir()
	}
	if name == "INBOX" || !errors.Is(err, os.ErrNotExist) {
		return false
	}
	ok, err := u.repairFolder(dir)
	if err != nil {
		u.log().Warn("maildir: repair folder", "mailbox", name, "err", err)
	}
	return ok
}

// repairFolder completes a folder directory that lacks some of cur/, new/,
// tmp/ or its maildirfolder marker, so that a folder left half-made (by a
// crashed process, an older Postie whose cleanup removed another process's
// folder under construction, or by hand) heals instead of being listed but
// unusable. Its UID list, if missing, is made when it is loaded. It reports
// whether dir is now a complete folder; false, with no error, when dir is
// not a directory at all. Folders only appear at their name complete (they
// are built in tmp/ and renamed), so an incomplete one is never one being
// made by us.
func (u *User) repairFolder(dir string) (bool, error) {
	fi, err := os.Stat(dir)
	if err != nil || !fi.IsDir() {
		return false, nil
	}
	fixed := false
	for _, d := range []string{"cur", "new", "tmp"} {
		err := os.Mkdir(filepath.Join(dir, d), 0o700)
		switch {
		case err == nil:
			fixed = true
		case !errors.Is(err, os.ErrExist):
			return false, err
		}
	}
	marker := filepath.Join(dir, folderMarker)
	if _, err := os.Lstat(marker); errors.Is(err, os.ErrNotExist) {
		if err := u.s.writeMarker(marker); err != nil && !errors.Is(err, os.ErrExist) {
			return false, err
		}
		fixed = true
	}
	if fixed {
		if err := u.s.fs.SyncDir(dir); err != nil {
			return false, err
		}
		u.log().Warn("maildir: completed a half-made folder", "path", dir)
	}
	return true, nil
}

// writeMarker creates the empty maildirfolder file.
func (s *Store) writeMarker(path string) error {
	f, err := s.fs.Create(path, 0o600)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		f.Abort()
		return err
	}
	return nil
}

// repairFoldersLocked completes every half-made folder of the user (see
// repairFolder), when the user is opened.
func (u *User) repairFoldersLocked() error {
	ents, err := os.ReadDir(u.dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if n, ok := nameFromDir(e.Name()); !ok || n == "INBOX" {
			continue
		}
		dir := filepath.Join(u.dir, e.Name())
		complete := true
		for _, d := range []string{"cur", "new", "tmp"} {
			if fi, err := os.Stat(filepath.Join(dir, d)); err != nil || !fi.IsDir() {
				complete = false
				break
			}
		}
		if complete {
			continue
		}
		if _, err := u.repairFolder(dir); err != nil {
			return fmt.Errorf("maildir: repair %s: %w", e.Name(), err)
		}
	}
	return nil
}

// folderNamesLocked lists the folders on disk: INBOX, then the others in
// byte order. Directories that are not the canonical encoding of a valid
// name are ignored.
func (u *User) folderNamesLocked() ([]string, error) {
	ents, err := os.ReadDir(u.dir)
	if err != nil {
		return nil, fmt.Errorf("maildir: list folders: %w", err)
	}
	var names []string
	for _, e := range ents {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if n, ok := nameFromDir(e.Name()); ok && n != "INBOX" {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return append([]string{"INBOX"}, names...), nil
}

// ListMailboxes returns every folder, INBOX first, then sorted by name.
func (u *User) ListMailboxes() ([]MailboxInfo, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	names, err := u.folderNamesLocked()
	if err != nil {
		return nil, err
	}
	rec := u.readSpecialUse()
	subs := make(map[string]bool)
	for _, s := range u.readSubscriptions() {
		subs[s] = true
	}
	parents := make(map[string]bool)
	for _, n := range names {
		for i := strings.LastIndexByte(n, '/'); i > 0; i = strings.LastIndexByte(n[:i], '/') {
			parents[n[:i]] = true
		}
	}
	out := make([]MailboxInfo, len(names))
	for i, n := range names {
		out[i] = MailboxInfo{Name: n, SpecialUse: specialUseOf(n, rec), HasChildren: parents[n], Subscribed: subs[n]}
	}
	return out, nil
}

// specialUseOf is the folder's special use: recorded, or by its default name
// unless another folder was given that use.
func specialUseOf(name string, rec map[string]string) string {
	if use, ok := rec[name]; ok {
		return use
	}
	for _, d := range defaultFolders {
		if d.name != name {
			continue
		}
		for _, use := range rec {
			if use == d.use {
				return ""
			}
		}
		return d.use
	}
	return ""
}

// CreateMailbox creates a folder, and its missing parents; specialUse (one
// of RFC 6154's, or "") is remembered for it.
func (u *User) CreateMailbox(name, specialUse string) error {
	canon, err := canonicalName(name)
	if err != nil {
		return err
	}
	use, ok := canonicalSpecialUse(specialUse)
	if !ok {
		return fmt.Errorf("%w: %q", ErrInvalidSpecialUse, specialUse)
	}
	if canon == "INBOX" {
		return fmt.Errorf("%w: INBOX", ErrMailboxExists)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.existsLocked(canon) {
		return fmt.Errorf("%w: %s", ErrMailboxExists, canon)
	}
	names := append(u.missingParentsLocked(canon), canon)
	made, err := u.createFoldersLocked(names)
	if err != nil {
		return err
	}
	if !slices.Contains(made, canon) { // another process was quicker
		return fmt.Errorf("maildir: create %s: %w", canon, ErrMailboxExists)
	}
	if use != "" {
		rec := u.readSpecialUse()
		old := maps.Clone(rec)
		rec[canon] = use
		if err := u.writeSpecialUse(rec); err != nil {
			err = errors.Join(err, u.takeBackFolders(made))
			werr := u.s.fs.Remove(filepath.Join(u.dir, specialUseFile))
			if len(old) > 0 {
				werr = u.writeSpecialUse(old)
			}
			if werr != nil { // the new one may be in place, not durably
				u.log().Warn("maildir: special-use take-back", "mailbox", canon, "err", werr)
			}
			return err
		}
	}
	return nil
}

// missingParentsLocked lists the parents of name that do not exist,
// outermost first.
func (u *User) missingParentsLocked(name string) []string {
	var out []string
	parts := strings.Split(name, "/")
	for i := 1; i < len(parts); i++ {
		p := strings.Join(parts[:i], "/")
		if p != "INBOX" && !u.existsLocked(p) {
			out = append(out, p)
		}
	}
	return out
}

func (u *User) createParentsLocked(name string) error {
	if parents := u.missingParentsLocked(name); len(parents) > 0 {
		_, err := u.createFoldersLocked(parents)
		return err
	}
	return nil
}

// createFolderLocked makes one folder (see createFoldersLocked);
// ErrMailboxExists if another process made it first.
func (u *User) createFolderLocked(name string) error {
	made, err := u.createFoldersLocked([]string{name})
	if err == nil && len(made) == 0 {
		err = fmt.Errorf("maildir: create %s: %w", name, ErrMailboxExists)
	}
	return err
}

// createFoldersLocked makes each folder complete in tmp/ (cur/ new/ tmp/,
// maildirfolder, a UID list with a new UIDVALIDITY), renames it into place,
// so it appears whole or not at all, then fsyncs the root once. It returns
// the folders it made; one another process made meanwhile is skipped. On
// error, the ones it made are taken back: nothing is left.
func (u *User) createFoldersLocked(names []string) (made []string, err error) {
	v, err := u.nextUIDValidity(len(names))
	if err != nil {
		return nil, fmt.Errorf("maildir: create %s: %w", names[0], err)
	}
	for i, name := range names {
		err := u.makeFolder(name, v+uint32(i))
		switch {
		case errors.Is(err, ErrMailboxExists):
		case err != nil:
			return nil, fmt.Errorf("maildir: create %s: %w", name, errors.Join(err, u.takeBackFolders(made)))
		default:
			made = append(made, name)
		}
	}
	if len(made) > 0 {
		if err := u.s.fs.SyncDir(u.dir); err != nil {
			return nil, fmt.Errorf("maildir: create %s: %w", names[0], errors.Join(err, u.takeBackFolders(made)))
		}
	}
	return made, nil
}

// makeFolder builds the folder in a scratch directory of tmp/, flocked
// while it is built (so no other process's cleanTmp takes it for
// abandoned), and renames it into place: ErrMailboxExists if the name is
// taken.
func (u *User) makeFolder(name string, uidValidity uint32) error {
	scratch, err := os.MkdirTemp(filepath.Join(u.dir, "tmp"), scratchCreate)
	if err != nil {
		return err
	}
	lock, err := safeio.LockDir(scratch, false)
	if err != nil {
		u.s.fs.Remove(scratch)
		return err
	}
	defer lock.Close() // after the rename, or the RemoveAll
	err = func() error {
		for _, d := range []string{"cur", "new", "tmp"} {
			if err := os.Mkdir(filepath.Join(scratch, d), 0o700); err != nil {
				return err
			}
		}
		if err := u.s.writeMarker(filepath.Join(scratch, folderMarker)); err != nil {
			return err
		}
		// Fsyncs scratch too, so its entries are durable before the rename.
		return u.s.fs.WriteFile(filepath.Join(scratch, uidlistFile), appendHeader(nil, ulHeader{uidValidity: uidValidity, next: 1}), 0o600)
	}()
	if err == nil {
		err = u.s.fs.Rename(scratch, u.folderPath(name))
		if errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, os.ErrExist) {
			err = ErrMailboxExists
		}
	}
	if err != nil {
		if rerr := u.s.fs.RemoveAll(scratch); rerr != nil {
			u.log().Warn("maildir: take back a new folder", "path", scratch, "err", rerr)
		}
	}
	return err
}

// takeBackFolders removes folders just made whose creation failed later
// (they are renamed into tmp/ first, so they vanish at once). It returns
// the failures of the renames, which leave a folder in place.
func (u *User) takeBackFolders(names []string) error {
	var errs []error
	for _, n := range slices.Backward(names) {
		trash := filepath.Join(u.dir, "tmp", scratchDeleted+strconv.FormatUint(rand.Uint64(), 36))
		if err := u.s.fs.Rename(u.folderPath(n), trash); err != nil {
			u.log().Error("maildir: take back a new folder", "mailbox", n, "err", err)
			errs = append(errs, fmt.Errorf("taking back folder %s: %w", n, err))
			continue
		}
		if err := u.s.fs.RemoveAll(trash); err != nil {
			u.log().Warn("maildir: take back a new folder", "path", trash, "err", err)
		}
	}
	return errors.Join(errs...)
}

// DeleteMailbox deletes a folder and its messages. INBOX cannot be deleted
// (ErrInboxDelete), nor a folder with children (ErrHasChildren).
// Subscriptions are kept (RFC 3501 §6.3.4).
func (u *User) DeleteMailbox(name string) error {
	canon, err := canonicalName(name)
	if err != nil {
		return err
	}
	if canon == "INBOX" {
		return ErrInboxDelete
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.existsLocked(canon) {
		return fmt.Errorf("%w: %s", ErrNoSuchMailbox, canon)
	}
	names, err := u.folderNamesLocked()
	if err != nil {
		return err
	}
	for _, n := range names {
		if strings.HasPrefix(n, canon+"/") {
			return fmt.Errorf("%w: %s", ErrHasChildren, canon)
		}
	}
	loaded := u.boxes[canon]
	if loaded != nil {
		loaded.mu.Lock()
		loaded.goneLocked()
		loaded.mu.Unlock()
		delete(u.boxes, canon)
	}
	dir := u.folderPath(canon)
	// Locked while it moves into tmp/ and is removed there, so that no
	// other process's cleanTmp races with our removal.
	lock, err := safeio.LockDir(dir, false)
	if err != nil {
		return fmt.Errorf("maildir: delete %s: %w", canon, err)
	}
	defer lock.Close()
	trash := filepath.Join(u.dir, "tmp", scratchDeleted+strconv.FormatUint(rand.Uint64(), 36))
	var bytes, count int64
	err = u.quotaTx(func() (int64, int64, error) {
		b1, c1, _ := u.s.sumDir(filepath.Join(dir, "cur"))
		b2, c2, _ := u.s.sumDir(filepath.Join(dir, "new"))
		if err := u.s.fs.Rename(dir, trash); err != nil {
			return 0, 0, err
		}
		bytes, count = b1+b2, c1+c2
		return -bytes, -count, nil
	})
	if err == nil {
		if err = u.s.fs.SyncDir(u.dir); err != nil { // not durable: take it back
			_ = u.quotaTx(func() (int64, int64, error) {
				if rerr := u.s.fs.Rename(trash, dir); rerr != nil {
					u.log().Error("maildir: take back a deletion", "mailbox", canon, "err", rerr)
					err = errors.Join(err, fmt.Errorf("taking back the deletion: %w", rerr))
					return 0, 0, nil
				}
				return bytes, count, nil
			})
		}
	}
	if err != nil {
		if loaded != nil {
			loaded.mu.Lock()
			loaded.deleted = false
			loaded.mu.Unlock()
			u.boxes[canon] = loaded
		}
		if errors.Is(err, os.ErrNotExist) { // another process deleted it first
			return fmt.Errorf("%w: %s", ErrNoSuchMailbox, canon)
		}
		return fmt.Errorf("maildir: delete %s: %w", canon, err)
	}
	if err := u.s.fs.RemoveAll(trash); err != nil {
		u.log().Warn("maildir: delete", "path", trash, "err", err)
	}
	rec := u.readSpecialUse()
	if _, ok := rec[canon]; ok {
		delete(rec, canon)
		return u.writeSpecialUse(rec)
	}
	return nil
}

// RenameMailbox renames a folder and its children. Renaming INBOX moves its
// messages into a new folder `to` (INBOX stays, empty, with its children).
func (u *User) RenameMailbox(from, to string) error {
	fromC, err := canonicalName(from)
	if err != nil {
		return err
	}
	toC, err := canonicalName(to)
	if err != nil {
		return err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.existsLocked(fromC) {
		return fmt.Errorf("%w: %s", ErrNoSuchMailbox, fromC)
	}
	if toC == "INBOX" || u.existsLocked(toC) {
		return fmt.Errorf("%w: %s", ErrMailboxExists, toC)
	}
	if fromC == "INBOX" {
		return u.renameInboxLocked(toC)
	}
	if strings.HasPrefix(toC, fromC+"/") {
		return fmt.Errorf("%w: cannot move %s into itself", ErrInvalidName, fromC)
	}
	names, err := u.folderNamesLocked()
	if err != nil {
		return err
	}
	renames := make(map[string]string) // old name → new name
	for _, n := range names {
		if n != fromC && !strings.HasPrefix(n, fromC+"/") {
			continue
		}
		nn, err := canonicalName(toC + n[len(fromC):])
		if err != nil {
			return err
		}
		if u.existsLocked(nn) {
			return fmt.Errorf("%w: %s", ErrMailboxExists, nn)
		}
		renames[n] = nn
	}
	if err := u.createParentsLocked(toC); err != nil {
		return err
	}
	// Hold the loaded folders still while their directories move.
	var boxes []*Mailbox
	for old := range renames {
		if m := u.boxes[old]; m != nil {
			boxes = append(boxes, m)
		}
	}
	slices.SortFunc(boxes, func(a, b *Mailbox) int { return int64cmp(int64(a.id), int64(b.id)) })
	for _, m := range boxes {
		m.mu.Lock()
	}
	err = u.renameDirs(renames)
	for _, m := range boxes {
		if nn, ok := renames[m.name]; ok && err == nil {
			delete(u.boxes, m.name)
			m.name, m.dir = nn, u.folderPath(nn)
			u.boxes[nn] = m
		}
		m.mu.Unlock()
	}
	if err != nil {
		return fmt.Errorf("maildir: rename %s: %w", fromC, err)
	}
	return u.renameMetadataLocked(fromC, toC, renames)
}

// renameDirs renames parents before children, so each old path still
// exists when its turn comes (children move with their parent's dot name
// only as separate directories).
func (u *User) renameDirs(renames map[string]string) error {
	olds := make([]string, 0, len(renames))
	for o := range renames {
		olds = append(olds, o)
	}
	slices.Sort(olds)
	for _, o := range olds {
		if err := u.s.fs.Rename(u.folderPath(o), u.folderPath(renames[o])); err != nil {
			return err
		}
	}
	return u.s.fs.SyncDir(u.dir)
}

// renameMetadataLocked carries subscriptions and special uses over to the
// new names.
func (u *User) renameMetadataLocked(fromC, toC string, renames map[string]string) error {
	rec := u.readSpecialUse()
	use := specialUseOf(fromC, rec)
	changed := false
	for old, nn := range renames {
		if r, ok := rec[old]; ok {
			delete(rec, old)
			rec[nn] = r
			changed = true
		}
	}
	if _, ok := rec[toC]; !ok && use != "" { // a default folder keeps its role
		rec[toC] = use
		changed = true
	}
	if changed {
		if err := u.writeSpecialUse(rec); err != nil {
			return err
		}
	}
	subs := u.readSubscriptions()
	changed = false
	for i, s := range subs {
		if nn, ok := renames[s]; ok {
			subs[i] = nn
			changed = true
		}
	}
	if changed {
		return u.writeSubscriptions(subs)
	}
	return nil
}

// renameInboxLocked creates `to` and moves every INBOX message into it
// (RFC 3501 §6.3.5: INBOX stays, and its children are not moved).
func (u *User) renameInboxLocked(to string) error {
	if err := u.createParentsLocked(to); err != nil {
		return err
	}
	if err := u.createFolderLocked(to); err != nil {
		return err
	}
	inbox, err := u.mailboxLocked("INBOX")
	if err != nil {
		return err
	}
	dst, err := u.mailboxLocked(to)
	if err != nil {
		return err
	}
	var uids []uint32
	inbox.View(func(msgs []Message) {
		uids = make([]uint32, len(msgs))
		for i := range msgs {
			uids[i] = msgs[i].UID
		}
	})
	if _, _, err := inbox.MoveTo(dst, uids, nil); err != nil {
		return fmt.Errorf("maildir: rename INBOX: %w", err)
	}
	return nil
}

// SetSubscribed adds name to (or removes it from) the subscriptions. The
// name need not exist (RFC 3501 §6.3.6).
func (u *User) SetSubscribed(name string, on bool) error {
	canon, err := canonicalName(name)
	if err != nil {
		return err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	subs := u.readSubscriptions()
	i := slices.Index(subs, canon)
	switch {
	case on && i < 0:
		subs = append(subs, canon)
	case !on && i >= 0:
		subs = slices.Delete(subs, i, i+1)
	default:
		return nil
	}
	return u.writeSubscriptions(subs)
}

// Subscriptions returns the subscribed names, existing or not (for LSUB and
// LIST (SUBSCRIBED)).
func (u *User) Subscriptions() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.readSubscriptions()
}

func (u *User) readSubscriptions() []string {
	data, err := os.ReadFile(filepath.Join(u.dir, subsFile))
	if err != nil {
		return nil
	}
	var subs []string
	for line := range strings.Lines(string(data)) {
		if n, err := canonicalName(strings.TrimRight(line, "\r\n")); err == nil && !slices.Contains(subs, n) {
			subs = append(subs, n)
		}
	}
	return subs
}

func (u *User) writeSubscriptions(subs []string) error {
	var b strings.Builder
	for _, s := range subs {
		b.WriteString(s)
		b.WriteByte('\n')
	}
	if err := u.s.fs.WriteFile(filepath.Join(u.dir, subsFile), []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("maildir: subscriptions: %w", err)
	}
	return nil
}

// readSpecialUse reads the recorded special uses: "<use> <name>" lines.
func (u *User) readSpecialUse() map[string]string {
	rec := make(map[string]string)
	data, err := os.ReadFile(filepath.Join(u.dir, specialUseFile))
	if err != nil {
		return rec
	}
	for line := range strings.Lines(string(data)) {
		use, name, ok := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
		use, okU := canonicalSpecialUse(use)
		if n, err := canonicalName(name); ok && okU && use != "" && err == nil {
			rec[n] = use
		}
	}
	return rec
}

func (u *User) writeSpecialUse(rec map[string]string) error {
	names := make([]string, 0, len(rec))
	for n := range rec {
		names = append(names, n)
	}
	slices.Sort(names)
	var b strings.Builder
	for _, n := range names {
		b.WriteString(rec[n] + " " + n + "\n")
	}
	if err := u.s.fs.WriteFile(filepath.Join(u.dir, specialUseFile), []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("maildir: special-use: %w", err)
	}
	return nil
}

// ensureDefaults creates the default folders that are missing (unless the
// user gave their role to another folder) and, for a new user, subscribes
// INBOX and them.
func (u *User) ensureDefaults(fresh bool) error {
	rec := u.readSpecialUse()
	taken := make(map[string]bool)
	for _, use := range rec {
		taken[use] = true
	}
	var missing []string
	for _, d := range defaultFolders {
		if !u.existsLocked(d.name) && !taken[d.use] {
			missing = append(missing, d.name)
		}
	}
	if len(missing) > 0 {
		if _, err := u.createFoldersLocked(missing); err != nil {
			return err
		}
	}
	if !fresh {
		return nil
	}
	subs := []string{"INBOX"}
	for _, d := range defaultFolders {
		subs = append(subs, d.name)
	}
	return u.writeSubscriptions(subs)
}
