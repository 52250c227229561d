package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestForks runs the own tests of the libraries forked into third_party:
// they are separate modules, so "go test ./..." from the root would not
// reach them. A change we make there must keep upstream's tests passing.
func TestForks(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	for _, dir := range []string{"go-smtp", "go-imap"} {
		t.Run(dir, func(t *testing.T) {
			cmd := exec.Command("go", "test", "-count=1", "./...")
			cmd.Dir = filepath.Join("..", "third_party", dir)
			cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("go test in third_party/%s: %v\n%s", dir, err, out)
			}
		})
	}
}
