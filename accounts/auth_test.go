package accounts

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

func authFixture(t testing.TB) *DB {
	t.Helper()
	return openTest(t, writeAccounts(t, `
[[user]]
address = "ann@example.test"
password = "`+testHash(t, "Secret pw")+`"
[[alias]]
address = "sales@example.test"
targets = ["ann@example.test"]
`))
}

func TestAuthenticate(t *testing.T) {
	db := authFixture(t)
	tests := []struct {
		user, pw string
		ok       bool
	}{
		{"ann@example.test", "Secret pw", true},
		{"ANN@Example.Test", "Secret pw", true},
		{"ann@example.test.", "Secret pw", true},
		{"ann@example.test", "secret pw", false},
		{"ann@example.test", "", false},
		{"ann@example.test", "Secret pw ", false},
		{"ann+tag@example.test", "Secret pw", false},
		{"ann", "Secret pw", false},
		{"sales@example.test", "Secret pw", false}, // aliases cannot log in
		{"nobody@example.test", "Secret pw", false},
		{"", "", false},
		{"ann@example.test\x00", "Secret pw", false},
	}
	for _, tt := range tests {
		u, err := db.Authenticate(tt.user, tt.pw)
		if tt.ok {
			if err != nil || u == nil || u.Address != "ann@example.test" {
				t.Errorf("Authenticate(%q, %q) = %v, %v; want ann", tt.user, tt.pw, u, err)
			}
		} else if err != ErrAuthFailed || u != nil {
			t.Errorf("Authenticate(%q, %q) = %v, %v; want ErrAuthFailed", tt.user, tt.pw, u, err)
		}
	}
}

// TestAuthenticateUnknownUserCostsAHash checks that an unknown user is
// refused only after a hash verification as costly as a real one, so the
// time taken does not tell who exists. Minimums over several runs make the
// comparison robust against a loaded machine.
func TestAuthenticateUnknownUserCostsAHash(t *testing.T) {
	if testing.Short() {
		t.Skip("timing")
	}
	p := hashParams{time: 1, memory: 4 * 1024, threads: 1, saltLen: 16, keyLen: 32}
	h, err := hashPassword("pw", p)
	if err != nil {
		t.Fatal(err)
	}
	db := openTest(t, writeAccounts(t, "[[user]]\naddress = 'ann@example.test'\npassword = '"+h+"'\n"))
	db.params = p
	fastest := func(user string) time.Duration {
		best := time.Hour
		for range 7 {
			start := time.Now()
			if _, err := db.Authenticate(user, "wrong"); err != ErrAuthFailed {
				t.Fatal(err)
			}
			best = min(best, time.Since(start))
		}
		return best
	}
	known, unknown, tagged := fastest("ann@example.test"), fastest("nobody@example.test"), fastest("ann+x@example.test")
	t.Logf("wrong password %v, unknown user %v, +tag %v", known, unknown, tagged)
	if unknown < known/3 || tagged < known/3 {
		t.Errorf("unknown user refused in %v, +tag in %v, a wrong password in %v: existence leaks", unknown, tagged, known)
	}
}

func TestHashAndCheckPassword(t *testing.T) {
	h, err := HashPassword("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=7168,t=5,p=1$") {
		t.Errorf("hash %q lacks the production parameters", h)
	}
	if !CheckPassword(h, "correct horse") || CheckPassword(h, "correct horsE") {
		t.Error("argon2id check wrong")
	}
	if h2, _ := HashPassword("correct horse"); h2 == h {
		t.Error("two hashes of one password are equal: no salt")
	}
	bh, _ := bcrypt.GenerateFromPassword([]byte("bcrypt pw"), bcrypt.MinCost)
	if !CheckPassword(string(bh), "bcrypt pw") || CheckPassword(string(bh), "bcrypt pW") {
		t.Error("bcrypt check wrong")
	}
	for _, bad := range []string{"", "plain", "$argon2id$", "$argon2id$v=19$m=64,t=1,p=1$!!$!!", "$2a$", "$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5"} {
		if CheckPassword(bad, "") || CheckPassword(bad, "plain") {
			t.Errorf("malformed hash %q matched", bad)
		}
	}
	if CheckPassword(h, strings.Repeat("x", maxPasswordLen+1)) {
		t.Error("overlong password accepted")
	}
	if _, err := HashPassword(""); err == nil {
		t.Error("empty password hashed")
	}
}

func TestLoginLogsFailures(t *testing.T) {
	db := authFixture(t)
	var logs bytes.Buffer
	a := &Authenticator{DB: db, Throttle: fakeThrottle(t, nil), Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	ctx := context.Background()
	if u, err := a.Login(ctx, "192.0.2.1", "imap", "Ann@example.test", "Secret pw"); err != nil || u.Address != "ann@example.test" {
		t.Fatalf("Login = %v, %v", u, err)
	}
	if logs.Len() != 0 {
		t.Errorf("success logged: %s", logs.String())
	}
	if _, err := a.Login(ctx, "192.0.2.1", "pop3", "ann@example.test", "guess-1234"); !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("wrong password: %v", err)
	}
	line := logs.String()
	for _, want := range []string{"login failed", "service=pop3", "remote=192.0.2.1", "username=ann@example.test"} {
		if !strings.Contains(line, want) {
			t.Errorf("log %q lacks %q", line, want)
		}
	}
	if strings.Contains(line, "guess-1234") {
		t.Errorf("password logged: %s", line)
	}
}

func TestLoginNilThrottleAndLogger(t *testing.T) {
	a := &Authenticator{DB: authFixture(t)}
	if _, err := a.Login(context.Background(), "192.0.2.1", "smtp", "ann@example.test", "nope"); !errors.Is(err, ErrAuthFailed) {
		t.Errorf("Login = %v", err)
	}
	if _, err := a.Login(context.Background(), "192.0.2.1", "smtp", "ann@example.test", "Secret pw"); err != nil {
		t.Errorf("Login = %v", err)
	}
}
