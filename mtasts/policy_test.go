package mtasts

import (
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	p, err := Parse("version: STSv1\r\nmode: enforce\r\nmx: mx1.Example.com\r\nmx: *.example.net.\r\nmax_age: 86400\r\nfuture: thing\r\n")
	if err != nil {
		t.Fatal(err)
	}
	if p.Mode != ModeEnforce || p.MaxAge != 24*time.Hour || strings.Join(p.MX, ",") != "mx1.example.com,*.example.net" {
		t.Errorf("policy = %+v", p)
	}
	if got := p.Lines(); len(got) != 6 || got[0] != "version: STSv1" {
		t.Errorf("Lines = %q", got)
	}
}

func TestParseRejects(t *testing.T) {
	for name, text := range map[string]string{
		"no version":     "mode: enforce\nmx: a.test\nmax_age: 1\n",
		"bad version":    "version: STSv2\nmode: enforce\nmx: a.test\nmax_age: 1\n",
		"no mode":        "version: STSv1\nmx: a.test\nmax_age: 1\n",
		"bad mode":       "version: STSv1\nmode: strict\nmx: a.test\nmax_age: 1\n",
		"no max_age":     "version: STSv1\nmode: enforce\nmx: a.test\n",
		"neg max_age":    "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: -1\n",
		"long max_age":   "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 12345678901\n",
		"no mx":          "version: STSv1\nmode: enforce\nmax_age: 1\n",
		"bad mx":         "version: STSv1\nmode: enforce\nmx: a..test\nmax_age: 1\n",
		"inner wildcard": "version: STSv1\nmode: enforce\nmx: a.*.test\nmax_age: 1\n",
		"no colon":       "version: STSv1\nmode enforce\nmx: a.test\nmax_age: 1\n",
		"too big":        "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 1\n" + strings.Repeat("x: y\n", MaxPolicySize/5),
	} {
		if p, err := Parse(text); err == nil {
			t.Errorf("%s: accepted as %+v", name, p)
		}
	}
	// mode none needs no mx; max_age is capped at a year; the first of a
	// repeated key counts.
	p, err := Parse("version: STSv1\nmode: none\nmode: enforce\nmax_age: 9999999999\n")
	if err != nil || p.Mode != ModeNone || p.MaxAge != MaxMaxAge {
		t.Errorf("mode none: %+v %v", p, err)
	}
}

func TestMatch(t *testing.T) {
	p := &Policy{MX: []string{"mail.example.com", "*.example.net"}}
	for host, want := range map[string]bool{
		"mail.example.com":    true,
		"MAIL.example.com.":   true,
		"mx.mail.example.com": false,
		"example.com":         false,
		"a.example.net":       true,
		"A.Example.Net.":      true,
		"a.b.example.net":     false, // the wildcard covers one label only
		"example.net":         false,
		".example.net":        false,
		"aexample.net":        false,
	} {
		if got := p.Match(host); got != want {
			t.Errorf("Match(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestParseRecord(t *testing.T) {
	for txt, want := range map[string]string{
		"v=STSv1; id=20160831085700Z;": "20160831085700Z",
		"v=STSv1;id=abc":               "abc",
		"v=STSv1; ext=1; id=x1 ; ":     "x1",
		"v=STSv1; id=a; id=b":          "a",
	} {
		id, ok, err := ParseRecord(txt)
		if !ok || err != nil || id != want {
			t.Errorf("ParseRecord(%q) = %q %v %v, want %q", txt, id, ok, err, want)
		}
	}
	if _, ok, _ := ParseRecord("v=spf1 -all"); ok {
		t.Error("an SPF record was taken for STS")
	}
	for _, bad := range []string{"v=STSv1;", "v=STSv1; id=", "v=STSv1; id=a-b", "v=STSv1; id=" + strings.Repeat("a", 33), "v=STSv1; junk"} {
		if _, ok, err := ParseRecord(bad); !ok || err == nil {
			t.Errorf("ParseRecord(%q): ok=%v err=%v, want a malformed record", bad, ok, err)
		}
	}
}

// FuzzParse: no input panics, and a parsed policy's patterns are valid
// and match a host built from them.
func FuzzParse(f *testing.F) {
	f.Add("version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n")
	f.Add("version: STSv1\nmode: none\nmax_age: 0\n")
	f.Fuzz(func(t *testing.T, text string) {
		p, err := Parse(text)
		if err != nil {
			return
		}
		if p.MaxAge < 0 || p.MaxAge > MaxMaxAge {
			t.Fatalf("max_age %v out of range", p.MaxAge)
		}
		for _, pat := range p.MX {
			if !validPattern(pat) {
				t.Fatalf("kept invalid pattern %q", pat)
			}
			host := strings.Replace(pat, "*", "x", 1)
			if !p.Match(host) {
				t.Fatalf("pattern %q does not match %q", pat, host)
			}
		}
	})
}

func FuzzParseRecord(f *testing.F) {
	f.Add("v=STSv1; id=20160831085700Z;")
	f.Fuzz(func(t *testing.T, txt string) {
		id, ok, err := ParseRecord(txt)
		if ok && err == nil && (id == "" || len(id) > maxIDLen || !isAlnum(id)) {
			t.Fatalf("accepted id %q", id)
		}
	})
}

// TestFormatParses: the policy we serve (Format) is one our own parser
// and the RFC accept, and it says what it was given.
func TestFormatParses(t *testing.T) {
	text := Format(ModeEnforce, []string{"mx.example.test", "*.backup.example.test"}, 7*24*time.Hour)
	p, err := Parse(text)
	if err != nil {
		t.Fatalf("Parse(Format(...)): %v\n%s", err, text)
	}
	if p.Mode != ModeEnforce || p.MaxAge != 7*24*time.Hour || len(p.MX) != 2 || !p.Match("mx.example.test") || !p.Match("a.backup.example.test") {
		t.Errorf("parsed %+v from\n%s", p, text)
	}
	if !strings.HasSuffix(text, "\r\n") || strings.Count(text, "\r\n") != 5 {
		t.Errorf("want 5 CRLF lines:\n%q", text)
	}
}
