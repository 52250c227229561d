package accounts

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"postie/envelope"
)

// resolveFixture builds a file with users and aliases covering every rule.
func resolveFixture(t testing.TB) *DB {
	t.Helper()
	h := testHash(t, "pw")
	var b strings.Builder
	for _, u := range []string{"ann@example.test", "bob@example.test", "carl@other.test", "dora@other.test"} {
		fmt.Fprintf(&b, "[[user]]\naddress = %q\npassword = %q\n\n", u, h)
	}
	aliases := [][2]string{
		{"sales@example.test", `"ann@example.test"`},
		{"Team@Example.Test", `"ann@example.test", "Bob@EXAMPLE.test", "ann+x@example.test"`},
		{"out@example.test", `"Someone@Elsewhere.TEST"`},
		{"mixed@example.test", `"bob@example.test", "far@remote.test", "FAR@remote.test", "sales@example.test"`},
		{"chain1@example.test", `"chain2@example.test"`},
		{"chain2@example.test", `"chain3@example.test"`},
		{"chain3@example.test", `"bob@example.test", "out@example.test"`},
		{"loop1@example.test", `"loop2@example.test"`},
		{"loop2@example.test", `"loop1@example.test"`},
		{"loopy@example.test", `"loopy2@example.test", "ann@example.test"`},
		{"loopy2@example.test", `"loopy@example.test"`},
		{"list+urgent@example.test", `"bob@example.test"`},
		{"list@example.test", `"ann@example.test"`},
		{"dead@example.test", `"nobody@example.test"`},
		{"@other.test", `"carl@other.test"`},
		{"viacatch@example.test", `"whoever@other.test"`},
		{"diamond@example.test", `"sales@example.test", "team@example.test"`},
	}
	for i := 0; i < 12; i++ { // deep0 → deep1 → ... → deep11 → ann: deeper than maxAliasDepth
		aliases = append(aliases, [2]string{fmt.Sprintf("deep%d@example.test", i), fmt.Sprintf(`"deep%d@example.test"`, i+1)})
	}
	aliases = append(aliases, [2]string{"deep12@example.test", `"ann@example.test"`})
	for _, a := range aliases {
		fmt.Fprintf(&b, "[[alias]]\naddress = %q\ntargets = [%s]\n\n", a[0], a[1])
	}
	return openTest(t, writeAccounts(t, b.String()))
}

func TestResolve(t *testing.T) {
	db := resolveFixture(t)
	tests := []struct {
		addr   string
		users  []string
		remote []string
		err    error
	}{
		{addr: "ann@example.test", users: []string{"ann@example.test"}},
		{addr: "ANN@Example.TEST", users: []string{"ann@example.test"}},
		{addr: "ann@example.test.", users: []string{"ann@example.test"}},
		{addr: "ann+lists@example.test", users: []string{"ann@example.test"}},
		{addr: "Ann+Lists+More@example.test", users: []string{"ann@example.test"}},
		{addr: "sales@example.test", users: []string{"ann@example.test"}},
		{addr: "sales+promo@example.test", users: []string{"ann@example.test"}},
		{addr: "team@example.test", users: []string{"ann@example.test", "bob@example.test"}},
		{addr: "out@example.test", remote: []string{"Someone@elsewhere.test"}},
		{addr: "mixed@example.test", users: []string{"bob@example.test", "ann@example.test"}, remote: []string{"far@remote.test"}},
		{addr: "chain1@example.test", users: []string{"bob@example.test"}, remote: []string{"Someone@elsewhere.test"}},
		{addr: "loop1@example.test", err: envelope.ErrUnknownUser},
		{addr: "loopy@example.test", users: []string{"ann@example.test"}},
		{addr: "list+urgent@example.test", users: []string{"bob@example.test"}}, // full address first
		{addr: "list+other@example.test", users: []string{"ann@example.test"}},  // then tag-stripped
		{addr: "dead@example.test", err: envelope.ErrUnknownUser},
		{addr: "carl@other.test", users: []string{"carl@other.test"}},
		{addr: "dora+x@OTHER.test", users: []string{"dora@other.test"}}, // a user beats the catch-all
		{addr: "anything@other.test", users: []string{"carl@other.test"}},
		{addr: "viacatch@example.test", users: []string{"carl@other.test"}},
		{addr: "diamond@example.test", users: []string{"ann@example.test", "bob@example.test"}},
		{addr: "deep0@example.test", err: envelope.ErrUnknownUser},
		{addr: "deep3@example.test", users: []string{"ann@example.test"}},
		{addr: "nobody@example.test", err: envelope.ErrUnknownUser},
		{addr: "postmaster@example.test", err: envelope.ErrUnknownUser},
		{addr: "ann@elsewhere.test", err: envelope.ErrRelayDenied},
		{addr: "ann", err: envelope.ErrRelayDenied},
		{addr: "", err: envelope.ErrRelayDenied},
		{addr: "a b@example.test", err: envelope.ErrUnknownUser},
	}
	for _, tt := range tests {
		res, err := db.Resolve(tt.addr)
		if !errors.Is(err, tt.err) {
			t.Errorf("Resolve(%q) error = %v, want %v", tt.addr, err, tt.err)
			continue
		}
		var users []string
		for _, u := range res.Users {
			users = append(users, u.Address)
		}
		if !slices.Equal(users, tt.users) || !slices.Equal(res.Remote, tt.remote) {
			t.Errorf("Resolve(%q) = users %v remote %v, want %v %v", tt.addr, users, res.Remote, tt.users, tt.remote)
		}
	}
}

func TestLookup(t *testing.T) {
	db := resolveFixture(t)
	for addr, want := range map[string]string{
		"ann@example.test":       "ann@example.test",
		"ANN+tag@EXAMPLE.TEST.":  "ann@example.test",
		"carl@other.test":        "carl@other.test",
		"sales@example.test":     "", // an alias is not a user
		"ann@elsewhere.test":     "",
		"nobody@example.test":    "",
		"@example.test":          "",
		"ann":                    "",
		"+ann@example.test":      "",
		"ann+@example.test":      "ann@example.test",
		"ann@@example.test":      "",
		"\x00ann@example.test":   "",
		"ann@example.test\x00":   "",
		strings.Repeat("a", 300): "",
	} {
		u, ok := db.Lookup(addr)
		got := ""
		if ok {
			got = u.Address
		}
		if got != want {
			t.Errorf("Lookup(%q) = %q, want %q", addr, got, want)
		}
	}
	u, _ := db.Lookup("Carl@Other.Test")
	if u.Local != "carl" || u.Domain != "other.test" {
		t.Errorf("user parts = %q %q", u.Local, u.Domain)
	}
}

func TestIsLocalDomain(t *testing.T) {
	db := openTest(t, writeAccounts(t, ""))
	for d, want := range map[string]bool{
		"example.test": true, "EXAMPLE.test": true, "example.test.": true, "other.test": true,
		"sub.example.test": false, "test": false, "": false, "elsewhere.test": false,
	} {
		if got := db.IsLocalDomain(d); got != want {
			t.Errorf("IsLocalDomain(%q) = %v", d, got)
		}
	}
}

func TestCanSendAs(t *testing.T) {
	db := resolveFixture(t)
	ann, _ := db.Lookup("ann@example.test")
	bob, _ := db.Lookup("bob@example.test")
	carl, _ := db.Lookup("carl@other.test")
	tests := []struct {
		u    *User
		addr string
		want bool
	}{
		{ann, "ann@example.test", true},
		{ann, "ANN@example.TEST", true},
		{ann, "ann+news@example.test", true},
		{ann, "bob@example.test", false},
		{bob, "ann+x@example.test", false},
		{ann, "sales@example.test", true},
		{ann, "Sales+x@example.test", true},
		{bob, "sales@example.test", false},
		{ann, "team@example.test", true},
		{bob, "team@example.test", true},
		{bob, "chain1@example.test", true}, // through a chain of aliases
		{ann, "chain1@example.test", false},
		{bob, "list+urgent@example.test", true},
		{ann, "list+urgent@example.test", false},
		{carl, "whatever@other.test", false}, // the catch-all does not count
		{carl, "viacatch@example.test", true},
		{ann, "out@example.test", false},
		{ann, "nobody@example.test", false},
		{ann, "ann@elsewhere.test", false},
		{ann, "", false},
		{nil, "ann@example.test", false},
		{&User{Address: "ghost@example.test"}, "ghost@example.test", false},
	}
	for _, tt := range tests {
		name := "<nil>"
		if tt.u != nil {
			name = tt.u.Address
		}
		if got := db.CanSendAs(tt.u, tt.addr); got != tt.want {
			t.Errorf("CanSendAs(%s, %q) = %v, want %v", name, tt.addr, got, tt.want)
		}
	}
}

func TestUsersSorted(t *testing.T) {
	db := resolveFixture(t)
	var got []string
	for _, u := range db.Users() {
		got = append(got, u.Address)
	}
	want := []string{"ann@example.test", "bob@example.test", "carl@other.test", "dora@other.test"}
	if !slices.Equal(got, want) {
		t.Errorf("Users() = %v, want %v", got, want)
	}
}
