package maildir

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

var testDate = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

func TestValidateMailboxName(t *testing.T) {
	bad := []string{
		"", "/", "a/", "/a", "a//b", "..", "../x", "a/../../b", "x/..", ".hidden", "a/.b",
		"\x00", "a\x00b", "a\nb", "a\rb", "tab\t", "\x7f", "\u0085", "a*", "%", "\xff\xfe",
		strings.Repeat("a", 201), strings.Repeat("ü", 100), strings.Repeat("ab/", 70) + "c",
	}
	for _, n := range bad {
		if err := ValidateMailboxName(n); !errors.Is(err, ErrInvalidName) {
			t.Errorf("ValidateMailboxName(%q) = %v, want ErrInvalidName", n, err)
		}
	}
	good := []string{"INBOX", "inbox", "Sent Items", "v1.2", "a/b/c", "Ünïcode", "a&b", "[Gmail]/All Mail", "x~y", `back\slash`}
	for _, n := range good {
		if err := ValidateMailboxName(n); err != nil {
			t.Errorf("ValidateMailboxName(%q) = %v", n, err)
		}
	}
}

func TestHostileNamesStayInside(t *testing.T) {
	u, _ := testUser(t)
	for _, n := range []string{"../x", "a/../../b", "\x00", ".hidden", "a//b", strings.Repeat("x", 300), "../../../etc"} {
		if err := u.CreateMailbox(n, ""); !errors.Is(err, ErrInvalidName) {
			t.Errorf("CreateMailbox(%q) = %v", n, err)
		}
		if _, err := u.Mailbox(n); !errors.Is(err, ErrInvalidName) {
			t.Errorf("Mailbox(%q) = %v", n, err)
		}
		if err := u.RenameMailbox("Junk", n); !errors.Is(err, ErrInvalidName) {
			t.Errorf("RenameMailbox to %q = %v", n, err)
		}
	}
	for _, n := range []string{"", ".", "..", "a/b", "../x", "a\x00", ".x", "a b"} {
		if err := ValidateUserName(n); !errors.Is(err, ErrInvalidUser) {
			t.Errorf("ValidateUserName(%q) = %v", n, err)
		}
	}
	s := testStore(t, t.TempDir())
	if _, err := s.User("..", "x"); err == nil {
		t.Error("User(..) accepted")
	}
	if _, err := s.User("example.test", "../../root"); err == nil {
		t.Error("User(../../root) accepted")
	}
}

func TestFolderDirEncoding(t *testing.T) {
	for name, dir := range map[string]string{
		"INBOX":       "",
		"Sent":        ".Sent",
		"a/b":         ".a.b",
		"v1.2":        ".v1&AC4-2",
		"a&b":         ".a&-b",
		"Ünïcode":     ".&ANw-n&AO8-code",
		"日本語/x.y":     ".&ZeVnLIqe-.x&AC4-y",
		"INBOX/Lists": ".INBOX.Lists",
		"smile 😀 ok":  ".smile &2D3eAA- ok",
	} {
		if got := folderDir(name); got != dir {
			t.Errorf("folderDir(%q) = %q, want %q", name, got, dir)
		}
		if name == "INBOX" {
			continue
		}
		if got, ok := nameFromDir(dir); !ok || got != name {
			t.Errorf("nameFromDir(%q) = %q %v", dir, got, ok)
		}
	}
	for _, dir := range []string{".", "..", ".a..b", ".&AGE-", ".&AC4-&AC4-", ".&Jjo", ".&2D0-", ".inbox.x", ".a\x01"} {
		if n, ok := nameFromDir(dir); ok {
			t.Errorf("nameFromDir(%q) = %q, want rejection", dir, n)
		}
	}
}

func FuzzValidateMailboxName(f *testing.F) {
	for _, s := range []string{"INBOX", "a/b", "../x", "v1.2", "Ünïcode", "a//b", ".x", "\x00", "inbox/Sub"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		canon, err := canonicalName(name)
		if err != nil {
			return
		}
		if !utf8.ValidString(canon) {
			t.Fatalf("accepted %q", name)
		}
		dir := folderDir(canon)
		if strings.ContainsAny(dir, "/\x00") || dir == "." || dir == ".." || len(dir) > maxDirNameLen {
			t.Fatalf("%q maps to unsafe directory %q", name, dir)
		}
		if canon == "INBOX" {
			if dir != "" {
				t.Fatalf("INBOX maps to %q", dir)
			}
			return
		}
		if dir == "" || dir[0] != '.' {
			t.Fatalf("%q maps to %q", name, dir)
		}
		back, ok := nameFromDir(dir)
		if !ok || back != canon {
			t.Fatalf("round trip %q → %q → %q %v", canon, dir, back, ok)
		}
	})
}

func FuzzNameEncoding(f *testing.F) {
	for _, s := range []string{"abc", "a.b", "&", "&-", "&AC4-", "Ünïcode", "&ZeVnLIqe-", "&Jjo-", "&2D3eAA-", "&-&-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		// Encoding any valid part is reversible and yields a safe name.
		if utf8.ValidString(s) {
			enc := encodePart(s)
			if strings.ContainsAny(enc, "./\x00") {
				t.Fatalf("encodePart(%q) = %q", s, enc)
			}
			dec, err := decodePart(enc)
			if err != nil || dec != s {
				t.Fatalf("decodePart(encodePart(%q)) = %q, %v", s, dec, err)
			}
		}
		// Decoding accepts only canonical encodings.
		if dec, err := decodePart(s); err == nil {
			if encodePart(dec) != s {
				t.Fatalf("decodePart(%q) = %q, which encodes differently", s, dec)
			}
		}
	})
}
