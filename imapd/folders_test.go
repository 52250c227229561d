package imapd

import (
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

func listNames(t *testing.T, c *imapclient.Client, ref, pattern string, o *imap.ListOptions) map[string]*imap.ListData {
	t.Helper()
	l, err := c.List(ref, pattern, o).Collect()
	if err != nil {
		t.Fatalf("list %q %q: %v", ref, pattern, err)
	}
	out := make(map[string]*imap.ListData)
	for _, d := range l {
		out[d.Mailbox] = d
	}
	return out
}

func hasAttr(d *imap.ListData, a imap.MailboxAttr) bool {
	for _, x := range d.Attrs {
		if strings.EqualFold(string(x), string(a)) {
			return true
		}
	}
	return false
}

func TestFolders(t *testing.T) {
	ts := newTestServer(t)
	c := ts.dial(nil)

	l := listNames(t, c, "", "*", nil)
	for name, use := range map[string]imap.MailboxAttr{"Sent": imap.MailboxAttrSent, "Drafts": imap.MailboxAttrDrafts,
		"Trash": imap.MailboxAttrTrash, "Junk": imap.MailboxAttrJunk, "Archive": imap.MailboxAttrArchive} {
		if d := l[name]; d == nil || !hasAttr(d, use) || !hasAttr(d, imap.MailboxAttrHasNoChildren) || d.Delim != '/' {
			t.Errorf("LIST %s: %+v", name, d)
		}
	}
	if l["INBOX"] == nil {
		t.Fatal("no INBOX")
	}

	// Nested folders, CREATE with USE, children attributes.
	if err := c.Create("Projects/2026/Q4", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Create("Old", &imap.CreateOptions{SpecialUse: []imap.MailboxAttr{imap.MailboxAttrArchive}}).Wait(); err != nil {
		t.Fatalf("CREATE USE: %v", err)
	}
	// \All and \Flagged promise virtual mailboxes (RFC 6154 §2), which Postie has not.
	for _, use := range []imap.MailboxAttr{imap.MailboxAttrAll, imap.MailboxAttrFlagged} {
		if err := c.Create("Everything", &imap.CreateOptions{SpecialUse: []imap.MailboxAttr{use}}).Wait(); imapCode(err) != "USEATTR" {
			t.Errorf("CREATE USE (%s): %v, want NO [USEATTR]", use, err)
		}
	}
	if err := c.Create("Ünïcode v1.2/", nil).Wait(); err != nil {
		t.Fatalf("create unicode name with trailing delimiter: %v", err)
	}
	l = listNames(t, c, "", "*", nil)
	if d := l["Projects"]; d == nil || !hasAttr(d, imap.MailboxAttrHasChildren) {
		t.Errorf("Projects: %+v", d)
	}
	if d := l["Projects/2026/Q4"]; d == nil || !hasAttr(d, imap.MailboxAttrHasNoChildren) {
		t.Errorf("Q4: %+v", d)
	}
	if d := l["Old"]; d == nil || !hasAttr(d, imap.MailboxAttrArchive) {
		t.Errorf("Old: %+v", d)
	}
	if d := l["Everything"]; d != nil {
		t.Errorf("Everything created: %+v", d)
	}
	if l["Ünïcode v1.2"] == nil {
		t.Errorf("unicode folder missing: %v", l)
	}
	if err := c.Create("Projects", nil).Wait(); imapCode(err) != imap.ResponseCodeAlreadyExists {
		t.Errorf("create existing: %v", err)
	}
	// % stops at the delimiter; the reference applies; "inbox" is INBOX.
	l = listNames(t, c, "", "Projects/%", nil)
	if len(l) != 1 || l["Projects/2026"] == nil {
		t.Errorf("LIST Projects/%%: %v", l)
	}
	l = listNames(t, c, "Projects/", "*", nil)
	if len(l) != 2 {
		t.Errorf("LIST with reference: %v", l)
	}
	if l = listNames(t, c, "", "inbox", nil); l["INBOX"] == nil {
		t.Errorf("LIST inbox: %v", l)
	}
	if l, err := c.List("", "", nil).Collect(); err != nil || len(l) != 1 || l[0].Delim != '/' {
		t.Errorf(`LIST "" "": %+v %v`, l, err)
	}

	// Names that would escape the user's tree are refused.
	for _, bad := range []string{"../x", "a/../../b", ".hidden", "a//b", "/abs", "x\x01y"} {
		if err := c.Create(bad, nil).Wait(); err == nil {
			t.Errorf("CREATE %q succeeded", bad)
		}
		if _, err := c.Select(bad, nil).Wait(); err == nil {
			t.Errorf("SELECT %q succeeded", bad)
		}
	}

	// Subscriptions persist and show in LSUB and LIST (SUBSCRIBED).
	if err := c.Subscribe("Projects/2026").Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Subscribe("Gone").Wait(); err != nil {
		t.Fatal(err)
	}
	l = listNames(t, c, "", "*", &imap.ListOptions{SelectSubscribed: true})
	if d := l["Projects/2026"]; d == nil || !hasAttr(d, imap.MailboxAttrSubscribed) {
		t.Errorf("LIST (SUBSCRIBED): %v", l)
	}
	if d := l["Gone"]; d == nil || !hasAttr(d, imap.MailboxAttrNonExistent) {
		t.Errorf("subscribed but missing: %+v", d)
	}
	l = listNames(t, c, "", "Projects", &imap.ListOptions{SelectSubscribed: true, SelectRecursiveMatch: true})
	if d := l["Projects"]; d == nil || d.ChildInfo == nil || !d.ChildInfo.Subscribed {
		t.Errorf("RECURSIVEMATCH: %+v", d)
	}
	raw := ts.raw(true)
	if lines := raw.cmd(`l1 LSUB "" "*"`); !strings.Contains(strings.Join(lines, ""), `"Projects/2026"`) {
		t.Errorf("LSUB: %q", lines)
	}
	if err := c.Unsubscribe("Gone").Wait(); err != nil {
		t.Fatal(err)
	}

	// LIST-EXTENDED return options: STATUS and SPECIAL-USE.
	ts.deliver(testMessage(1, "one"))
	ts.deliver(testMessage(2, "two"))
	lst, err := c.List("", "%", &imap.ListOptions{ReturnStatus: &imap.StatusOptions{NumMessages: true, NumUnseen: true,
		UIDNext: true, UIDValidity: true, Size: true, NumDeleted: true}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, d := range lst {
		if d.Mailbox == "INBOX" {
			found = true
			if d.Status == nil || *d.Status.NumMessages != 2 || *d.Status.NumUnseen != 2 || *d.Status.Size <= 0 || d.Status.UIDNext != 3 {
				t.Errorf("INBOX status in LIST: %+v", d.Status)
			}
		}
	}
	if !found {
		t.Error("INBOX not in LIST %")
	}
	l = listNames(t, c, "", "*", &imap.ListOptions{SelectSpecialUse: true, ReturnSpecialUse: true})
	// Old took \Archive from the default folder of that name
	if len(l) != 5 || l["INBOX"] != nil || l["Old"] == nil || l["Archive"] != nil {
		t.Errorf("LIST (SPECIAL-USE): %v", l)
	}

	// STATUS fills everything asked.
	st, err := c.Status("INBOX", &imap.StatusOptions{NumMessages: true, UIDNext: true, UIDValidity: true, NumUnseen: true,
		NumDeleted: true, Size: true, AppendLimit: true, DeletedStorage: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if *st.NumMessages != 2 || *st.NumUnseen != 2 || *st.NumDeleted != 0 || st.UIDValidity == 0 || *st.AppendLimit != 64<<20 {
		t.Errorf("STATUS %+v", st)
	}
	if lines := raw.cmd(`s1 STATUS INBOX (MESSAGES RECENT UNSEEN DELETED SIZE)`); !strings.Contains(lines[0], "RECENT 2") || !strings.HasPrefix(last(lines), "s1 OK") { // never selected: both recent
		t.Errorf("raw STATUS: %q", lines)
	}
	if _, err := c.Status("Nope", &imap.StatusOptions{NumMessages: true}).Wait(); imapCode(err) != imap.ResponseCodeNonExistent {
		t.Errorf("STATUS of a missing mailbox: %v", err)
	}

	// RENAME moves children; RENAME INBOX moves its messages and keeps INBOX.
	if err := c.Rename("Projects", "Work", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	l = listNames(t, c, "", "*", nil)
	if l["Work/2026/Q4"] == nil || l["Projects"] != nil {
		t.Errorf("after rename: %v", l)
	}
	if err := c.Rename("INBOX", "Old mail", nil).Wait(); err != nil {
		t.Fatalf("rename INBOX: %v", err)
	}
	sd := mustSelect(t, c, "Old mail", true)
	if sd.NumMessages != 2 {
		t.Errorf("renamed INBOX has %d messages", sd.NumMessages)
	}
	if sd = mustSelect(t, c, "INBOX", false); sd.NumMessages != 0 {
		t.Errorf("INBOX after rename has %d messages", sd.NumMessages)
	}

	// DELETE: not INBOX, not the selected mailbox, not one with children.
	if err := c.Delete("INBOX").Wait(); err == nil {
		t.Error("deleted INBOX")
	}
	if err := c.Delete("Work").Wait(); imapCode(err) != imap.ResponseCodeHasChildren {
		t.Errorf("delete with children: %v", err)
	}
	if err := c.Delete("Work/2026/Q4").Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete("Work/2026/Q4").Wait(); imapCode(err) != imap.ResponseCodeNonExistent {
		t.Errorf("delete twice: %v", err)
	}

	// Subscriptions survive a restart of the server.
	ts2 := startTestServer(t, ts.dir)
	c2 := ts2.dial(nil)
	l = listNames(t, c2, "", "*", &imap.ListOptions{SelectSubscribed: true})
	if l["Work/2026"] == nil {
		t.Errorf("subscription lost (or not renamed) after restart: %v", l)
	}
}

func TestSameMailboxFoldsInboxLikeTheStore(t *testing.T) {
	for _, c := range []struct {
		a, b string
		same bool
	}{
		{"INBOX", "inbox", true}, {"INBOX/Sub", "inbox/Sub", true}, {"Inbox/sub", "INBOX/Sub", false},
		{"Sent", "sent", false}, {"INBOXES", "inboxes", false}, {"Archive", "Archive", true},
	} {
		if got := sameMailbox(c.a, c.b); got != c.same {
			t.Errorf("sameMailbox(%q, %q) = %v, want %v", c.a, c.b, got, c.same)
		}
	}
}

// STATUS of folders nobody has selected (Thunderbird polls every folder)
// answers from the store and leaves no per-mailbox entry behind; a
// selected folder keeps its one entry.
func TestStatusLeavesNoEntry(t *testing.T) {
	ts := newTestServer(t)
	ts.deliver(testMessage(1, "x"))
	r := ts.raw(true)
	for _, box := range []string{"Sent", "Drafts", "Trash", "Junk", "Archive"} {
		if got := last(r.cmd("s STATUS " + box + " (MESSAGES UNSEEN)")); !strings.HasPrefix(got, "s OK") {
			t.Fatalf("STATUS %s: %q", box, got)
		}
	}
	lines := r.cmd("s STATUS INBOX (MESSAGES)")
	if !strings.Contains(strings.Join(lines, "\n"), "MESSAGES 1") {
		t.Errorf("STATUS INBOX: %q", lines)
	}
	entries := func() int {
		ts.srv.boxes.mu.Lock()
		defer ts.srv.boxes.mu.Unlock()
		return len(ts.srv.boxes.boxes)
	}
	if n := entries(); n != 0 {
		t.Errorf("%d registry entries after STATUS only, want 0", n)
	}
	r.cmd("x SELECT INBOX")
	r.cmd("y STATUS INBOX (MESSAGES)")
	if n := entries(); n != 1 {
		t.Errorf("%d registry entries with INBOX selected, want 1", n)
	}
}
