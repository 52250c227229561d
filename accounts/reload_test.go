package accounts

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func userFile(t testing.TB, addrs ...string) string {
	var b strings.Builder
	for _, a := range addrs {
		fmt.Fprintf(&b, "[[user]]\naddress = %q\npassword = %q\n", a, testHash(t, "pw"))
	}
	return b.String()
}

// TestHotReload rewrites the file as another process would (in place and
// by rename) and expects lookups to see each version.
func TestHotReload(t *testing.T) {
	path := writeAccounts(t, userFile(t, "ann@example.test"))
	db := openTest(t, path)
	if _, ok := db.Lookup("ann@example.test"); !ok {
		t.Fatal("ann missing")
	}

	// In place, same size: the mtime (or inode) must tell.
	if err := os.WriteFile(path, []byte(userFile(t, "bob@example.test")), 0o600); err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(2 * time.Second)
	os.Chtimes(path, future, future) // coarse-mtime file systems: make the change visible
	if _, ok := db.Lookup("bob@example.test"); !ok {
		t.Error("in-place rewrite not picked up")
	}
	if _, ok := db.Lookup("ann@example.test"); ok {
		t.Error("ann still present after rewrite")
	}

	// By rename, the way Admin and editors write.
	tmp := filepath.Join(filepath.Dir(path), "new.toml")
	os.WriteFile(tmp, []byte(userFile(t, "carl@example.test", "dora@example.test")), 0o600)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Resolve("dora@example.test"); err != nil {
		t.Errorf("renamed file not picked up: %v", err)
	}

	// Deleted: an empty database.
	os.Remove(path)
	if len(db.Users()) != 0 {
		t.Errorf("after removal: %d users", len(db.Users()))
	}
}

func TestHotReloadBadFileKeepsOld(t *testing.T) {
	path := writeAccounts(t, userFile(t, "ann@example.test"))
	var logs bytes.Buffer
	db, err := Open(path, testDomains, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	db.checkEvery = 0
	os.WriteFile(path, []byte("[[user]\nbroken"), 0o600)
	for range 3 {
		if _, ok := db.Lookup("ann@example.test"); !ok {
			t.Fatal("a bad rewrite dropped the old users")
		}
	}
	if n := strings.Count(logs.String(), "cannot be loaded"); n != 1 {
		t.Errorf("bad version logged %d times, want once:\n%s", n, logs.String())
	}
	if err := db.Reload(); err == nil || !strings.Contains(err.Error(), "accounts.toml:2:") {
		t.Errorf("Reload of a bad file: %v", err)
	}
	os.WriteFile(path, []byte(userFile(t, "bob@example.test")), 0o600)
	if err := db.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, ok := db.Lookup("bob@example.test"); !ok {
		t.Error("fixed file not loaded")
	}
}

// TestReloadCheckedOncePerInterval checks that lookups stat the file only
// after checkEvery has passed.
func TestReloadCheckedOncePerInterval(t *testing.T) {
	path := writeAccounts(t, userFile(t, "ann@example.test"))
	db, err := Open(path, testDomains, nil)
	if err != nil {
		t.Fatal(err)
	}
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	db.now = func() time.Time { return time.Unix(0, now.Load()) }
	db.lastCheck.Store(now.Load())
	os.Rename(writeAccounts(t, userFile(t, "bob@example.test")), path)
	if _, ok := db.Lookup("bob@example.test"); ok {
		t.Error("reloaded before the interval")
	}
	now.Add(int64(time.Second))
	if _, ok := db.Lookup("bob@example.test"); !ok {
		t.Error("not reloaded after the interval")
	}
}

// TestConcurrentLookups runs lookups, resolutions and logins while an admin
// rewrites the file; run with -race.
func TestConcurrentLookups(t *testing.T) {
	path := filepath.Join(t.TempDir(), "accounts.toml")
	a := testAdmin(path)
	if err := a.AddUser("ann@example.test", "pw", 0); err != nil {
		t.Fatal(err)
	}
	if err := a.AddAlias("all@example.test", []string{"ann@example.test"}); err != nil {
		t.Fatal(err)
	}
	db := openTest(t, path)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, ok := db.Lookup("ann@example.test"); !ok {
					t.Error("ann vanished during rewrites")
					return
				}
				if res, err := db.Resolve("all@example.test"); err != nil || len(res.Users) == 0 {
					t.Errorf("Resolve during rewrites: %v %v", res, err)
					return
				}
				db.CanSendAs(db.Users()[0], "all@example.test")
				if _, err := db.Authenticate("ann@example.test", "pw"); err != nil {
					t.Errorf("Authenticate during rewrites: %v", err)
					return
				}
			}
		})
	}
	for i := range 20 {
		u := fmt.Sprintf("u%d@example.test", i)
		if err := a.AddUser(u, "pw", 0); err != nil {
			t.Fatal(err)
		}
		if err := a.AddAlias("all@example.test", []string{u}); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if res, err := db.Resolve("all@example.test"); err != nil || len(res.Users) != 21 {
		t.Errorf("final resolution: %d users, %v", len(res.Users), err)
	}
}
