package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

func TestKeyLines(t *testing.T) {
	tests := []struct {
		name string
		text string
		want map[string]int
	}{
		{"tables and keys", "a = 1\n\n[t]\n# x = 1\nx = 2 # y = 3\n  y=3\n",
			map[string]int{"a": 1, "t": 3, "t.x": 5, "t.y": 6}},
		{"dotted and quoted keys", "a . b = 1\n\"c.d\".e = 2\n'f' = 3\n[ \"g h\" . i ]\nj = 4\n",
			map[string]int{"a": 1, "a.b": 1, `"c.d"`: 2, `"c.d".e`: 2, "f": 3, `"g h"`: 4, `"g h".i`: 4, `"g h".i.j`: 5}},
		{"escaped quoted key", "\"a\\u0062\" = 1\n",
			map[string]int{"ab": 1}},
		{"multi-line array", "l = [\n  \"a\", # comment, with ] and \"\n\n  'b',\n]\nm = 1\n",
			map[string]int{"l": 1, "l[0]": 2, "l[1]": 4, "m": 6}},
		{"nested arrays", "l = [[1, 2], [\n3]]\nm = 1\n",
			map[string]int{"l[0]": 1, "l[1]": 1, "l[0][1]": 1, "l[1][0]": 2, "m": 3}},
		{"multi-line strings", "s = \"\"\"\nk = 1\n\\\"\"\"\n\"\"\"\nt = '''\n[x]\n'''\nu = \"\"\"a\"\"\"\"\"\nv = 1\n",
			map[string]int{"s": 1, "t": 5, "u": 8, "v": 9}},
		{"strings with comment and bracket characters", "a = \"#[x]\" # c\nb = 'x = \"y'\nc = 1\n",
			map[string]int{"a": 1, "b": 2, "c": 3}},
		{"inline tables", "t = { a = 1, b = { c = [1, 2] } }\nu = {\n  d = 1, # TOML 1.1\n  e = 2,\n}\n",
			map[string]int{"t": 1, "t.a": 1, "t.b": 1, "t.b.c": 1, "t.b.c[1]": 1, "u": 2, "u.d": 3, "u.e": 4}},
		{"date-times", "d = 1979-05-27 07:32:00Z\ne = 1979-05-27\nf = [1979-05-27 07:32:00, 1]\ng = 1\n",
			map[string]int{"d": 1, "e": 2, "f": 3, "f[1]": 3, "g": 4}},
		{"arrays of tables", "[[a]]\nb = 1\n[[a]]\nc = 2\n",
			map[string]int{"a": 1, "a.b": 2, "a.c": 4}},
		{"CRLF and BOM", "\ufeffa = 1\r\n\r\n[t]\r\nb = 2\r\n",
			map[string]int{"a": 1, "t": 3, "t.b": 4}},
		{"first definition wins", "[a.b]\nx = 1\n[a]\ny = 2\n",
			map[string]int{"a": 1, "a.b": 1, "a.y": 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m map[string]any
			if _, err := toml.Decode(tt.text, &m); err != nil {
				t.Fatalf("test document is not TOML: %v", err)
			}
			got := keyLines(tt.text)
			for k, want := range tt.want {
				if got[k] != want {
					t.Errorf("line of %s = %d, want %d (all: %v)", k, got[k], want, got)
				}
			}
			checkKeyLines(t, tt.text)
		})
	}
}

func TestLineOf(t *testing.T) {
	lines := map[string]int{"smtp": 3, "smtp.listen": 4, "smtp.listen[1]": 6}
	for key, want := range map[string]int{
		"smtp.listen[1]":  6,
		"smtp.listen[0]":  4,
		"smtp.listen":     4,
		"smtp.idle":       3,
		"imap.listen[0]":  0,
		"smtp.a.b[2][1]":  3,
		"hostname":        0,
		`smtp."a.b"`:      3,
		"smtp.listen[x]]": 4,
	} {
		if got := lineOf(lines, key); got != want {
			t.Errorf("lineOf(%q) = %d, want %d", key, got, want)
		}
	}
}

// checkKeyLines checks keyLines against the TOML library: every key the
// library finds has a line, and that line holds the key's last part.
func checkKeyLines(t *testing.T, text string) {
	t.Helper()
	var m map[string]any
	md, err := toml.Decode(text, &m)
	if err != nil {
		return
	}
	lines := keyLines(text)
	src := strings.Split(strings.TrimPrefix(text, "\ufeff"), "\n")
	for _, k := range md.Keys() {
		n, ok := lines[k.String()]
		if !ok {
			t.Errorf("no line for key %s in %q", k, text)
			continue
		}
		last := k[len(k)-1]
		if n < 1 || n > len(src) {
			t.Errorf("line %d of key %s is outside the text", n, k)
			continue
		}
		// A bare key is written as itself (escapes could spell it otherwise).
		bare := (toml.Key{last}).String() == last && !strings.Contains(src[n-1], `\`)
		if bare && !strings.Contains(src[n-1], last) {
			t.Errorf("key %s: line %d is %q", k, n, src[n-1])
		}
	}
}

func FuzzLoad(f *testing.F) {
	example, err := os.ReadFile("../config.toml.example")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	f.Add([]byte(minimal))
	f.Add([]byte(minimal + "[smtp]\nlisten = [\":25\", 25]\nmax_message_size = \"1.5GB\"\n"))
	f.Add([]byte("hostname = 'h'\ndomains = ['a']\npop3 = {\n listen = [':1'],\n}\n"))
	f.Add([]byte("a = \"\"\"\nx = 1\"\"\"\"\n[b]\nc = 1979-05-27 07:32:00\n[[d]]\n"))
	f.Add([]byte("[smtp\n"))
	f.Add([]byte("\ufeff\"a\\u00e9\".b = [[{}]]\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "config.toml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(path)
		checkKeyLines(t, string(data))
		if err != nil {
			lines := strings.Count(string(data), "\n") + 1
			for _, e := range Errors(err) {
				if e.File != path || e.Line < 0 || e.Line > lines || e.Msg == "" {
					t.Errorf("bad error %+v", e)
				}
			}
			return
		}
		if c.Hostname == "" || len(c.Domains) == 0 || c.DataDir == "" || !filepath.IsAbs(c.Path) {
			t.Errorf("Load accepted an incomplete config: %+v", c)
		}
	})
}

// FuzzKeyLines runs the scanner on any text, TOML or not: it must neither
// panic nor loop, and on TOML it must agree with the library.
func FuzzKeyLines(f *testing.F) {
	for _, s := range []string{minimal, "a = [[[[", "[[a.'b\n", "x = \"\"\"\\", "t = {a = {b = [", "\ufeff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		lines := keyLines(text)
		n := strings.Count(text, "\n") + 1
		for k, l := range lines {
			if l < 1 || l > n {
				t.Errorf("key %s: line %d of %d", k, l, n)
			}
		}
		checkKeyLines(t, text)
	})
}
