package maildir

import (
	"strings"
)

// Flags is a message's stored flags: the system flags, $Forwarded, and up to
// 26 keywords (bit KeywordFlag(i) is the folder's keyword i, the letter 'a'+i
// in file names). \Recent is not a stored flag.
type Flags uint64

// The system flags and their Maildir letters.
const (
	FlagSeen      Flags = 1 << iota // S  \Seen
	FlagAnswered                    // R  \Answered
	FlagFlagged                     // F  \Flagged
	FlagDeleted                     // T  \Deleted
	FlagDraft                       // D  \Draft
	FlagForwarded                   // P  $Forwarded
)

// MaxKeywords is the number of keywords a folder can define (letters a-z).
const MaxKeywords = 26

const (
	keywordShift = 6
	systemFlags  = FlagSeen | FlagAnswered | FlagFlagged | FlagDeleted | FlagDraft | FlagForwarded
	keywordFlags = Flags(1<<MaxKeywords-1) << keywordShift
	allFlags     = systemFlags | keywordFlags
)

// KeywordFlag is the bit of keyword index i (0 ≤ i < MaxKeywords).
func KeywordFlag(i int) Flags { return 1 << (keywordShift + uint(i)) }

// FlagOp says how SetFlags combines the given flags with a message's.
type FlagOp int

// The STORE operations.
const (
	FlagsSet    FlagOp = iota // replace
	FlagsAdd                  // +FLAGS
	FlagsRemove               // -FLAGS
)

func (op FlagOp) apply(old, f Flags) Flags {
	switch op {
	case FlagsAdd:
		return old | f
	case FlagsRemove:
		return old &^ f
	default:
		return f
	}
}

// letterFlag maps a Maildir info letter to its flag (0: not a known letter).
func letterFlag(c byte) Flags {
	switch c {
	case 'D':
		return FlagDraft
	case 'F':
		return FlagFlagged
	case 'P':
		return FlagForwarded
	case 'R':
		return FlagAnswered
	case 'S':
		return FlagSeen
	case 'T':
		return FlagDeleted
	}
	if c >= 'a' && c <= 'z' {
		return KeywordFlag(int(c - 'a'))
	}
	return 0
}

// systemLetters lists the system flags in the ASCII order of their letters.
var systemLetters = [...]struct {
	c byte
	f Flags
}{{'D', FlagDraft}, {'F', FlagFlagged}, {'P', FlagForwarded}, {'R', FlagAnswered}, {'S', FlagSeen}, {'T', FlagDeleted}}

// parseInfo reads the info part of a file name (what follows ':'). flags are
// the letters we know; unknown holds every other letter, sorted, so that a
// rename keeps them; canonical reports whether info is exactly what
// appendInfo would write for (flags, unknown).
func parseInfo(info []byte) (flags Flags, unknown string, canonical bool) {
	if len(info) < 2 || info[0] != '2' || info[1] != ',' {
		return 0, "", false
	}
	canonical = true
	var other []byte
	for i, c := range info[2:] {
		if i > 0 && c <= info[1+i] { // letters must be strictly ascending
			canonical = false
		}
		if f := letterFlag(c); f != 0 {
			flags |= f
		} else {
			other = append(other, c)
		}
	}
	if other != nil {
		unknown = sortedUnique(other)
	}
	return flags, unknown, canonical
}

func sortedUnique(b []byte) string {
	var set [256]bool
	for _, c := range b {
		set[c] = true
	}
	out := b[:0]
	for c := range 256 {
		if set[c] {
			out = append(out, byte(c))
		}
	}
	return string(out)
}

// appendInfo appends ":2," and the letters of f and unknown in ASCII order.
func appendInfo(dst []byte, f Flags, unknown string) []byte {
	dst = append(dst, ":2,"...)
	if unknown == "" { // the common case: no merge needed
		for _, l := range systemLetters {
			if f&l.f != 0 {
				dst = append(dst, l.c)
			}
		}
		for i := range MaxKeywords {
			if f&KeywordFlag(i) != 0 {
				dst = append(dst, byte('a'+i))
			}
		}
		return dst
	}
	var set [256]bool
	for i := 0; i < len(unknown); i++ {
		set[unknown[i]] = true
	}
	for _, l := range systemLetters {
		set[l.c] = f&l.f != 0
	}
	for i := range MaxKeywords {
		set['a'+i] = f&KeywordFlag(i) != 0
	}
	for c := range 256 {
		if set[c] {
			dst = append(dst, byte(c))
		}
	}
	return dst
}

// systemFlagNames are the IMAP names of the system flags, in FlagNames order.
var systemFlagNames = [...]struct {
	name string
	f    Flags
}{
	{`\Seen`, FlagSeen}, {`\Answered`, FlagAnswered}, {`\Flagged`, FlagFlagged},
	{`\Deleted`, FlagDeleted}, {`\Draft`, FlagDraft}, {`$Forwarded`, FlagForwarded},
}

// validKeyword reports whether kw is an IMAP atom usable as a keyword
// (RFC 3501 flag-keyword: atom characters only, no '\').
func validKeyword(kw string) bool {
	if kw == "" || len(kw) > 100 {
		return false
	}
	for i := 0; i < len(kw); i++ {
		c := kw[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			return false
		}
	}
	return true
}
