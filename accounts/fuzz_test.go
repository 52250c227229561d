package accounts

import (
	"errors"
	"testing"

	"postie/envelope"
)

// FuzzResolve feeds network-supplied addresses to every lookup: none may
// panic, and each answer must be consistent with the others.
func FuzzResolve(f *testing.F) {
	for _, s := range []string{
		"ann@example.test", "ANN+x@EXAMPLE.TEST.", "sales@example.test", "loop1@example.test",
		"anything@other.test", "@other.test", "@", "", "+@example.test", "a@b@example.test",
		"ann@example.test\x00", "ann+@example.test", "\xff@example.test", "deep0@example.test",
		"x@[127.0.0.1]", "postmaster@example.test", "ann@ExAmPlE.tEsT..",
	} {
		f.Add(s)
	}
	db := resolveFixture(f)
	ann, _ := db.Lookup("ann@example.test")
	f.Fuzz(func(t *testing.T, addr string) {
		u, ok := db.Lookup(addr)
		res, err := db.Resolve(addr)
		if err != nil && !errors.Is(err, envelope.ErrUnknownUser) && !errors.Is(err, envelope.ErrRelayDenied) {
			t.Fatalf("Resolve(%q): unexpected error %v", addr, err)
		}
		if err == nil && len(res.Users)+len(res.Remote) == 0 {
			t.Fatalf("Resolve(%q): empty resolution without error", addr)
		}
		if ok && (err != nil || len(res.Users) != 1 || res.Users[0] != u) {
			t.Fatalf("Lookup(%q) = %v but Resolve = %v", addr, u.Address, res.Users)
		}
		db.CanSendAs(ann, addr)
		db.IsLocalDomain(addr)
		ipKey(addr)
		userKey(addr)
	})
}
