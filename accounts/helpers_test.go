package accounts

import (
	"os"
	"path/filepath"
	"testing"
)

// testParams make hashing nearly free in tests; production uses defaultParams.
var testParams = hashParams{time: 1, memory: 64, threads: 1, saltLen: 16, keyLen: 32}

var testDomains = []string{"example.test", "Other.TEST."}

// testHash returns a cheap hash of pw.
func testHash(t testing.TB, pw string) string {
	t.Helper()
	h, err := hashPassword(pw, testParams)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// writeAccounts writes an accounts file into a fresh directory.
func writeAccounts(t testing.TB, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "accounts.toml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// openTest opens path with cheap hashing and a reload check on every lookup.
func openTest(t testing.TB, path string) *DB {
	t.Helper()
	db, err := Open(path, testDomains, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.params = testParams
	db.checkEvery = 0
	return db
}

func testAdmin(path string) *Admin {
	return &Admin{Path: path, Domains: testDomains, params: testParams}
}
