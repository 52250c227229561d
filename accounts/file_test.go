package accounts

import (
	"bytes"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func TestOpenMissingFileIsEmpty(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "accounts.toml"), testDomains, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(db.Users()) != 0 {
		t.Errorf("users = %v", db.Users())
	}
	if _, err := db.Resolve("ann@example.test"); err == nil {
		t.Error("resolved a user in an empty database")
	}
}

func TestOpenBadFileNamesLine(t *testing.T) {
	h := testHash(t, "pw")
	tests := []struct {
		name, content, want string
	}{
		{"syntax", "[[user]]\naddress = \"ann@example.test\npassword = 1\n", ":2: strings cannot contain newlines"},
		{"type", "[[user]]\naddress = \"ann@example.test\"\nquota = \"lots\"\n", "line 3 (last key \"user.quota\"): incompatible types"},
		{"unknown key", "[[user]]\naddress = \"ann@example.test\"\npasword = \"x\"\n", `:3: unknown key "user.pasword"`},
		{"bad address", "[[user]]\naddress = \"ann@example.test\"\npassword = \"" + h + "\"\n\n[[user]]\naddress = \"b b@example.test\"\npassword = \"" + h + "\"\n", ":5: user address"},
		{"plain password", "[[user]]\naddress = \"ann@example.test\"\npassword = \"secret\"\n", ":1: user ann@example.test: password is not"},
		{"no password", "[[user]]\naddress = \"ann@example.test\"\n", ":1: user ann@example.test: empty password hash"},
		{"tag in user", "[[user]]\naddress = \"ann+x@example.test\"\npassword = \"" + h + "\"\n", "reserved for +tags"},
		{"duplicate user", "[[user]]\naddress = \"ann@example.test\"\npassword = \"" + h + "\"\n[[user]]\naddress = \"ANN@example.test\"\npassword = \"" + h + "\"\n", ":4: user ann@example.test appears twice"},
		{"negative quota", "[[user]]\naddress = \"ann@example.test\"\npassword = \"" + h + "\"\nquota = -1\n", "negative quota"},
		{"alias no targets", "# c\n[[alias]]\naddress = \"x@example.test\"\ntargets = []\n", ":2: alias x@example.test has no targets"},
		{"alias bad target", "[[alias]]\naddress = \"x@example.test\"\ntargets = [\"nope\"]\n", "target"},
		{"alias self", "[[alias]]\naddress = \"x@example.test\"\ntargets = [\"X@example.test\"]\n", "targets itself"},
		{"alias bad catch-all", "[[alias]]\naddress = \"@exa mple.test\"\ntargets = [\"a@example.test\"]\n", "catch-all"},
		{"inline tables", "user = [{address = \"bad\", password = \"" + h + "\"}]\n", "user #1"},
		{"bad argon2", "[[user]]\naddress = \"ann@example.test\"\npassword = \"$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5\"\n", "m=99999999 out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeAccounts(t, tt.content)
			_, err := Open(path, testDomains, nil)
			if err == nil {
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not contain %q and the path", err, tt.want)
			}
		})
	}
}

func TestOpenAcceptsBcryptAndArgon2(t *testing.T) {
	bh, err := bcrypt.GenerateFromPassword([]byte("bcrypt-pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	path := writeAccounts(t, `
[[user]]
address = "ann@example.test"
password = '`+string(bh)+`'
quota = 1000
max_messages_per_hour = 50

[[user]]
address = "bob@example.test"
password = "`+testHash(t, "argon-pw")+`"
`)
	db := openTest(t, path)
	ann, err := db.Authenticate("ann@example.test", "bcrypt-pw")
	if err != nil {
		t.Fatalf("bcrypt user: %v", err)
	}
	if ann.Quota != 1000 || ann.MaxMessagesPerHour != 50 {
		t.Errorf("ann = %+v", ann)
	}
	if _, err := db.Authenticate("bob@example.test", "argon-pw"); err != nil {
		t.Errorf("argon2 user: %v", err)
	}
}

func TestLoadWarnings(t *testing.T) {
	h := testHash(t, "pw")
	path := writeAccounts(t, `
[[user]]
address = "ann@example.test"
password = "`+h+`"
[[user]]
address = "zed@gone.test"
password = "`+h+`"
[[alias]]
address = "a@example.test"
targets = ["b@example.test"]
[[alias]]
address = "b@example.test"
targets = ["a@example.test", "ann@example.test"]
[[alias]]
address = "dead@example.test"
targets = ["nobody@example.test"]
[[alias]]
address = "ann@example.test"
targets = ["b@example.test"]
`)
	var logs bytes.Buffer
	db, err := Open(path, testDomains, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"user ignored: domain not in config",
		"a@example.test leads back to itself",
		"target nobody@example.test of dead@example.test is no user or alias",
		"alias is shadowed by a user",
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
	if _, ok := db.Lookup("zed@gone.test"); ok {
		t.Error("user of a foreign domain was loaded")
	}
	if res, err := db.Resolve("a@example.test"); err != nil || len(res.Users) != 1 {
		t.Errorf("loop with an exit: %v %v", res, err)
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	fd := &fileData{
		Users: []fileUser{{Address: "ann@example.test", Password: testHash(t, "pw"), Quota: 5, MaxMessagesPerHour: 7}},
		Aliases: []fileAlias{
			{Address: "@example.test", Targets: []string{"ann@example.test"}},
			{Address: "x@example.test", Targets: []string{"Ann@example.test", "z'q@remote.test", "o#k@remote.test"}},
		},
	}
	data := encodeFile(fd)
	got, err := decodeFile("test", data)
	if err != nil {
		t.Fatalf("decode of encoded file: %v\n%s", err, data)
	}
	if len(got.Users) != 1 || got.Users[0] != fd.Users[0] || len(got.Aliases) != 2 ||
		strings.Join(got.Aliases[1].Targets, ",") != strings.Join(fd.Aliases[1].Targets, ",") {
		t.Errorf("round trip:\n%+v\n%+v", fd, got)
	}
	if q := quote("a\"b\\c\x01"); q != `"a\"b\\c\u0001"` {
		t.Errorf("quote = %s", q)
	}
}
