package maildir

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func listNames(t *testing.T, u *User) []string {
	t.Helper()
	infos, err := u.ListMailboxes()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, i := range infos {
		out = append(out, i.Name)
	}
	return out
}

func info(t *testing.T, u *User, name string) MailboxInfo {
	t.Helper()
	infos, _ := u.ListMailboxes()
	for _, i := range infos {
		if i.Name == name {
			return i
		}
	}
	t.Fatalf("%s not listed", name)
	return MailboxInfo{}
}

func TestDefaultFolders(t *testing.T) {
	u, _ := testUser(t)
	infos, err := u.ListMailboxes()
	if err != nil {
		t.Fatal(err)
	}
	want := []MailboxInfo{
		{Name: "INBOX", Subscribed: true},
		{Name: "Archive", SpecialUse: `\Archive`, Subscribed: true},
		{Name: "Drafts", SpecialUse: `\Drafts`, Subscribed: true},
		{Name: "Junk", SpecialUse: `\Junk`, Subscribed: true},
		{Name: "Sent", SpecialUse: `\Sent`, Subscribed: true},
		{Name: "Trash", SpecialUse: `\Trash`, Subscribed: true},
	}
	if !slices.Equal(infos, want) {
		t.Errorf("ListMailboxes\n got %v\nwant %v", infos, want)
	}
	// INBOX is case-insensitive; the same Mailbox is shared.
	if mailbox(t, u, "inbox") != mailbox(t, u, "INBOX") {
		t.Error("inbox and INBOX differ")
	}
	if _, err := u.Mailbox("sent"); !errors.Is(err, ErrNoSuchMailbox) {
		t.Errorf("other names are case-sensitive: %v", err)
	}
}

func TestCreateRenameDeleteFolders(t *testing.T) {
	u, root := testUser(t)
	dir := filepath.Join(root, "example.test", "alice")
	if err := u.CreateMailbox("a/b/c", ""); err != nil {
		t.Fatal(err)
	}
	if err := u.CreateMailbox("a/b", ""); !errors.Is(err, ErrMailboxExists) {
		t.Errorf("create existing: %v", err)
	}
	if err := u.CreateMailbox("Inbox", ""); !errors.Is(err, ErrMailboxExists) {
		t.Errorf("create INBOX: %v", err)
	}
	if err := u.CreateMailbox("x", `\Bogus`); !errors.Is(err, ErrInvalidSpecialUse) {
		t.Errorf("bad special-use: %v", err)
	}
	if !info(t, u, "a").HasChildren || !info(t, u, "a/b").HasChildren || info(t, u, "a/b/c").HasChildren {
		t.Error("HasChildren wrong")
	}
	if err := u.DeleteMailbox("a"); !errors.Is(err, ErrHasChildren) {
		t.Errorf("delete with children: %v", err)
	}
	if err := u.DeleteMailbox("INBOX"); !errors.Is(err, ErrInboxDelete) {
		t.Errorf("delete INBOX: %v", err)
	}
	if err := u.DeleteMailbox("nope"); !errors.Is(err, ErrNoSuchMailbox) {
		t.Errorf("delete missing: %v", err)
	}
	// Dots and non-ASCII names, encoded on disk.
	for _, n := range []string{"v1.2", "Ünïcode/日本", "a&b"} {
		if err := u.CreateMailbox(n, ""); err != nil {
			t.Fatal(n, err)
		}
	}
	for _, d := range []string{".v1&AC4-2", ".&ANw-n&AO8-code.&ZeVnLA-", ".a&-b"} {
		if _, err := os.Stat(filepath.Join(dir, d, "cur")); err != nil {
			t.Error(err)
		}
	}
	// A loaded folder keeps working through a rename of its parent.
	if err := u.SetSubscribed("a/b/c", true); err != nil {
		t.Fatal(err)
	}
	c := mailbox(t, u, "a/b/c")
	if _, err := c.Append(strings.NewReader(body(1)), 0, testDate, nil); err != nil {
		t.Fatal(err)
	}
	if err := u.RenameMailbox("a", "x/y"); err != nil {
		t.Fatal(err)
	}
	names := listNames(t, u)
	for _, n := range []string{"x", "x/y", "x/y/b", "x/y/b/c"} {
		if !slices.Contains(names, n) {
			t.Errorf("%s missing after rename: %v", n, names)
		}
	}
	if slices.Contains(names, "a") || slices.Contains(names, "a/b") {
		t.Errorf("old names remain: %v", names)
	}
	if c.Name() != "x/y/b/c" || mailbox(t, u, "x/y/b/c") != c {
		t.Errorf("loaded mailbox not renamed: %s", c.Name())
	}
	if readAll(t, c, 1) != body(1) {
		t.Error("message lost in rename")
	}
	if !info(t, u, "x/y/b/c").Subscribed {
		t.Error("subscription not renamed")
	}
	if err := u.RenameMailbox("x", "x/y/z"); !errors.Is(err, ErrInvalidName) && !errors.Is(err, ErrMailboxExists) {
		t.Errorf("rename into itself: %v", err)
	}
	if err := u.RenameMailbox("Sent", "Trash"); !errors.Is(err, ErrMailboxExists) {
		t.Errorf("rename onto existing: %v", err)
	}
	// Sent keeps its role under a new name, and is not re-created.
	if err := u.RenameMailbox("Sent", "Sent Items"); err != nil {
		t.Fatal(err)
	}
	if use := info(t, u, "Sent Items").SpecialUse; use != `\Sent` {
		t.Errorf("renamed Sent has %q", use)
	}
	if slices.Contains(listNames(t, reopen(t, root)), "Sent") {
		t.Error("Sent re-created although Sent Items has its role")
	}
	// Delete a leaf: gone, and its loaded Mailbox answers ErrNoSuchMailbox.
	if err := u.DeleteMailbox("x/y/b/c"); err != nil {
		t.Fatal(err)
	}
	if err := c.Refresh(); !errors.Is(err, ErrNoSuchMailbox) {
		t.Errorf("Refresh of a deleted mailbox: %v", err)
	}
	if _, err := c.Append(strings.NewReader("x"), 0, testDate, nil); !errors.Is(err, ErrNoSuchMailbox) {
		t.Errorf("Append to a deleted mailbox: %v", err)
	}
	if _, err := u.Mailbox("x/y/b/c"); !errors.Is(err, ErrNoSuchMailbox) {
		t.Errorf("Mailbox of a deleted folder: %v", err)
	}
	if got := dirNames(t, filepath.Join(dir, "tmp")); len(got) != 0 {
		t.Errorf("tmp/ = %v", got)
	}
	// Custom special-use persists.
	if err := u.CreateMailbox("Receipts", `\archive`); err != nil {
		t.Fatal(err)
	}
	if use := info(t, reopen(t, root), "Receipts").SpecialUse; use != `\Archive` {
		t.Errorf("Receipts has %q", use)
	}
	if use := info(t, u, "Archive").SpecialUse; use != "" {
		t.Errorf("Archive still claims %q after Receipts took it", use)
	}
}

func TestRenameInbox(t *testing.T) {
	u, _ := testUser(t)
	for i := range 3 {
		deliver(t, u, body(i))
	}
	if err := u.CreateMailbox("INBOX/child", ""); err != nil {
		t.Fatal(err)
	}
	inbox := mailbox(t, u, "INBOX")
	var rec recorder
	defer inbox.Watch(rec.fn)()
	if err := u.RenameMailbox("inbox", "Old Mail"); err != nil {
		t.Fatal(err)
	}
	if got := uidsOf(inbox); len(got) != 0 {
		t.Errorf("INBOX still has %v", got)
	}
	if got := summary(rec.take()); got != "E3:3 E2:2 E1:1" {
		t.Errorf("INBOX changes %s", got)
	}
	old := mailbox(t, u, "Old Mail")
	if got := uidsOf(old); !slices.Equal(got, []uint32{1, 2, 3}) {
		t.Errorf("Old Mail UIDs %v", got)
	}
	if readAll(t, old, 3) != body(2) {
		t.Error("content")
	}
	names := listNames(t, u)
	if !slices.Contains(names, "INBOX/child") || !info(t, u, "INBOX").HasChildren {
		t.Errorf("INBOX child moved: %v", names)
	}
	deliver(t, u, body(9))
	if got := uidsOf(inbox); !slices.Equal(got, []uint32{4}) {
		t.Errorf("new INBOX mail UIDs %v", got)
	}
}

func TestSubscriptions(t *testing.T) {
	u, root := testUser(t)
	if err := u.SetSubscribed("Trash", false); err != nil {
		t.Fatal(err)
	}
	if err := u.SetSubscribed("Not/Yet", true); err != nil {
		t.Fatal(err)
	}
	if err := u.SetSubscribed("../x", true); !errors.Is(err, ErrInvalidName) {
		t.Errorf("hostile subscription: %v", err)
	}
	u2 := reopen(t, root)
	if info(t, u2, "Trash").Subscribed {
		t.Error("Trash still subscribed")
	}
	if subs := u2.Subscriptions(); !slices.Contains(subs, "Not/Yet") || slices.Contains(subs, "Trash") {
		t.Errorf("Subscriptions = %v", subs)
	}
	if err := u2.DeleteMailbox("Trash"); err != nil {
		t.Fatal(err)
	}
}
