package maildir

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"postie/safeio"
	"slices"
	"strings"
	"sync"
	"testing"
)

// Every durable write of the store goes through its safeio.FS. These tests
// fail each step of each operation in turn (create, write, fsync, rename,
// directory fsync) and check that the failure reaches the caller as an
// error (a temporary one for delivery: not over quota, not no such
// mailbox, so the SMTP side answers 451) and leaves nothing behind: no
// message visible, no file in tmp/, new/ or cur/, no folder, the quota
// accounting unchanged, no UID shown.

// faults is an FS.Fault that fails every step op on a path match accepts.
type faults struct {
	mu    sync.Mutex
	op    safeio.Op
	match func(path string) bool // nil: disarmed
	skip  int                    // matching steps to let pass first
	hits  int
}

func (f *faults) arm(op safeio.Op, match func(string) bool, skip int) {
	f.mu.Lock()
	f.op, f.match, f.skip, f.hits = op, match, skip, 0
	f.mu.Unlock()
}

func (f *faults) disarm() { f.arm("", nil, 0) }

func (f *faults) fault(op safeio.Op, path string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.match == nil || op != f.op || !f.match(path) {
		return nil
	}
	if f.skip > 0 {
		f.skip--
		return nil
	}
	f.hits++
	return safeio.ErrInjected
}

func (f *faults) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hits
}

// contains and suffix make path matchers.
func contains(s string) func(string) bool {
	return func(p string) bool { return strings.Contains(p, s) }
}
func suffix(s string) func(string) bool {
	return func(p string) bool { return strings.HasSuffix(p, s) }
}

// faultyUser opens alice through a store whose FS fails as f says, with a
// quota (so maildirsize is kept), three messages in INBOX (UIDs 1-3, the
// second \Seen) and one in Archive.
func faultyUser(t *testing.T) (*User, string, *faults) {
	t.Helper()
	root := t.TempDir()
	f := &faults{}
	s := NewStore(root, StoreOptions{Hostname: "mx.test", Logger: slog.New(slog.DiscardHandler), FS: &safeio.FS{Fault: f.fault}})
	u, err := s.User("example.test", "alice")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := u.Deliver(strings.NewReader(body(i)), DeliverOptions{Quota: 1 << 30}); err != nil {
			t.Fatal(err)
		}
	}
	inbox := mailbox(t, u, "INBOX")
	if _, err := inbox.SetFlags([]uint32{2}, FlagsAdd, FlagSeen, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := mailbox(t, u, "Archive").Append(strings.NewReader(body(9)), FlagFlagged, testDate, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := u.Usage(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(u.maildirsizePath()); err != nil {
		t.Fatal(err)
	}
	return u, root, f
}

// storeState is what a fresh process would find: every folder's messages
// (UID, flags, size, content) and special use, every name in the tree
// (bookkeeping files aside), and the quota accounting.
type storeState struct {
	folders map[string]string
	names   []string
	usage   string
}

func stateOf(t *testing.T, root string) storeState {
	t.Helper()
	st := storeState{folders: make(map[string]string)}
	u := reopen(t, root)
	infos, err := u.ListMailboxes()
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range infos {
		m := mailbox(t, u, in.Name)
		var b strings.Builder
		fmt.Fprintf(&b, "use=%s", in.SpecialUse)
		for _, msg := range messages(m) {
			fmt.Fprintf(&b, " %d:%v:%d:%q", msg.UID, m.FlagNames(msg.Flags), msg.Size, readAll(t, m, msg.UID))
		}
		st.folders[in.Name] = b.String()
	}
	// Bookkeeping whose content changes without a message changing: a
	// failed append leaves dead UID lines; UIDVALIDITY values are spent; a
	// keyword definition whose directory fsync failed may stay (harmless:
	// every process reads it before defining another). Their temporary
	// files are not skipped.
	skip := []string{uidlistFile, uidlistLock, quotaLock, rootLock, uidvalFile, maildirsize, keywordsFile}
	filepath.WalkDir(u.dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !slices.Contains(skip, d.Name()) {
			rel, _ := filepath.Rel(u.dir, p)
			st.names = append(st.names, rel)
		}
		return nil
	})
	// The accounting as the next reading finds it: maildirsize, or the
	// files when maildirsize is missing (it is then recomputed). It must
	// match the files.
	b, c, ok := u.readMaildirsize()
	wb, wc := walkUsage(t, root)
	if ok && (b != wb || c != wc) {
		t.Errorf("maildirsize says %d bytes %d messages, the files %d %d", b, c, wb, wc)
	}
	st.usage = fmt.Sprintf("%d bytes %d messages", wb, wc)
	return st
}

func (a storeState) diff(b storeState) string {
	var out []string
	for name, v := range a.folders {
		if w, ok := b.folders[name]; !ok {
			out = append(out, "folder "+name+" gone")
		} else if v != w {
			out = append(out, fmt.Sprintf("%s: %s → %s", name, v, w))
		}
	}
	for name := range b.folders {
		if _, ok := a.folders[name]; !ok {
			out = append(out, "folder "+name+" appeared")
		}
	}
	for _, n := range b.names {
		if !slices.Contains(a.names, n) {
			out = append(out, "new file "+n)
		}
	}
	for _, n := range a.names {
		if !slices.Contains(b.names, n) {
			out = append(out, "lost file "+n)
		}
	}
	if a.usage != b.usage {
		out = append(out, "usage: "+a.usage+" → "+b.usage)
	}
	return strings.Join(out, "\n")
}

// step is one step to fail: its kind and which paths.
type step struct {
	op    safeio.Op
	what  string
	match func(string) bool
	skip  int // fail the (skip+1)th matching step
}

// steps fails create, write, fsync, rename and directory fsync, each at its
// first occurrence, in an operation that writes one file through tmp/ into
// dir (of the user's tree) and fsyncs dir.
func steps(dir string) []step {
	return []step{
		{safeio.OpCreate, "tmp/ file", contains("/tmp/"), 0},
		{safeio.OpWrite, "tmp/ file", contains("/tmp/"), 0},
		{safeio.OpSync, "tmp/ file", contains("/tmp/"), 0},
		{safeio.OpRename, "into " + dir, contains(dir + "/"), 0},
		{safeio.OpSyncDir, dir, suffix(dir), 0},
	}
}

// uidlistSteps fails the UID list append of a folder.
func uidlistSteps(folder string) []step {
	p := filepath.Join(folder, uidlistFile)
	return []step{
		{safeio.OpWrite, "UID list", suffix(p), 0},
		{safeio.OpSync, "UID list", suffix(p), 0},
	}
}

// faultCase is an operation to fail at each of steps: setup (optional)
// prepares each fresh user, op is the operation, check (optional) judges
// its error.
type faultCase struct {
	steps []step
	setup func(t *testing.T, u *User)
	op    func(t *testing.T, u *User) error
	check func(t *testing.T, err error)
}

// run runs op once per step on a fresh user with that step failing, and
// checks the outcome; then once more without faults, which must work.
func (c faultCase) run(t *testing.T) {
	t.Helper()
	for _, s := range c.steps {
		t.Run(fmt.Sprintf("%s %s", s.op, s.what), func(t *testing.T) {
			u, root, f := faultyUser(t)
			if c.setup != nil {
				c.setup(t, u)
			}
			before := stateOf(t, root)
			live := liveState(t, u)
			f.arm(s.op, s.match, s.skip)
			err := c.op(t, u)
			hits := f.count()
			f.disarm()
			if hits == 0 {
				t.Fatalf("the step never ran (err %v)", err)
			}
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, safeio.ErrInjected) {
				t.Errorf("error %v does not carry the cause", err)
			}
			if c.check != nil {
				c.check(t, err)
			}
			if d := before.diff(stateOf(t, root)); d != "" {
				t.Errorf("left behind:\n%s", d)
			}
			if got := liveState(t, u); got != live {
				t.Errorf("this process shows\n%s\nwas\n%s", got, live)
			}
			if err := c.op(t, u); err != nil {
				t.Errorf("without the fault: %v", err)
			}
		})
	}
}

// liveState is what the faulting process itself shows of its folders.
func liveState(t *testing.T, u *User) string {
	t.Helper()
	var b strings.Builder
	infos, err := u.ListMailboxes()
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range infos {
		m := mailbox(t, u, in.Name)
		if err := m.Refresh(); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s:", in.Name) // UIDNEXT may grow: a UID is never reused
		for _, msg := range messages(m) {
			fmt.Fprintf(&b, " %d%v", msg.UID, m.FlagNames(msg.Flags))
		}
		b.WriteByte('\n')
	}
	return b.String()
}

func TestFaultDeliver(t *testing.T) {
	deliver := func(t *testing.T, u *User) error {
		_, err := u.Deliver(strings.NewReader(body(7)), DeliverOptions{Quota: 1 << 30})
		return err
	}
	t.Run("INBOX", faultCase{steps: steps("alice/new"), op: deliver, check: temporary}.run)
	t.Run("folder", faultCase{steps: steps("alice/.Junk/new"), op: func(t *testing.T, u *User) error {
		_, err := u.Deliver(strings.NewReader(body(7)), DeliverOptions{Quota: 1 << 30, Mailbox: "Junk"})
		return err
	}, check: temporary}.run)
	// With maildirsize to be recomputed first, whose write fails.
	var recompute []step
	for _, op := range safeio.Steps() {
		recompute = append(recompute, step{op, "maildirsize", contains(maildirsize), 0})
	}
	recompute[len(recompute)-1].match = suffix("alice")
	t.Run("recompute", faultCase{steps: recompute, op: deliver, check: temporary, setup: func(t *testing.T, u *User) {
		if err := os.Remove(u.maildirsizePath()); err != nil {
			t.Fatal(err)
		}
	}}.run)
}

func TestFaultAppend(t *testing.T) {
	faultCase{
		steps: append(steps("alice/.Archive/cur"), uidlistSteps(".Archive")...),
		op: func(t *testing.T, u *User) error {
			_, err := mailbox(t, u, "Archive").Append(strings.NewReader(body(8)), FlagSeen|FlagDraft, testDate, nil)
			return err
		},
	}.run(t)
}

func TestFaultCopyMove(t *testing.T) {
	move := func(t *testing.T, u *User) error {
		_, _, err := mailbox(t, u, "INBOX").MoveTo(mailbox(t, u, "Archive"), []uint32{1, 2, 3}, nil)
		return err
	}
	copyTo := func(t *testing.T, u *User) error {
		_, _, err := mailbox(t, u, "INBOX").CopyTo(mailbox(t, u, "Archive"), []uint32{1, 2, 3}, nil)
		return err
	}
	dst := []step{
		{safeio.OpRename, "link into Archive", contains(".Archive/cur/"), 0},
		{safeio.OpRename, "second link", contains(".Archive/cur/"), 1},
		{safeio.OpSyncDir, "Archive", suffix(".Archive/cur"), 0},
	}
	dst = append(dst, uidlistSteps(".Archive")...)
	t.Run("copy", faultCase{steps: dst, op: copyTo}.run)
	dst[0].what, dst[1].what = "rename into Archive", "second rename"
	src := append(dst, step{safeio.OpSyncDir, "source INBOX", suffix("alice/cur"), 0})
	t.Run("move", faultCase{steps: src, op: move}.run)
	t.Run("move to another user", faultCase{
		steps: []step{
			{safeio.OpRename, "into bob's INBOX", contains("bob/cur/"), 1},
			{safeio.OpSyncDir, "bob's INBOX", suffix("bob/cur"), 0},
			{safeio.OpSyncDir, "source INBOX", suffix("alice/cur"), 0},
		},
		setup: func(t *testing.T, u *User) {
			bob, err := u.s.User("example.test", "bob")
			if err != nil {
				t.Fatal(err)
			}
			bob.SetQuota(1 << 30)
			if _, _, err := bob.Usage(); err != nil {
				t.Fatal(err)
			}
		},
		op: func(t *testing.T, u *User) error {
			bob, err := u.s.User("example.test", "bob")
			if err != nil {
				return err
			}
			if b, c, _ := bob.Usage(); b != 0 || c != 0 {
				return fmt.Errorf("bob's usage %d %d", b, c) // a take-back left it wrong
			}
			_, _, err = mailbox(t, u, "INBOX").MoveTo(mailbox(t, bob, "INBOX"), []uint32{1, 2, 3}, nil)
			return err
		},
	}.run)
	// A copy that cannot link copies through tmp/: fail each step of that.
	var viaTmp []step
	for _, s := range steps("alice/.Archive/cur") {
		viaTmp = append(viaTmp, s)
	}
	viaTmp[3].skip = 1 // the link is the first rename to the target: the copy's the second
	t.Run("copy through tmp", faultCase{steps: viaTmp, op: func(t *testing.T, u *User) error {
		inner := u.s.fs.Fault
		linked := make(map[string]bool)
		u.s.fs.Fault = func(op safeio.Op, p string) error {
			if op == safeio.OpRename && strings.Contains(p, ".Archive/cur/") && !linked[p] {
				linked[p] = true
				if err := inner(op, p); err != nil {
					return err
				}
				return errors.New("cross-device link")
			}
			return inner(op, p)
		}
		defer func() { u.s.fs.Fault = inner }()
		return copyTo(t, u)
	}}.run)
}

// answered matches the names in alice's cur/ with the \Answered flag.
func answered(p string) bool {
	_, info, ok := strings.Cut(p, ":2,")
	return strings.Contains(p, "alice/cur/") && ok && strings.Contains(info, "R")
}

// TestFaultTakeBack: a take-back goes through the store's FS too, and when
// it fails the caller hears of it (the error says so) and the process
// shows what the files say, as a fresh process would.
func TestFaultTakeBack(t *testing.T) {
	t.Run("flags", func(t *testing.T) {
		u, root, f := faultyUser(t)
		var undone []string
		inner := u.s.fs.Fault
		u.s.fs.Trace = func(op safeio.Op, p string) {
			if op == safeio.OpRename && strings.Contains(p, "alice/cur/") && !answered(p) {
				undone = append(undone, p)
			}
		}
		// The second rename fails, then so does the take-back of the first.
		f.arm(safeio.OpRename, contains("alice/cur/"), 1)
		_, err := mailbox(t, u, "INBOX").SetFlags([]uint32{1, 2, 3}, FlagsAdd, FlagAnswered, nil)
		hits := f.count()
		f.disarm()
		u.s.fs.Fault = inner
		if hits != 2 || !errors.Is(err, safeio.ErrInjected) || !strings.Contains(err.Error(), "taking back the flags of UID 1") {
			t.Fatalf("SetFlags with its take-back failing (%d faults): %v", hits, err)
		}
		if len(undone) != 0 {
			t.Errorf("take-backs done: %v", undone)
		}
		if live, fresh := liveState(t, u), liveState(t, reopen(t, root)); live != fresh || !strings.Contains(live, `INBOX: 1[\Answered]`) {
			t.Errorf("this process shows\n%s\na fresh one\n%s", live, fresh)
		}
		// Without the fault the take-back is made, and traced.
		f.arm(safeio.OpRename, contains("alice/cur/"), 1)
		f.mu.Lock()
		f.match = func(p string) bool { return answered(p) }
		f.mu.Unlock()
		if _, err := mailbox(t, u, "INBOX").SetFlags([]uint32{2, 3}, FlagsAdd, FlagAnswered, nil); !errors.Is(err, safeio.ErrInjected) {
			t.Fatalf("SetFlags: %v", err)
		}
		f.disarm()
		if len(undone) != 1 {
			t.Errorf("take-backs traced: %v", undone)
		}
	})
	t.Run("folder", func(t *testing.T) {
		u, root, f := faultyUser(t)
		// The root's fsync fails, then so does moving the new folder away.
		f.arm(safeio.OpSyncDir, suffix("alice"), 1)
		inner := u.s.fs.Fault
		u.s.fs.Fault = func(op safeio.Op, p string) error {
			if op == safeio.OpRename && strings.Contains(p, "postie-deleted") {
				return safeio.ErrInjected
			}
			return inner(op, p)
		}
		err := u.CreateMailbox("Projects", "")
		u.s.fs.Fault = inner
		f.disarm()
		if !errors.Is(err, safeio.ErrInjected) || !strings.Contains(err.Error(), "taking back folder Projects") {
			t.Fatalf("CreateMailbox with its take-back failing: %v", err)
		}
		if live, fresh := liveState(t, u), liveState(t, reopen(t, root)); live != fresh {
			t.Errorf("this process shows\n%s\na fresh one\n%s", live, fresh)
		}
	})
}

func TestFaultFlags(t *testing.T) {
	t.Run("rename", faultCase{
		// The renames to the new names (with R), not the take-backs.
		steps: []step{{safeio.OpRename, "in cur/", answered, 0}, {safeio.OpRename, "second", answered, 1}},
		op: func(t *testing.T, u *User) error {
			_, err := mailbox(t, u, "INBOX").SetFlags([]uint32{1, 2, 3}, FlagsAdd, FlagAnswered, nil)
			return err
		},
	}.run)
	var kw []step
	for _, op := range safeio.Steps() {
		kw = append(kw, step{op, "keywords", contains("alice"), 0})
	}
	t.Run("new keyword", faultCase{steps: kw, op: func(t *testing.T, u *User) error {
		m := mailbox(t, u, "INBOX")
		f, err := m.ParseFlags([]string{"$Label1"})
		if err != nil {
			return err
		}
		_, err = m.SetFlags([]uint32{1}, FlagsAdd, f, nil)
		return err
	}}.run)
}

func TestFaultCreateFolder(t *testing.T) {
	var all []step
	for _, op := range safeio.Steps() { // the first of each: postie-uidvalidity
		all = append(all, step{op, "uidvalidity", contains("alice"), 0})
	}
	all = append(all,
		step{safeio.OpCreate, "maildirfolder", suffix(folderMarker), 0},
		step{safeio.OpSync, "maildirfolder of the child", suffix(folderMarker), 1},
		step{safeio.OpCreate, "UID list", contains("postie-create"), 1},
		step{safeio.OpWrite, "UID list", contains("postie-create"), 0},
		step{safeio.OpSync, "UID list", contains("postie-create"), 1},
		step{safeio.OpRename, "UID list", suffix(uidlistFile), 0},
		step{safeio.OpSyncDir, "scratch", contains("postie-create"), 0},
		step{safeio.OpRename, "parent into place", suffix("/.Projects"), 0},
		step{safeio.OpRename, "child into place", suffix("/.Projects.2026"), 0},
		step{safeio.OpSyncDir, "root", suffix("alice"), 1},
		step{safeio.OpRename, "special-use", suffix(specialUseFile), 0},
		step{safeio.OpSyncDir, "special-use", suffix("alice"), 2},
	)
	faultCase{steps: all, op: func(t *testing.T, u *User) error {
		err := u.CreateMailbox("Projects/2026", `\Flagged`)
		if err == nil {
			err = u.DeleteMailbox("Projects/2026") // so that it can run again
			if err == nil {
				err = u.DeleteMailbox("Projects")
			}
		}
		return err
	}}.run(t)
}

// TestFaultUIDListAppend: a message delivered (by another process, say) is
// numbered at the next Refresh; while its UID line cannot be made durable,
// Refresh fails and no UID is shown; once it can, the message appears with
// one UID, the same in every process.
func TestFaultUIDListAppend(t *testing.T) {
	for _, s := range uidlistSteps("alice") {
		t.Run(string(s.op), func(t *testing.T) {
			u, root, f := faultyUser(t)
			inbox := mailbox(t, u, "INBOX")
			before := liveState(t, u)
			f.arm(s.op, s.match, 0)
			if _, err := u.Deliver(strings.NewReader(body(5)), DeliverOptions{}); err != nil {
				t.Fatal(err) // the delivery itself is durable; numbering comes later
			}
			err := inbox.Refresh()
			if f.count() == 0 || !errors.Is(err, safeio.ErrInjected) {
				t.Fatalf("Refresh: %v (%d faults)", err, f.count())
			}
			f.disarm()
			if got := uidsOf(inbox); !slices.Equal(got, []uint32{1, 2, 3}) {
				t.Errorf("UIDs shown %v", got)
			}
			_ = before
			if err := inbox.Refresh(); err != nil {
				t.Fatal(err)
			}
			got := uidsOf(inbox)
			if len(got) != 4 {
				t.Fatalf("UIDs %v", got)
			}
			if other := uidsOf(mailbox(t, reopen(t, root), "INBOX")); !slices.Equal(other, got) {
				t.Errorf("this process shows %v, another %v", got, other)
			}
			uidlistLines(t, u.dir) // no UID given to two names
		})
	}
}

// TestFaultMaildirsizeAppend: the usage line of an operation cannot be
// written. The operation stands (maildirsize is a cache of what is on
// disk), and the file is dropped, so the next reading recomputes it instead
// of trusting a sum that misses a line or ends in a torn one.
func TestFaultMaildirsizeAppend(t *testing.T) {
	ops := map[string]func(t *testing.T, u *User) error{
		"deliver": func(t *testing.T, u *User) error {
			_, err := u.Deliver(strings.NewReader(body(7)), DeliverOptions{Quota: 1 << 30})
			return err
		},
		"append": func(t *testing.T, u *User) error {
			_, err := mailbox(t, u, "Archive").Append(strings.NewReader(body(8)), 0, testDate, nil)
			return err
		},
		"copy": func(t *testing.T, u *User) error {
			_, _, err := mailbox(t, u, "INBOX").CopyTo(mailbox(t, u, "Archive"), []uint32{1, 2}, nil)
			return err
		},
		"expunge": func(t *testing.T, u *User) error {
			_, err := mailbox(t, u, "INBOX").Expunge([]uint32{1}, nil)
			return err
		},
	}
	for name, op := range ops {
		for _, s := range []safeio.Op{safeio.OpWrite, safeio.OpSync} {
			t.Run(name+" "+string(s), func(t *testing.T) {
				u, root, f := faultyUser(t)
				f.arm(s, suffix(maildirsize), 0)
				if err := op(t, u); err != nil {
					t.Fatal(err)
				}
				if f.count() == 0 {
					t.Fatal("the step never ran")
				}
				f.disarm()
				if _, err := os.Stat(u.maildirsizePath()); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("maildirsize kept after a failed append: %v", err)
				}
				checkUsage(t, u, root, name)
				if err := op(t, u); err != nil {
					t.Fatal(err)
				}
				checkUsage(t, u, root, name+" again")
			})
		}
	}
}

func temporary(t *testing.T, err error) {
	t.Helper()
	if errors.Is(err, ErrQuotaExceeded) || errors.Is(err, ErrNoSuchMailbox) || errors.Is(err, ErrInvalidName) {
		t.Errorf("delivery failure %v is not a temporary one", err)
	}
}
