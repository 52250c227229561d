package imapd

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

// Some client errors never reach our Session: go-imap's parser meets them first and answers
// NO [SERVERBUG] (any error of its decoder that is not a syntax error becomes one), and then, when the
// refused command carried a LITERAL+ literal, reads that literal as the next command:
//
//   - a mailbox name that is not modified UTF-7 (NUL, tab, invalid UTF-8, a bad "&...-"), decoded by
//     the parser before Create, Select, Rename... are called;
//   - a command longer than the parser's 50 KiB (e.g. a set of 100,000 ranges);
//   - parentheses nested deeper than its 1,000 (SEARCH).
//
// So the guard validates commands before the library's parser sees them: it is the reader under the
// parser's bufio.Reader (installGuard), above TLS, and it passes every command through, framed by
// its lines and literals, except where it must step in:
//
//   - an invalid mailbox argument is replaced by a quoted marker (stand), and the Session method that
//     receives the marker answers with the refusal it stands for (session.refused): NO [CANNOT],
//     through the library's own answer path, so the command is answered once and in order;
//   - a command that is too long or too deeply nested is replaced whole by "tag UNSUBSCRIBE marker",
//     answered NO [LIMIT] or BAD [TOOBIG] the same way; the rest of it, LITERAL+ literals included,
//     is dropped.
//
// It reads a command's synchronizing literals as they come and never rewrites what follows one (it
// cannot know whether the client was told to send it), so an invalid name sent as such a literal
// still gets the library's answer; the connection stays in step there anyway.

const (
	maxGuardLine    = 48 << 10 // non-literal bytes of a command; below the parser's own 50 KiB
	maxGuardDepth   = 100      // parenthesis nesting
	maxGuardLiteral = 4096     // LITERAL+ literals read whole and checked; larger ones pass through
)

// mailboxCommands take mailbox names (or LIST patterns); firstOnly: only the first argument is one.
var mailboxCommands = map[string]bool{
	"CREATE": false, "DELETE": false, "RENAME": false, "SUBSCRIBE": false, "UNSUBSCRIBE": false,
	"STATUS": true, "SELECT": false, "EXAMINE": false, "APPEND": true, "LIST": false, "LSUB": false,
	"COPY": false, "MOVE": false, "UID COPY": false, "UID MOVE": false,
}

// setCommands take a sequence set first; the parser answers NO [SERVERBUG] to a malformed one.
var setCommands = map[string]bool{
	"FETCH": true, "STORE": true, "COPY": true, "MOVE": true,
	"UID FETCH": true, "UID STORE": true, "UID COPY": true, "UID MOVE": true, "UID EXPUNGE": true,
}

// guardRefusals are the guard's answers; a marker names one by its index.
var guardRefusals = []*imap.Error{errBadMailboxName, errCommandTooLong, errTooDeep, errBadSet}

var (
	errBadSet         = &imap.Error{Type: imap.StatusResponseTypeBad, Code: imap.ResponseCodeClientBug, Text: "Invalid sequence set"}
	errBadMailboxName = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "Invalid mailbox name: not modified UTF-7"}
	errCommandTooLong = &imap.Error{Type: imap.StatusResponseTypeBad, Code: imap.ResponseCodeTooBig, Text: "Command line too long"}
	errTooDeep        = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeLimit, Text: "Command nested too deeply"}
)

// commandGuard is a connection's reader as go-imap's parser sees it.
type commandGuard struct {
	src    io.Reader
	marker string            // unique to the connection; "marker-i" stands for guardRefusals[i]
	refuse func(*imap.Error) // told of each refusal; may be nil

	in      []byte // read from src, not yet framed
	scanned int    // bytes of in known to hold no line end
	out     []byte // framed, ready for the parser
	err     error  // of src, once in is empty
	buf     [4096]byte

	pass int64 // bytes of a literal to pass through (or drop) unread
	// the command being framed, after its first segment
	inCommand bool
	checked   bool // framing is certain: it is checked (no synchronizing literal came before)
	names     bool // it takes mailbox names
	set       bool // it takes a sequence set first
	firstOnly bool // only its first argument is one
	args      int
	length    int
	depth     int
	dropping  bool // refused whole: what is left of it is dropped
}

func newMarker() string {
	b := make([]byte, 12)
	rand.Read(b)
	return "postie-refused-" + hex.EncodeToString(b)
}

// stand appends the quoted marker that stands for err: the session answers it with err
// (session.refused). The refusal travels with the command, so pipelined ones keep their own.
func (g *commandGuard) stand(out []byte, err *imap.Error) []byte {
	i := slices.Index(guardRefusals, err)
	if g.refuse != nil {
		g.refuse(err)
	}
	return fmt.Appendf(out, `"%s-%d"`, g.marker, i)
}

// refusal returns the error a marker stands for, or nil when name is no marker.
func (g *commandGuard) refusal(name string) *imap.Error {
	rest, ok := strings.CutPrefix(name, g.marker+"-")
	if !ok {
		return nil
	}
	i, err := strconv.Atoi(rest)
	if err != nil || i < 0 || i >= len(guardRefusals) {
		return nil
	}
	return guardRefusals[i]
}

func (g *commandGuard) Read(p []byte) (int, error) {
	for len(g.out) == 0 {
		if g.pass > 0 {
			if !g.dropping {
				return g.passThrough(p)
			}
			if err := g.discard(); err != nil {
				return 0, err
			}
			continue
		}
		if err := g.frame(); err != nil {
			if len(g.out) > 0 {
				break
			}
			return 0, err
		}
	}
	n := copy(p, g.out)
	g.out = g.out[n:]
	return n, nil
}

// passThrough hands over literal bytes as they come (an APPEND's message, streamed).
func (g *commandGuard) passThrough(p []byte) (int, error) {
	if int64(len(p)) > g.pass {
		p = p[:g.pass]
	}
	var n int
	if len(g.in) > 0 {
		n = copy(p, g.in)
		g.in = g.in[n:]
	} else {
		var err error
		if n, err = g.src.Read(p); n == 0 {
			return 0, err
		}
	}
	g.pass -= int64(n)
	return n, nil
}

// discard drops the pass bytes of a refused command's literal.
func (g *commandGuard) discard() error {
	if len(g.in) == 0 {
		if g.err != nil {
			return g.err
		}
		if err := g.fill(); err != nil && len(g.in) == 0 {
			return err
		}
	}
	k := min(g.pass, int64(len(g.in)))
	g.in = g.in[k:]
	g.pass -= k
	if g.pass == 0 {
		g.dropping = g.inCommand // the command goes on after its literal: keep dropping
	}
	return nil
}

func (g *commandGuard) fill() error {
	n, err := g.src.Read(g.buf[:])
	g.in = append(g.in, g.buf[:n]...)
	g.err = err
	return err
}

// line returns the next line of the client (LF included). A line longer than max is discarded:
// long is set, line is its first bytes (the tag) and its last (a literal announcement).
func (g *commandGuard) line(max int) (line []byte, long bool, err error) {
	var head, tail []byte
	g.scanned = 0
	for {
		if i := bytes.IndexByte(g.in[g.scanned:], '\n'); i >= 0 {
			i += g.scanned
			l := g.in[:i+1]
			g.in = g.in[i+1:]
			if !long && len(l) <= max {
				return l, false, nil
			}
			if !long {
				head = append(head, l[:64]...)
			}
			tail = append(tail, l...)
			return append(head, tail[len(tail)-min(len(tail), 32):]...), true, nil
		}
		if len(g.in) > max || long && len(g.in) > 0 {
			if !long {
				head = append(head, g.in[:64]...)
				long = true
			}
			tail = append(tail[:0], g.in[len(g.in)-min(len(g.in), 32):]...)
			g.in = g.in[:0]
		}
		g.scanned = len(g.in)
		if g.err != nil {
			if !long && len(g.in) > 0 { // the last bytes, without a line end
				l := g.in
				g.in = nil
				return l, false, nil
			}
			return nil, false, g.err
		}
		g.fill()
	}
}

// frame moves the next segment of the client's input (a line, with a small LITERAL+ literal that
// ends it) to out, checked.
func (g *commandGuard) frame() error {
	l, long, err := g.line(maxGuardLine)
	if err != nil {
		return err
	}
	start := !g.inCommand
	argStart := 0
	if start {
		argStart = g.begin(l)
	}
	if g.dropping {
		return g.drop(l)
	}
	g.length += len(l)
	if start && (long || g.length > maxGuardLine) {
		return g.refuseAll(l, errCommandTooLong)
	}
	if start && g.set {
		set, _, _ := bytes.Cut(bytes.TrimRight(l[argStart:], "\r\n"), []byte(" "))
		if !validSeqSet(set) {
			return g.refuseAll(l, errBadSet)
		}
	}
	seg := l
	if g.checked && !long {
		seg = g.check(l, argStart)
		if seg == nil {
			if !start {
				seg, g.checked = l, false // too late to refuse: the parser has the start
			} else {
				return g.refuseAll(l, errTooDeep)
			}
		}
	}
	g.out = append(g.out, seg...)
	return g.literalAfter(l)
}

// begin starts framing a command at its first line and returns where its arguments start.
func (g *commandGuard) begin(l []byte) int {
	g.inCommand, g.checked, g.names, g.firstOnly, g.dropping = true, true, false, false, false
	g.args, g.length, g.depth = 0, 0, 0
	i, name := 0, ""
	for k := 0; k < 3 && i < len(l); k++ { // tag, name, UID's name
		j := i
		for j < len(l) && l[j] != ' ' && l[j] != '\r' && l[j] != '\n' {
			j++
		}
		word := string(bytes.ToUpper(l[i:j]))
		switch {
		case k == 1:
			name = word
		case k == 2 && name == "UID":
			name += " " + word
		case k == 2:
			j = i // not a word of the name
		}
		i = j
		if i < len(l) && l[i] == ' ' {
			i++
		}
		if k == 2 && j == i {
			break
		}
	}
	first, ok := mailboxCommands[name]
	g.names, g.firstOnly, g.set = ok, first, setCommands[name]
	return min(i, len(l))
}

// literalAfter reads what follows a line ending in a literal announcement: a small LITERAL+ literal
// is read and checked with the rest of the command; anything else passes through.
func (g *commandGuard) literalAfter(l []byte) error {
	n, nonSync, ok := literalAnnounced(l)
	if !ok {
		g.inCommand = false
		return nil
	}
	if !nonSync {
		// The client waits for the parser's "+": the rest of the command goes through unchecked.
		g.checked = false
		g.pass = n
		return nil
	}
	if n > maxGuardLiteral || !g.checked || !g.names {
		if g.checked {
			g.argChecked() // a big literal is an argument too
		}
		g.pass = n
		return nil
	}
	for int64(len(g.in)) < n && g.err == nil {
		g.fill()
	}
	if int64(len(g.in)) < n {
		g.pass = n // the connection ended: hand over what there is
		return nil
	}
	lit := g.in[:n]
	g.in = g.in[n:]
	if g.argChecked() && !validMailboxName(lit) {
		// Replace the whole literal, its announcement included, by the marker.
		if i := bytes.LastIndexByte(g.out, '{'); i >= 0 {
			g.out = g.stand(g.out[:i], errBadMailboxName)
			return nil
		}
	}
	g.out = append(g.out, lit...)
	return nil
}

// refuseAll replaces a command by one that the session answers with err, and drops the rest of it.
func (g *commandGuard) refuseAll(l []byte, err *imap.Error) error {
	tag, _, _ := bytes.Cut(l, []byte(" "))
	tag = bytes.TrimRight(tag, "\r\n")
	g.out = append(g.out, tag...)
	g.out = append(g.out, " UNSUBSCRIBE "...)
	g.out = append(g.stand(g.out, err), "\r\n"...)
	g.dropping = true
	return g.drop(l)
}

// drop discards the rest of a refused command: its LITERAL+ literals are skipped, and a
// synchronizing one ends it (the client sends it only when told to).
func (g *commandGuard) drop(l []byte) error {
	n, nonSync, ok := literalAnnounced(l)
	if ok && nonSync {
		g.pass = n
		return nil
	}
	g.inCommand, g.dropping = false, false
	return nil
}

// literalAnnounced reads a literal announcement ("{n}", "{n+}", "~{n}") at the end of a line.
func literalAnnounced(l []byte) (n int64, nonSync, ok bool) {
	l = bytes.TrimRight(l, "\r\n")
	if len(l) < 3 || l[len(l)-1] != '}' {
		return 0, false, false
	}
	i := bytes.LastIndexByte(l, '{')
	if i < 0 {
		return 0, false, false
	}
	num := l[i+1 : len(l)-1]
	if nonSync = bytes.HasSuffix(num, []byte("+")); nonSync {
		num = num[:len(num)-1]
	}
	n, err := strconv.ParseInt(string(num), 10, 64)
	if err != nil || n < 0 {
		return 0, false, false
	}
	return n, nonSync, true
}

// argChecked counts an argument and reports whether it is a mailbox name to check.
func (g *commandGuard) argChecked() bool {
	g.args++
	return g.names && (!g.firstOnly || g.args == 1)
}

// check scans a segment from its arguments on: it counts parentheses and replaces invalid mailbox
// arguments (quoted strings and atoms at the top level) by the marker. It returns nil when the
// nesting is too deep.
func (g *commandGuard) check(l []byte, from int) []byte {
	out := append(make([]byte, 0, len(l)), l[:from]...)
	for i := from; i < len(l); {
		c := l[i]
		switch {
		case c == ' ' || c == '\r' || c == '\n':
			out = append(out, c)
			i++
		case c == '(' || c == ')':
			if c == '(' {
				g.depth++
			} else {
				g.depth--
			}
			if g.depth > maxGuardDepth {
				return nil
			}
			out = append(out, c)
			i++
		case c == '{' || c == '~' && i+1 < len(l) && l[i+1] == '{':
			return append(out, l[i:]...) // a literal announcement ends the line
		default:
			j := i
			if c == '"' {
				j = quotedEnd(l, i)
			} else {
				for j < len(l) && !isDelim(l[j]) {
					j++
				}
			}
			tok := l[i:j]
			val, ok := tok, true
			if c == '"' {
				val, ok = unquoteIMAP(tok)
			}
			if g.depth == 0 && g.argChecked() && ok && !validMailboxName(val) {
				out = g.stand(out, errBadMailboxName)
			} else {
				out = append(out, tok...)
			}
			i = j
		}
	}
	return out
}

// isDelim reports whether c ends an atom ('{' too: it opens a literal announcement).
func isDelim(c byte) bool {
	return c == ' ' || c == '(' || c == ')' || c == '"' || c == '{' || c == '\r' || c == '\n'
}

// validSeqSet reports whether the parser takes s as a sequence set: "$", or ranges of numbers
// (1 to 2^32-1, no leading zero) or "*".
func validSeqSet(s []byte) bool {
	if string(s) == "$" {
		return true
	}
	for _, r := range bytes.Split(s, []byte(",")) {
		a, b, isRange := bytes.Cut(r, []byte(":"))
		if !validSeqNum(a) || isRange && !validSeqNum(b) {
			return false
		}
	}
	return true
}

func validSeqNum(s []byte) bool {
	if string(s) == "*" {
		return true
	}
	n, err := strconv.ParseUint(string(s), 10, 32)
	return err == nil && n > 0 && s[0] != '0'
}

// quotedEnd returns the index after the quoted string opening at l[i] (or len(l), unterminated).
func quotedEnd(l []byte, i int) int {
	for j := i + 1; j < len(l); j++ {
		switch l[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(l)
}

func unquoteIMAP(q []byte) ([]byte, bool) {
	if len(q) < 2 || q[len(q)-1] != '"' {
		return nil, false
	}
	var b []byte
	for i := 1; i < len(q)-1; i++ {
		if q[i] == '\\' {
			i++
		}
		b = append(b, q[i])
	}
	return b, true
}

// validMailboxName reports whether go-imap's parser can decode s as a mailbox name: valid UTF-8,
// no control characters, every "&" opening a base64 run closed by "-" (RFC 3501 §5.1.3).
func validMailboxName(s []byte) bool {
	if !utf8.Valid(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == 0x7f {
			return false
		}
		if c != '&' {
			continue
		}
		j := i + 1
		for j < len(s) && s[j] != '-' {
			if !isModBase64(s[j]) {
				return false
			}
			j++
		}
		if j == len(s) {
			return false
		}
		if j > i+1 && !validUTF7Run(s[i+1:j]) {
			return false
		}
		i = j
	}
	return true
}

func isModBase64(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == ','
}

// validUTF7Run decodes a modified base64 run to UTF-16 and checks it: whole code units, no unpaired
// surrogates, nothing the run could have said in ASCII.
func validUTF7Run(b64 []byte) bool {
	var bits, n uint32
	var units []uint16
	for _, c := range b64 {
		var v byte
		switch {
		case 'A' <= c && c <= 'Z':
			v = c - 'A'
		case 'a' <= c && c <= 'z':
			v = c - 'a' + 26
		case '0' <= c && c <= '9':
			v = c - '0' + 52
		case c == '+':
			v = 62
		default:
			v = 63
		}
		bits, n = bits<<6|uint32(v), n+6
		if n >= 16 {
			n -= 16
			units = append(units, uint16(bits>>n))
			bits &= 1<<n - 1
		}
	}
	if len(units) == 0 || bits != 0 {
		return false
	}
	for i := 0; i < len(units); i++ {
		u := units[i]
		switch {
		case u >= 0xd800 && u < 0xdc00:
			if i+1 == len(units) || units[i+1] < 0xdc00 || units[i+1] >= 0xe000 {
				return false
			}
			i++
		case u >= 0xdc00 && u < 0xe000:
			return false
		case u >= 0x20 && u < 0x7f:
			return false // must be written as itself
		}
	}
	return true
}

// installGuard makes g the reader under the parser of c. go-imap exports no hook on its command
// reader, so the guard is put in through the unexported field "br" (a *bufio.Reader) of
// imapserver.Conn, v2.0.0-beta.8: its Reset keeps the parser's reader and changes what it reads
// from. What the reader already holds is moved in front of the guard's input. It is called where
// the library reads nothing: when the session is made (before the greeting) and from Login (after a
// STARTTLS, which resets the reader onto the TLS connection). It reports false, and the connection
// goes unguarded, if the library's struct is not what it was.
func installGuard(c *imapserver.Conn, g *commandGuard) bool {
	f := reflect.ValueOf(c).Elem().FieldByName("br")
	if !f.IsValid() || f.Type() != reflect.TypeFor[*bufio.Reader]() {
		return false
	}
	br := *(**bufio.Reader)(unsafe.Pointer(f.UnsafeAddr()))
	if br == nil {
		return false
	}
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n)
		g.in = append(append([]byte(nil), b...), g.in...)
	}
	br.Reset(g)
	return true
}
