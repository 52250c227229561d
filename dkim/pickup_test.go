package dkim

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A key made after the Signer was loaded (by `postie dkim keygen` while
// the server runs) is used from the next message on; a replaced key
// replaces it; a removed one stops signing.
func TestSignerPicksUpKeyWithoutReload(t *testing.T) {
	dir := t.TempDir()
	s, err := LoadSigner(dir, "postie", []string{"example.test"})
	if err != nil {
		t.Fatal(err)
	}
	if s.Has("example.test") {
		t.Fatal("a key before any exists")
	}
	name, value, err := KeyGen(dir, "example.test", "postie")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if signed, err := sign(s, &out, strings.NewReader(testMessage), "example.test"); err != nil || !signed {
		t.Fatalf("after keygen: signed %v, %v", signed, err)
	}
	if v := verify(t, out.Bytes(), name, value); v.Err != nil {
		t.Fatalf("signature with the new key: %v", v.Err)
	}

	// Rotation by hand: the file is replaced by another key.
	other := t.TempDir()
	name2, value2, err := KeyGen(other, "example.test", "postie")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "example.test.postie.key")
	if err := os.Rename(filepath.Join(other, "example.test.postie.key"), path); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if signed, err := sign(s, &out, strings.NewReader(testMessage), "example.test"); err != nil || !signed {
		t.Fatalf("after replacement: signed %v, %v", signed, err)
	}
	if v := verify(t, out.Bytes(), name2, value2); v.Err != nil {
		t.Fatalf("signed with the old key after replacement: %v", v.Err)
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if s.Has("example.test") {
		t.Error("still signing after the key file was removed")
	}
}

// A key file that turns unparsable keeps the key read before in use.
func TestSignerKeepsKeyWhenFileTurnsBad(t *testing.T) {
	dir := t.TempDir()
	s := keyedSigner(t, dir)
	if err := os.WriteFile(filepath.Join(dir, "example.test.postie.key"), []byte("half a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if !s.Has("example.test") {
		t.Error("a bad key file dropped the good key read before")
	}
}

func TestEnsureKeys(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dkim")
	if _, _, err := KeyGen(dir, "old.test", "postie"); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, "old.test.postie.key"))
	made, err := EnsureKeys(dir, "postie", []string{"old.test", "New.TEST"})
	if err != nil {
		t.Fatal(err)
	}
	if len(made) != 1 || made[0].Domain != "new.test" || made[0].TXTName != "postie._domainkey.new.test" ||
		!strings.HasPrefix(made[0].TXTValue, "v=DKIM1; k=rsa; p=") {
		t.Fatalf("made = %+v, want one key for new.test", made)
	}
	if n, v, err := Record(dir, "new.test", "postie"); err != nil || n != made[0].TXTName || v != made[0].TXTValue {
		t.Errorf("the record returned is not the stored key's: %v", err)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "old.test.postie.key")); !bytes.Equal(before, after) {
		t.Error("an existing key was replaced")
	}
	if made, err := EnsureKeys(dir, "postie", []string{"old.test", "new.test"}); err != nil || len(made) != 0 {
		t.Errorf("second EnsureKeys made %v, %v", made, err)
	}
}
