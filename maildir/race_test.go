package maildir

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// firstDeliveryProcess is a `postie deliver` in miniature: it waits for the
// parent's go (a byte on stdin, so that all children start together), opens
// the store and the user (creating the user's tree and default folders on
// first use) and delivers one message. Exit 75 on failure, as postie
// deliver does.
func firstDeliveryProcess(root, local string) int {
	var b [1]byte
	if _, err := os.Stdin.Read(b[:]); err != nil {
		fmt.Fprintln(os.Stderr, "no go:", err)
		return 75
	}
	u, err := NewStore(root, StoreOptions{Hostname: "helper.test"}).User("example.test", local)
	if err == nil {
		_, err = u.Deliver(strings.NewReader(body(os.Getpid())), DeliverOptions{})
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 75
	}
	return 0
}

// children starts n first-delivery processes for each of users, gives them
// the go together and returns a function that waits for them and reports
// every failure.
func children(t *testing.T, root string, users []string, n int) (wait func()) {
	t.Helper()
	type child struct {
		cmd   *exec.Cmd
		out   *strings.Builder
		stdin io.WriteCloser
		user  string
	}
	var all []child
	for _, local := range users {
		for range n {
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "POSTIE_MAILDIR_HELPER="+root, "POSTIE_MAILDIR_USER="+local)
			out := &strings.Builder{}
			cmd.Stdout, cmd.Stderr = out, out
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			all = append(all, child{cmd, out, stdin, local})
		}
	}
	for _, c := range all {
		c.stdin.Write([]byte{1})
		c.stdin.Close()
	}
	return func() {
		t.Helper()
		failed := 0
		for _, c := range all {
			if err := c.cmd.Wait(); err != nil {
				failed++
				t.Errorf("delivery to %s: %v: %s", c.user, err, strings.TrimSpace(c.out.String()))
			}
		}
		if failed > 0 {
			t.Errorf("%d of %d deliveries failed", failed, len(all))
		}
	}
}

// checkFolders checks one user's folders from a fresh store, as after a
// restart: every listed folder can be selected and is complete on disk,
// CREATE of it says it exists, the default folders are there, no scratch
// directory is left in tmp/, and the INBOX holds want messages (-1: any).
func checkFolders(t *testing.T, root, local string, want int) {
	t.Helper()
	u, err := testStore(t, root).User("example.test", local)
	if err != nil {
		t.Fatalf("%s: %v", local, err)
	}
	infos, err := u.ListMailboxes()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, in := range infos {
		names = append(names, in.Name)
		m, err := u.Mailbox(in.Name)
		if err != nil {
			t.Errorf("%s: %s listed but not selectable: %v", local, in.Name, err)
			continue
		}
		if in.Name != "INBOX" {
			if err := u.CreateMailbox(in.Name, ""); !errors.Is(err, ErrMailboxExists) {
				t.Errorf("%s: CREATE of listed %s: %v", local, in.Name, err)
			}
		}
		for _, f := range []string{"cur", "new", "tmp", uidlistFile} {
			if _, err := os.Stat(filepath.Join(m.dir, f)); err != nil {
				t.Errorf("%s: %s: %v", local, in.Name, err)
			}
		}
	}
	for _, d := range defaultFolders {
		if !slices.Contains(names, d.name) {
			t.Errorf("%s: default folder %s missing: %v", local, d.name, names)
		}
	}
	// Also on disk, what LIST does not show: a folder directory that is
	// not complete.
	ents, _ := os.ReadDir(u.dir)
	for _, e := range ents {
		if n, ok := nameFromDir(e.Name()); ok && e.IsDir() && n != "INBOX" && !slices.Contains(names, n) {
			t.Errorf("%s: directory %s not listed", local, e.Name())
		}
	}
	for _, n := range dirNames(t, filepath.Join(u.dir, "tmp")) {
		t.Errorf("%s: left in tmp/: %s", local, n)
	}
	if want >= 0 {
		if got := len(uidsOf(mailbox(t, u, "INBOX"))); got != want {
			t.Errorf("%s: INBOX has %d messages, want %d", local, got, want)
		}
	}
}

// TestConcurrentFirstDeliveries: 12 new users, 8 processes delivering to
// each at once, every one of them creating the user's tree and default
// folders. Each process's cleanup of tmp/ used to delete the others'
// folders under construction: deliveries failed and folders were left as
// empty directories, listed but never selectable.
func TestConcurrentFirstDeliveries(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns 96 processes")
	}
	root := t.TempDir()
	var users []string
	for i := range 12 {
		users = append(users, fmt.Sprintf("user%02d", i))
	}
	children(t, root, users, 8)()
	for _, local := range users {
		checkFolders(t, root, local, 8)
	}
}

// TestCreateDeleteWhileDelivering: CREATE and DELETE of folders in this
// process while other processes open the user and deliver to it.
func TestCreateDeleteWhileDelivering(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	root := t.TempDir()
	u, err := testStore(t, root).User("example.test", "alice")
	if err != nil {
		t.Fatal(err)
	}
	const waves, per = 10, 8
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	var creates, fails int
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			name := fmt.Sprintf("F%d/sub", i%5)
			creates++
			if err := u.CreateMailbox(name, ""); err != nil {
				fails++
				t.Errorf("CREATE %s: %v", name, err)
				continue
			}
			if i%2 == 0 {
				for _, n := range []string{name, strings.TrimSuffix(name, "/sub")} {
					if err := u.DeleteMailbox(n); err != nil {
						t.Errorf("DELETE %s: %v", n, err)
					}
				}
			} else if err := u.DeleteMailbox(name); err != nil {
				t.Errorf("DELETE %s: %v", name, err)
			}
		}
	}()
	for range waves {
		children(t, root, []string{"alice"}, per)()
	}
	close(done)
	wg.Wait()
	t.Logf("%d CREATEs, %d failed, during %d deliveries", creates, fails, waves*per)
	checkFolders(t, root, "alice", waves*per)
}

// TestHalfMadeFolderHealed: folders left incomplete (by the old cleanup
// race, a crash of another tool, or by hand) are completed when the user is
// opened, and when they are selected, delivered to or created in a running
// process: never listed but unusable.
func TestHalfMadeFolderHealed(t *testing.T) {
	u, root := testUser(t)
	dir := u.dir
	if err := u.CreateMailbox("Lists/go", ""); err != nil {
		t.Fatal(err)
	}
	wreck := func(folder string, keep ...string) {
		t.Helper()
		p := filepath.Join(dir, folder)
		for _, n := range dirNames(t, p) {
			if !slices.Contains(keep, n) {
				if err := os.RemoveAll(filepath.Join(p, n)); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	wreck(".Sent")                                      // an empty directory: what the race left
	wreck(".Drafts", "cur", "new", "tmp", folderMarker) // no UID list
	wreck(".Junk", "cur")                               // no new/ or tmp/
	wreck(".Trash", uidlistFile)                        // only its UID list
	if err := os.Mkdir(filepath.Join(dir, ".Made by hand"), 0o700); err != nil {
		t.Fatal(err)
	}
	checkFolders(t, root, "alice", 0)

	// In a running process, without reopening: SELECT, delivery and
	// CREATE heal what they meet.
	wreck(".Sent")
	wreck(".Lists.go")
	wreck(".Archive")
	if _, err := u.Mailbox("Sent"); err != nil {
		t.Errorf("SELECT of a half-made Sent: %v", err)
	}
	if _, err := u.Deliver(strings.NewReader(body(1)), DeliverOptions{Mailbox: "Lists/go"}); err != nil {
		t.Errorf("delivery into a half-made folder: %v", err)
	}
	if err := u.CreateMailbox("Archive", ""); !errors.Is(err, ErrMailboxExists) {
		t.Errorf("CREATE of a half-made Archive: %v", err)
	}
	if err := u.DeleteMailbox("Archive"); err != nil {
		t.Errorf("DELETE of a half-made Archive: %v", err)
	}
	if err := u.CreateMailbox("Archive", ""); err != nil {
		t.Errorf("CREATE after DELETE: %v", err)
	}
	checkFolders(t, root, "alice", 0)
	if got := len(uidsOf(mailbox(t, reopen(t, root), "Lists/go"))); got != 1 {
		t.Errorf("Lists/go has %d messages", got)
	}
}
