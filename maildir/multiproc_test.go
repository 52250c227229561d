package maildir

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The test binary doubles as a second process: with POSTIE_MAILDIR_HELPER
// set it delivers into the store given and refreshes (assigning UIDs),
// then exits.
func TestMain(m *testing.M) {
	if root := os.Getenv("POSTIE_MAILDIR_HELPER"); root != "" {
		os.Exit(helperProcess(root))
	}
	os.Exit(m.Run())
}

func helperProcess(root string) int {
	if local := os.Getenv("POSTIE_MAILDIR_USER"); local != "" {
		return firstDeliveryProcess(root, local)
	}
	if os.Getenv("POSTIE_MAILDIR_MODSEQ") != "" {
		return modseqProcess(root) // modseq_test.go
	}
	n, _ := strconv.Atoi(os.Getenv("POSTIE_MAILDIR_N"))
	s := NewStore(root, StoreOptions{Hostname: "helper.test"})
	u, err := s.User("example.test", "alice")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	inbox, err := u.Mailbox("INBOX")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for i := range n {
		if _, err := u.Deliver(strings.NewReader(body(1000+i)), DeliverOptions{}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if i%3 == 0 {
			if _, err := inbox.Append(strings.NewReader(body(2000+i)), FlagSeen, time.Time{}, nil); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
	}
	if err := inbox.Refresh(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// checkConsistent checks that views agree with each other and with the UID
// list: UIDs ascending and unique, every file once, no UID for two names.
func checkConsistent(t *testing.T, root string, want int, views ...*Mailbox) {
	t.Helper()
	dir := filepath.Join(root, "example.test", "alice")
	_, lines := uidlistLines(t, dir) // fails on a UID given to two names
	fresh := mailbox(t, reopen(t, root), "INBOX")
	views = append(views, fresh)
	ref := uidsOf(fresh)
	if len(ref) != want {
		t.Errorf("%d messages, want %d", len(ref), want)
	}
	if !slices.IsSorted(ref) || len(slices.Compact(slices.Clone(ref))) != len(ref) {
		t.Errorf("UIDs not ascending and unique: %v", ref)
	}
	for i, v := range views {
		if err := v.Refresh(); err != nil {
			t.Fatal(err)
		}
		if got := uidsOf(v); !slices.Equal(got, ref) {
			t.Errorf("view %d has UIDs %v, want %v", i, got, ref)
		}
		v.View(func(msgs []Message) {
			for j, m := range msgs {
				if key := v.keys[j]; lines[m.UID] != key {
					t.Errorf("view %d: UID %d is %s, the UID list says %s", i, m.UID, key, lines[m.UID])
				}
			}
		})
	}
	if t.Failed() {
		byKey := make(map[string][]uint32)
		for uid, k := range lines {
			byKey[k] = append(byKey[k], uid)
		}
		for k, us := range byKey {
			if len(us) > 1 {
				t.Logf("%s has UIDs %v", k, us)
			}
		}
	}
	if got := len(dirNames(t, filepath.Join(dir, "cur"))) + len(dirNames(t, filepath.Join(dir, "new"))); got != want {
		t.Errorf("%d files, want %d", got, want)
	}
}

func TestTwoStoresConcurrent(t *testing.T) {
	root := t.TempDir()
	var users [2]*User
	var boxes [2]*Mailbox
	for i := range users {
		u, err := testStore(t, root).User("example.test", "alice")
		if err != nil {
			t.Fatal(err)
		}
		users[i] = u
		boxes[i] = mailbox(t, u, "INBOX")
	}
	const per = 40
	var wg sync.WaitGroup
	for i := range 2 {
		for g := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := range per {
					if g == 0 {
						if _, err := users[i].Deliver(strings.NewReader(body(k)), DeliverOptions{}); err != nil {
							t.Error(err)
							return
						}
					} else if _, err := boxes[i].Append(strings.NewReader(body(k)), 0, time.Time{}, nil); err != nil {
						t.Error(err)
						return
					}
					if err := boxes[i].Refresh(); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	checkConsistent(t, root, 4*per, boxes[0], boxes[1])
}

// TestSecondProcess runs a real second process delivering, appending and
// assigning UIDs into the same INBOX while this one does the same.
func TestSecondProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a process")
	}
	root := t.TempDir()
	u, err := testStore(t, root).User("example.test", "alice")
	if err != nil {
		t.Fatal(err)
	}
	inbox := mailbox(t, u, "INBOX")
	const n = 30
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "POSTIE_MAILDIR_HELPER="+root, "POSTIE_MAILDIR_N="+strconv.Itoa(n))
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		deliver(t, u, body(i))
		if i%3 == 0 {
			if _, err := inbox.Append(strings.NewReader(body(i)), 0, time.Time{}, nil); err != nil {
				t.Fatal(err)
			}
		}
		if err := inbox.Refresh(); err != nil {
			t.Fatal(err)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	checkConsistent(t, root, 2*(n+n/3), inbox)
}
