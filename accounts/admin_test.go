package accounts

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"postie/safeio"
)

func TestAdminUserRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "accounts.toml")
	a := testAdmin(path)
	if err := a.AddUser("Ann@Example.TEST", "pw1", 1000); err != nil {
		t.Fatal(err)
	}
	if err := a.AddUser("bob@other.test", "pw2", 0); err != nil {
		t.Fatal(err)
	}
	db := openTest(t, path)
	ann, err := db.Authenticate("ann@example.test", "pw1")
	if err != nil || ann.Quota != 1000 {
		t.Fatalf("Authenticate after AddUser: %+v %v", ann, err)
	}

	if err := a.SetPassword("ANN@example.test", "new"); err != nil {
		t.Fatal(err)
	}
	if err := a.SetQuota("ann@example.test", 2000); err != nil {
		t.Fatal(err)
	}
	if err := a.SetMaxMessagesPerHour("ann@example.test", 30); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Authenticate("ann@example.test", "pw1"); !errors.Is(err, ErrAuthFailed) {
		t.Errorf("old password still works: %v", err)
	}
	ann, err = db.Authenticate("ann@example.test", "new")
	if err != nil || ann.Quota != 2000 || ann.MaxMessagesPerHour != 30 {
		t.Errorf("after changes: %+v %v", ann, err)
	}

	users, err := a.ListUsers()
	if err != nil || len(users) != 2 || users[0].Address != "ann@example.test" || users[1].Domain != "other.test" {
		t.Errorf("ListUsers = %+v, %v", users, err)
	}
	if err := a.DeleteUser("bob@other.test"); err != nil {
		t.Fatal(err)
	}
	if _, ok := db.Lookup("bob@other.test"); ok {
		t.Error("deleted user still found")
	}
	checkFileMode(t, path)
}

func TestAdminUserErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "accounts.toml")
	a := testAdmin(path)
	if err := a.AddUser("ann@example.test", "pw", 0); err != nil {
		t.Fatal(err)
	}
	if err := a.AddAlias("sales@example.test", []string{"ann@example.test"}); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"exists", a.AddUser("ANN@example.test", "pw", 0), "already exists"},
		{"alias exists", a.AddUser("sales@example.test", "pw", 0), "an alias of that address exists"},
		{"foreign domain", a.AddUser("x@elsewhere.test", "pw", 0), "not one of ours"},
		{"invalid", a.AddUser("x y@example.test", "pw", 0), "forbidden character"},
		{"tag", a.AddUser("x+y@example.test", "pw", 0), "+tags"},
		{"literal", a.AddUser("x@[127.0.0.1]", "pw", 0), "address literals"},
		{"empty password", a.AddUser("x@example.test", "", 0), "empty password"},
		{"long password", a.AddUser("x@example.test", strings.Repeat("p", 2000), 0), "longer than"},
		{"negative quota", a.AddUser("x@example.test", "pw", -5), "negative quota"},
		{"passwd unknown", a.SetPassword("nobody@example.test", "pw"), "not found"},
		{"passwd empty", a.SetPassword("ann@example.test", ""), "empty password"},
		{"quota unknown", a.SetQuota("nobody@example.test", 1), "not found"},
		{"delete unknown", a.DeleteUser("nobody@example.test"), "not found"},
	}
	for _, tt := range tests {
		if tt.err == nil || !strings.Contains(tt.err.Error(), tt.want) {
			t.Errorf("%s: error %v, want %q", tt.name, tt.err, tt.want)
		}
	}
	if err := a.AddUser("ann@example.test", "pw", 0); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate AddUser: %v, want ErrExists", err)
	}
	if err := a.DeleteUser("nobody@example.test"); !errors.Is(err, ErrNotFound) {
		t.Errorf("DeleteUser unknown: %v, want ErrNotFound", err)
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Error("a failed command changed the file")
	}
}

func TestAdminAliasRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "accounts.toml")
	a := testAdmin(path)
	for _, u := range []string{"ann@example.test", "bob@example.test"} {
		if err := a.AddUser(u, "pw", 0); err != nil {
			t.Fatal(err)
		}
	}
	steps := []error{
		a.AddAlias("Sales@Example.test", []string{"ann@example.test"}),
		a.AddAlias("sales@example.test", []string{"BOB@example.test", "ann@EXAMPLE.test", "Far@Remote.TEST"}),
		a.AddAlias("@other.test", []string{"bob@example.test"}),
		a.AddAlias("list+x@example.test", []string{"ann@example.test"}),
	}
	for i, err := range steps {
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	aliases, err := a.ListAliases()
	if err != nil {
		t.Fatal(err)
	}
	want := []Alias{
		{"sales@example.test", []string{"ann@example.test", "BOB@example.test", "Far@remote.test"}},
		{"@other.test", []string{"bob@example.test"}},
		{"list+x@example.test", []string{"ann@example.test"}},
	}
	if fmt.Sprint(aliases) != fmt.Sprint(want) {
		t.Errorf("ListAliases = %v, want %v", aliases, want)
	}

	db := openTest(t, path)
	res, err := db.Resolve("sales@example.test")
	if err != nil || len(res.Users) != 2 || !slices.Equal(res.Remote, []string{"Far@remote.test"}) {
		t.Errorf("Resolve(sales) = %+v, %v", res, err)
	}
	if res, err := db.Resolve("anyone@other.test"); err != nil || len(res.Users) != 1 || res.Users[0].Address != "bob@example.test" {
		t.Errorf("Resolve(catch-all) = %+v, %v", res, err)
	}

	if err := a.DeleteAlias("sales@example.test", []string{"bob@example.test"}); err != nil {
		t.Fatal(err)
	}
	if res, _ := db.Resolve("sales@example.test"); len(res.Users) != 1 || res.Users[0].Address != "ann@example.test" {
		t.Errorf("after removing bob: %+v", res)
	}
	if err := a.DeleteAlias("sales@example.test", []string{"ann@example.test", "far@remote.test"}); err != nil {
		t.Fatal(err)
	}
	if err := a.DeleteAlias("@other.test", nil); err != nil {
		t.Fatal(err)
	}
	aliases, _ = a.ListAliases()
	if len(aliases) != 1 || aliases[0].Address != "list+x@example.test" {
		t.Errorf("after deletions: %v", aliases)
	}
	if _, err := db.Resolve("sales@example.test"); err == nil {
		t.Error("deleted alias still resolves")
	}
	checkFileMode(t, path)
}

func TestAdminAliasErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "accounts.toml")
	a := testAdmin(path)
	if err := a.AddUser("ann@example.test", "pw", 0); err != nil {
		t.Fatal(err)
	}
	if err := a.AddAlias("x@example.test", []string{"ann@example.test"}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		err  error
		want error
		text string
	}{
		{"shadows user", a.AddAlias("ANN@example.test", []string{"x@remote.test"}), ErrExists, "hidden by the user"},
		{"shadows user by tag", a.AddAlias("ann+y@example.test", []string{"x@remote.test"}), ErrExists, "hidden by the user"},
		{"foreign domain", a.AddAlias("x@elsewhere.test", []string{"ann@example.test"}), nil, "not one of ours"},
		{"foreign catch-all", a.AddAlias("@elsewhere.test", []string{"ann@example.test"}), nil, "not one of ours"},
		{"no targets", a.AddAlias("y@example.test", nil), nil, "no targets"},
		{"bad target", a.AddAlias("y@example.test", []string{"no domain"}), nil, "target"},
		{"catch-all target", a.AddAlias("y@example.test", []string{"@example.test"}), nil, "target"},
		{"self target", a.AddAlias("y@example.test", []string{"Y@example.test"}), nil, "targets itself"},
		{"bad alias", a.AddAlias("y z@example.test", []string{"ann@example.test"}), nil, "forbidden"},
		{"delete unknown", a.DeleteAlias("nope@example.test", nil), ErrNotFound, "not found"},
		{"delete unknown target", a.DeleteAlias("x@example.test", []string{"bob@example.test"}), ErrNotFound, "not found"},
	}
	for _, tt := range tests {
		if tt.err == nil || !strings.Contains(tt.err.Error(), tt.text) || (tt.want != nil && !errors.Is(tt.err, tt.want)) {
			t.Errorf("%s: error %v, want %q", tt.name, tt.err, tt.text)
		}
	}
}

// TestAdminConcurrent runs many admin commands at once: the lock must keep
// every change, and the file must stay valid throughout.
func TestAdminConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "accounts.toml")
	const n = 20
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			// Separate Admin values, as separate processes would have.
			if err := testAdmin(path).AddUser(fmt.Sprintf("u%d@example.test", i), "pw", 0); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	users, err := testAdmin(path).ListUsers()
	if err != nil || len(users) != n {
		t.Fatalf("after %d concurrent adds: %d users, %v", n, len(users), err)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	for _, e := range entries {
		if e.Name() != "accounts.toml" && e.Name() != "accounts.toml.lock" {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}

func TestAdminRefusesToRewriteBadFile(t *testing.T) {
	path := writeAccounts(t, "[[user]]\naddress = 'ann@example.test'\npassword = 'plain'\n")
	if err := testAdmin(path).AddUser("bob@example.test", "pw", 0); err == nil || !strings.Contains(err.Error(), ":1:") {
		t.Errorf("AddUser on a bad file: %v", err)
	}
	if data, _ := os.ReadFile(path); !strings.Contains(string(data), "'plain'") {
		t.Error("bad file was rewritten")
	}
}

// TestAdminAtomicReplace checks that a rewrite replaces the file (a new
// inode), so a reader holding the old one keeps reading a whole file.
func TestAdminAtomicReplace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "accounts.toml")
	a := testAdmin(path)
	if err := a.AddUser("ann@example.test", "pw", 0); err != nil {
		t.Fatal(err)
	}
	old, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	oldFI, _ := old.Stat()
	if err := a.AddUser("bob@example.test", "pw", 0); err != nil {
		t.Fatal(err)
	}
	newFI, _ := os.Stat(path)
	if os.SameFile(oldFI, newFI) {
		t.Error("file rewritten in place, not replaced")
	}
	oldData := make([]byte, 4096)
	k, _ := old.Read(oldData)
	if strings.Contains(string(oldData[:k]), "bob@") || !strings.Contains(string(oldData[:k]), "ann@") {
		t.Errorf("old version changed under a reader:\n%s", oldData[:k])
	}
}

func checkFileMode(t *testing.T, path string) {
	t.Helper()
	for _, p := range []string{path, path + ".lock"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", p, fi.Mode().Perm())
		}
	}
}

// A failure at any step of writing the accounts file fails the command,
// leaves the file as it was (the user absent; after a failed directory
// fsync, old or new and whole) and no temporary file beside it.
func TestAdminWriteFailsAtEachStep(t *testing.T) {
	for _, op := range safeio.Steps() {
		t.Run(string(op), func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "accounts.toml")
			a := testAdmin(path)
			if err := a.AddUser("ann@example.test", "pw", 0); err != nil {
				t.Fatal(err)
			}
			before, _ := os.ReadFile(path)
			inj := &safeio.Injector{}
			a.FS = &safeio.FS{Fault: inj.Fault}
			inj.Arm(op, "")
			if err := a.AddUser("bob@example.test", "pw", 0); !errors.Is(err, safeio.ErrInjected) {
				t.Fatalf("AddUser with a failing %s: %v, want the injected error", op, err)
			}
			if op != safeio.OpSyncDir {
				if after, _ := os.ReadFile(path); string(after) != string(before) {
					t.Errorf("the file changed after a failed %s", op)
				}
			}
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				if e.Name() != "accounts.toml" && e.Name() != "accounts.toml.lock" {
					t.Errorf("left behind: %s", e.Name())
				}
			}
			inj.Disarm()
			// After a failed directory fsync the new file is in place but
			// not known durable: the retry finds the user, or adds it.
			if err := a.AddUser("bob@example.test", "pw", 0); err != nil && !(op == safeio.OpSyncDir && errors.Is(err, ErrExists)) {
				t.Fatalf("retry after the fault: %v", err)
			}
		})
	}
}
