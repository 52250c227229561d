package maildir

import "testing"

// A folder plays a role when it has the special use or lies under one that
// has; a role no folder has falls to the default folder's name.
func TestRoles(t *testing.T) {
	u, _ := testUser(t)
	for _, name := range []string{"Lists", "Lists/Spam", "Junkyard", "Junk/Sub"} {
		if err := u.CreateMailbox(name, ""); err != nil {
			t.Fatal(err)
		}
	}
	r, err := u.Roles()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, use string
		want      bool
	}{
		{"Junk", `\Junk`, true}, {"Junk/Sub", `\Junk`, true}, {"Junkyard", `\Junk`, false},
		{"junk", `\Junk`, false}, {"INBOX", `\Junk`, false}, {"Lists/Spam", `\Junk`, false},
		{"Trash", `\Trash`, true}, {"Sent", `\Trash`, false},
	} {
		if got := r.Has(c.name, c.use); got != c.want {
			t.Errorf("Has(%q, %s) = %v, want %v", c.name, c.use, got, c.want)
		}
	}
	// The user gives \Junk to another folder: that one (and what is under
	// it) is junk now, and the fallback by name no longer applies.
	if err := u.DeleteMailbox("Junk/Sub"); err != nil {
		t.Fatal(err)
	}
	if err := u.DeleteMailbox("Junk"); err != nil {
		t.Fatal(err)
	}
	if err := u.CreateMailbox("Spam", `\Junk`); err != nil {
		t.Fatal(err)
	}
	if err := u.CreateMailbox("Spam/Old", ""); err != nil {
		t.Fatal(err)
	}
	if err := u.CreateMailbox("Junk", ""); err != nil {
		t.Fatal(err)
	}
	r, _ = u.Roles()
	if !r.Has("Spam/Old", `\Junk`) || r.Has("Junk", `\Junk`) {
		t.Errorf("after \\Junk moved to Spam: Spam/Old %v, Junk %v", r.Has("Spam/Old", `\Junk`), r.Has("Junk", `\Junk`))
	}
}
