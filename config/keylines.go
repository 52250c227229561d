package config

import (
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// The TOML library keeps key positions to itself, so keyLines finds them
// with a small scanner of its own. It runs only on text the library has
// already parsed, so it can assume valid TOML, but it never panics or loops
// on anything else.

// keyLines maps every key of a TOML document to the line (1-based) where it
// is first defined. Keys are dotted paths in toml.Key's String form; array
// elements are recorded as "key[i]" too.
func keyLines(src string) map[string]int {
	s := &lineScanner{src: src, lines: map[string]int{}}
	for i := 0; i < len(src); i++ {
		if src[i] == '\n' {
			s.newlines = append(s.newlines, i)
		}
	}
	if strings.HasPrefix(src, "\ufeff") {
		s.pos = len("\ufeff")
	}
	s.document()
	return s.lines
}

type lineScanner struct {
	src      string
	pos      int
	newlines []int // offsets of '\n', to turn an offset into a line
	lines    map[string]int
	depth    int
}

// maxDepth bounds nesting of arrays and inline tables.
const maxDepth = 100

func (s *lineScanner) lineAt(off int) int {
	return sort.SearchInts(s.newlines, off) + 1
}

func (s *lineScanner) record(key string, off int) {
	if _, ok := s.lines[key]; !ok {
		s.lines[key] = s.lineAt(off)
	}
}

func (s *lineScanner) peek() byte {
	if s.pos < len(s.src) {
		return s.src[s.pos]
	}
	return 0
}

func (s *lineScanner) eof() bool { return s.pos >= len(s.src) }

// skipSpace skips blanks within a line.
func (s *lineScanner) skipSpace() {
	for !s.eof() && (s.peek() == ' ' || s.peek() == '\t') {
		s.pos++
	}
}

// skipBlank skips blanks, line ends and comments.
func (s *lineScanner) skipBlank() {
	for !s.eof() {
		switch s.peek() {
		case ' ', '\t', '\r', '\n':
			s.pos++
		case '#':
			s.skipLine()
		default:
			return
		}
	}
}

// skipLine moves to the start of the next line.
func (s *lineScanner) skipLine() {
	if i := strings.IndexByte(s.src[s.pos:], '\n'); i >= 0 {
		s.pos += i + 1
	} else {
		s.pos = len(s.src)
	}
}

// document reads top-level statements: table headers and key = value.
func (s *lineScanner) document() {
	var table []string
	for {
		s.skipBlank()
		if s.eof() {
			return
		}
		start := s.pos
		if s.peek() == '[' {
			s.pos++
			if s.peek() == '[' { // [[array of tables]]
				s.pos++
			}
			s.skipSpace()
			table = s.key()
			s.recordPath(table, start)
		} else {
			s.keyValue(table, start)
		}
		if s.pos == start { // not TOML; never loop on it
			s.pos++
		}
		s.skipLine()
	}
}

// keyValue reads `key = value` with the key under prefix.
func (s *lineScanner) keyValue(prefix []string, start int) {
	key := append(append([]string(nil), prefix...), s.key()...)
	if len(key) == len(prefix) {
		return
	}
	s.recordPath(key, start)
	s.skipSpace()
	if s.peek() != '=' {
		return
	}
	s.pos++
	s.skipSpace()
	s.value(toml.Key(key).String(), key)
}

// recordPath records key and each of its parents at off.
func (s *lineScanner) recordPath(key []string, off int) {
	for i := 1; i <= len(key); i++ {
		s.record(toml.Key(key[:i]).String(), off)
	}
}

// key reads a dotted key: bare, "basic" or 'literal' parts.
func (s *lineScanner) key() []string {
	var parts []string
	for !s.eof() {
		s.skipSpace()
		start := s.pos
		switch c := s.peek(); {
		case c == '"' || c == '\'':
			s.str()
			parts = append(parts, unquoteKey(s.src[start:s.pos]))
		case isBareKeyChar(c):
			for !s.eof() && isBareKeyChar(s.peek()) {
				s.pos++
			}
			parts = append(parts, s.src[start:s.pos])
		default:
			return parts
		}
		s.skipSpace()
		if s.peek() != '.' {
			return parts
		}
		s.pos++
	}
	return parts
}

func isBareKeyChar(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// unquoteKey turns a quoted key as written into the key itself. Escapes
// are rare in keys; for those, the TOML library does the decoding.
func unquoteKey(q string) string {
	if len(q) < 2 {
		return q
	}
	if q[0] == '\'' || !strings.Contains(q, `\`) {
		return q[1 : len(q)-1]
	}
	var v struct{ K string }
	if _, err := toml.Decode("K = "+q, &v); err != nil {
		return q[1 : len(q)-1]
	}
	return v.K
}

// value skips one value, recording the elements of arrays as path[i] and
// the keys of inline tables under parts (path is parts in String form, plus
// any [i]; a table inside an array records its keys without the index,
// which is good enough: no key of ours lives there).
func (s *lineScanner) value(path string, parts []string) {
	if s.depth >= maxDepth {
		s.pos = len(s.src)
		return
	}
	s.depth++
	defer func() { s.depth-- }()
	switch s.peek() {
	case '"', '\'':
		s.str()
	case '[':
		s.array(path, parts)
	case '{':
		s.inlineTable(parts)
	default:
		s.scalar()
	}
}

func (s *lineScanner) array(path string, parts []string) {
	s.pos++ // '['
	for i := 0; ; i++ {
		s.skipBlank()
		if s.eof() || s.peek() == ']' {
			break
		}
		start := s.pos
		elem := path + "[" + strconv.Itoa(i) + "]"
		s.record(elem, start)
		s.value(elem, parts)
		s.skipBlank()
		if s.peek() == ',' {
			s.pos++
		} else if s.pos == start {
			s.pos++
		}
	}
	if !s.eof() {
		s.pos++ // ']'
	}
}

func (s *lineScanner) inlineTable(prefix []string) {
	s.pos++ // '{'
	for {
		s.skipBlank()
		if s.eof() || s.peek() == '}' {
			break
		}
		start := s.pos
		s.keyValue(prefix, start)
		s.skipBlank()
		if s.peek() == ',' {
			s.pos++
		} else if s.pos == start {
			s.pos++
		}
	}
	if !s.eof() {
		s.pos++ // '}'
	}
}

// str skips a string of any of the four kinds.
func (s *lineScanner) str() {
	q := s.peek()
	triple := strings.Repeat(string(q), 3)
	if strings.HasPrefix(s.src[s.pos:], triple) {
		s.pos += 3
		for !s.eof() && !strings.HasPrefix(s.src[s.pos:], triple) {
			if q == '"' && s.peek() == '\\' {
				s.pos++
			}
			s.pos++
		}
		s.pos += 3
		// Up to two more quotes may end the content: """a"""" is `a"`.
		for extra := 0; extra < 2 && s.peek() == q; extra++ {
			s.pos++
		}
		s.pos = min(s.pos, len(s.src))
		return
	}
	s.pos++
	for !s.eof() && s.peek() != q && s.peek() != '\n' {
		if q == '"' && s.peek() == '\\' {
			s.pos++
		}
		s.pos++
	}
	s.pos = min(s.pos+1, len(s.src))
}

// scalar skips a number, boolean or date-time. A date-time may have a space
// between date and time: "1979-05-27 07:32:00".
func (s *lineScanner) scalar() {
	start := s.pos
	for !s.eof() {
		c := s.peek()
		if c == ' ' && s.pos-start == 10 && s.src[start+4] == '-' && s.pos+1 < len(s.src) && isDigit(s.src[s.pos+1]) {
			s.pos++
			continue
		}
		if c == ',' || c == ']' || c == '}' || c == '#' || c == ' ' || c == '\t' || c == '\r' || c == '\n' {
			return
		}
		s.pos++
	}
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// lineOf returns the line of key, or of its nearest recorded ancestor, or 0.
func lineOf(lines map[string]int, key string) int {
	for _, k := range ancestors(key) {
		if n, ok := lines[k]; ok {
			return n
		}
	}
	return 0
}
