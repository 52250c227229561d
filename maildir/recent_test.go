package maildir

import (
	"os"
	"path/filepath"
	"testing"
)

// The \Recent claim is one boundary per folder, shared by every process: a second Store (another
// process) sees the first one's claim, claims only what came after it, and looking claims nothing.
func TestClaimRecent(t *testing.T) {
	u, root := testUser(t)
	deliver(t, u, body(1))
	deliver(t, u, body(2))
	m := mailbox(t, u, "INBOX")
	if err := m.Refresh(); err != nil {
		t.Fatal(err)
	}
	if from, err := m.RecentFrom(); err != nil || from != 1 {
		t.Fatalf("RecentFrom of a folder never claimed: %d, %v", from, err)
	}
	if _, err := os.Stat(filepath.Join(root, "example.test", "alice", recentFile)); err == nil {
		t.Error("looking made the claim file")
	}
	if from, err := m.ClaimRecent(m.UIDNext()); err != nil || from != 1 {
		t.Fatalf("first claim: from %d, %v", from, err)
	}

	other := mailbox(t, reopen(t, root), "INBOX")
	if err := other.Refresh(); err != nil {
		t.Fatal(err)
	}
	if from, err := other.ClaimRecent(other.UIDNext()); err != nil || from != 3 {
		t.Fatalf("second process, nothing new: from %d, %v (want 3: nothing to claim)", from, err)
	}
	deliver(t, u, body(3))
	if err := other.Refresh(); err != nil {
		t.Fatal(err)
	}
	if from, err := other.RecentFrom(); err != nil || from != 3 {
		t.Fatalf("RecentFrom after a delivery: %d, %v", from, err)
	}
	if from, err := other.ClaimRecent(other.UIDNext()); err != nil || from != 3 || other.UIDNext() != 4 {
		t.Fatalf("second process claims the new message: from %d, %v", from, err)
	}
	if from, err := m.ClaimRecent(4); err != nil || from != 4 {
		t.Fatalf("first process after that: from %d, %v", from, err)
	}
	// A claim never moves the boundary down.
	if from, err := m.ClaimRecent(2); err != nil || from != 4 {
		t.Fatalf("claim below: from %d, %v", from, err)
	}
	if from, _ := m.RecentFrom(); from != 4 {
		t.Fatalf("boundary moved down to %d", from)
	}
}
