package envelope

import (
	"errors"
	"fmt"
	"testing"
)

func TestValidate(t *testing.T) {
	good := []string{"ann@example.test", "Ann.Lee+x@Example.TEST", "a@b", "user@[127.0.0.1]", "ü@bücher.test", "a@b.test."}
	for _, a := range good {
		if err := Validate(a); err != nil {
			t.Errorf("Validate(%q) = %v, want nil", a, err)
		}
	}
	bad := []string{"", "ann", "@example.test", "ann@", "../../etc/x@b", "a b@c", "a@b c", "a..b@c", ".a@c", "a@-b.c", "a@b..c", "a\x00@b", "a\r\n@b", "x@y@z\"", "a@b/c"}
	for _, a := range bad {
		if err := Validate(a); err == nil {
			t.Errorf("Validate(%q) = nil, want an error", a)
		}
	}
}

func TestValidateSender(t *testing.T) {
	for _, a := range []string{"a..b@remote.test", ".x@remote.test", "ann@example.test", "x/y@remote.test"} {
		if err := ValidateSender(a); err != nil {
			t.Errorf("ValidateSender(%q) = %v, want nil", a, err)
		}
	}
	for _, a := range []string{"", "nodomain", "@remote.test", "a b@remote.test", "a<b@c", "a@b\\c", "a\r\n@b", "a@-b"} {
		if err := ValidateSender(a); err == nil {
			t.Errorf("ValidateSender(%q) = nil, want an error", a)
		}
	}
}

func TestNormalizeAndKey(t *testing.T) {
	n, err := Normalize("Ann@Example.TEST.")
	if err != nil || n != "Ann@example.test" {
		t.Fatalf("Normalize = %q, %v", n, err)
	}
	if k := Key("Ann@Example.TEST"); k != "ann@example.test" {
		t.Fatalf("Key = %q", k)
	}
}

func TestStripTag(t *testing.T) {
	for _, c := range []struct{ in, base, tag string }{
		{"ann+lists", "ann", "lists"}, {"ann", "ann", ""}, {"+x", "+x", ""}, {"a+b+c", "a", "b+c"},
	} {
		b, tg := StripTag(c.in)
		if b != c.base || tg != c.tag {
			t.Errorf("StripTag(%q) = %q, %q; want %q, %q", c.in, b, tg, c.base, c.tag)
		}
	}
}

func TestAsError(t *testing.T) {
	if AsError(nil) != nil {
		t.Fatal("AsError(nil) != nil")
	}
	wrapped := fmt.Errorf("ctx: %w", ErrUnknownUser)
	if e := AsError(wrapped); e != ErrUnknownUser || e.Temporary() {
		t.Fatalf("AsError(wrapped) = %v", e)
	}
	e := AsError(errors.New("disk full"))
	if !e.Temporary() || e.Code != 451 {
		t.Fatalf("AsError(plain) = %v, want a 451", e)
	}
}

func FuzzValidate(f *testing.F) {
	for _, s := range []string{"ann@example.test", "a@[1.2.3.4]", "\"x@y\"@z", "../a@b", "a+b@c.d."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if Validate(s) != nil {
			return
		}
		n, err := Normalize(s)
		if err != nil {
			t.Fatalf("Validate ok but Normalize(%q) failed: %v", s, err)
		}
		if Validate(n) != nil {
			t.Fatalf("Normalize(%q) = %q, which does not validate", s, n)
		}
		local, _ := Split(n)
		for _, c := range local {
			if c == '/' || c == '\\' || c < ' ' {
				t.Fatalf("valid address %q has a path or control character", s)
			}
		}
	})
}
