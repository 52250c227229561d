package accounts

import (
	"context"
	"fmt"
	"testing"
)

func BenchmarkLookup(b *testing.B) {
	db := resolveFixture(b)
	db.checkEvery = defaultCheckEvery
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, ok := db.Lookup("Ann+tag@example.test"); !ok {
				b.Fatal("not found")
			}
		}
	})
}

func BenchmarkResolveAlias(b *testing.B) {
	db := resolveFixture(b)
	db.checkEvery = defaultCheckEvery
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := db.Resolve("mixed@example.test"); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkCheckPassword measures one verification at the production cost.
func BenchmarkCheckPassword(b *testing.B) {
	h, err := HashPassword("correct horse")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if !CheckPassword(h, "correct horse") {
			b.Fatal("mismatch")
		}
	}
}

// BenchmarkLoginUnknownUser is the cost of a refused login for a user who
// does not exist, at production cost (it should match CheckPassword).
func BenchmarkLoginUnknownUser(b *testing.B) {
	db := resolveFixture(b)
	db.params = defaultParams()
	a := &Authenticator{DB: db, Throttle: NewThrottle()}
	for i := 0; b.Loop(); i++ {
		// A new address and name each time, so the throttle adds no delay.
		ip, user := fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), fmt.Sprintf("nobody%d@example.test", i)
		if _, err := a.Login(context.Background(), ip, "imap", user, "x"); err != ErrAuthFailed {
			b.Fatal(err)
		}
	}
}
