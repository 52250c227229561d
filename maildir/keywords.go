package maildir

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Keywords live in postie-keywords, one "<index> <keyword>" line each, index
// 0-25 being the letter 'a'+index in the folder's file names (Dovecot's
// dovecot-keywords form). Indexes are never reused within a folder.

func (m *Mailbox) keywordsPath() string { return filepath.Join(m.dir, keywordsFile) }

// loadKeywordsLocked (re)reads postie-keywords if it changed; it reports
// whether new keywords appeared.
func (m *Mailbox) loadKeywordsLocked() bool {
	fi, err := os.Stat(m.keywordsPath())
	if err != nil {
		return false
	}
	stamp := [2]int64{fi.ModTime().UnixNano(), fi.Size()}
	if stamp == m.kwStamp {
		return false
	}
	data, err := os.ReadFile(m.keywordsPath())
	if err != nil {
		return false
	}
	m.kwStamp = stamp
	grew := false
	for line := range strings.Lines(string(data)) {
		line = strings.TrimRight(line, "\r\n")
		sp := strings.IndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		i, err := strconv.Atoi(line[:sp])
		kw := line[sp+1:]
		if err != nil || i < 0 || i >= MaxKeywords || !validKeyword(kw) {
			continue
		}
		if m.kw[i] == "" {
			m.kw[i] = kw
			m.kwDefined |= KeywordFlag(i)
			grew = true
		}
	}
	return grew
}

// checkKeywordsLocked rereads the keyword list when flags found on disk
// (used) carry a keyword letter we cannot name: another process defined it.
func (m *Mailbox) checkKeywordsLocked(used Flags) {
	if used&keywordFlags&^m.kwDefined == 0 {
		return
	}
	if m.loadKeywordsLocked() {
		m.emit(Change{Kind: KeywordsChanged})
	}
}

// findKeywordLocked returns the index of kw (case-insensitive), or -1.
func (m *Mailbox) findKeywordLocked(kw string) int {
	for i, k := range m.kw {
		if k != "" && strings.EqualFold(k, kw) {
			return i
		}
	}
	return -1
}

// ParseFlags turns IMAP flag names into Flags. A keyword the folder does not
// know yet gets the lowest free index, persisted in postie-keywords; more
// than 26 keywords → ErrTooManyKeywords. \Recent is ignored (not stored);
// an unknown system flag or a malformed keyword is ErrInvalidFlag.
func (m *Mailbox) ParseFlags(names []string) (Flags, error) {
	return m.parseFlags(names, true)
}

// LookupFlags is ParseFlags for names that only select (a flag to remove):
// a keyword the folder does not know is no bit at all, and is not defined,
// so such requests cannot use up the folder's 26 keyword slots.
func (m *Mailbox) LookupFlags(names []string) (Flags, error) {
	return m.parseFlags(names, false)
}

func (m *Mailbox) parseFlags(names []string, define bool) (Flags, error) {
	var f Flags
	var missing []string
	m.mu.RLock()
	for _, n := range names {
		g, err := systemFlag(n)
		if err != nil {
			m.mu.RUnlock()
			return 0, err
		}
		if g != 0 || strings.EqualFold(n, `\Recent`) {
			f |= g
			continue
		}
		if i := m.findKeywordLocked(n); i >= 0 {
			f |= KeywordFlag(i)
		} else {
			missing = append(missing, n)
		}
	}
	m.mu.RUnlock()
	if len(missing) == 0 || !define {
		return f, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	g, err := m.defineKeywordsLocked(missing)
	return f | g, err
}

// systemFlag maps a system flag (or $Forwarded) to its bit; 0 with no error
// for a keyword.
func systemFlag(n string) (Flags, error) {
	for _, s := range systemFlagNames {
		if strings.EqualFold(n, s.name) {
			return s.f, nil
		}
	}
	if strings.EqualFold(n, `\Recent`) {
		return 0, nil
	}
	if strings.HasPrefix(n, `\`) || !validKeyword(n) {
		return 0, fmt.Errorf("%w: %q", ErrInvalidFlag, n)
	}
	return 0, nil
}

// defineKeywordsLocked gives indexes to keywords, under the folder's flock
// so that two processes never give one index two names.
func (m *Mailbox) defineKeywordsLocked(kws []string) (Flags, error) {
	unlock, err := m.lockUIDList()
	if err != nil {
		return 0, fmt.Errorf("maildir: keywords: %w", err)
	}
	defer unlock()
	grew := m.loadKeywordsLocked()
	oldKw, oldDefined := m.kw, m.kwDefined // to take back a definition not persisted
	var f Flags
	added := false
	var errOut error
	for _, kw := range kws {
		i := m.findKeywordLocked(kw)
		if i < 0 {
			for j, k := range m.kw {
				if k == "" {
					i = j
					break
				}
			}
			if i < 0 {
				errOut = fmt.Errorf("%w (%d)", ErrTooManyKeywords, MaxKeywords)
				break
			}
			m.kw[i] = kw
			m.kwDefined |= KeywordFlag(i)
			added = true
		}
		f |= KeywordFlag(i)
	}
	if added {
		var b strings.Builder
		for i, k := range m.kw {
			if k != "" {
				fmt.Fprintf(&b, "%d %s\n", i, k)
			}
		}
		if err := m.u.s.fs.WriteFile(m.keywordsPath(), []byte(b.String()), 0o600); err != nil {
			m.kw, m.kwDefined = oldKw, oldDefined
			if grew {
				m.emit(Change{Kind: KeywordsChanged})
			}
			return 0, fmt.Errorf("maildir: keywords: %w", err)
		}
		if fi, err := os.Stat(m.keywordsPath()); err == nil {
			m.kwStamp = [2]int64{fi.ModTime().UnixNano(), fi.Size()}
		}
	}
	if added || grew {
		m.emit(Change{Kind: KeywordsChanged})
	}
	return f, errOut
}

// FlagNames returns the IMAP names of f: system flags first ("\Seen",
// "$Forwarded"...), then the keywords. Keyword bits with no name (a letter
// another writer set without defining it) are left out.
func (m *Mailbox) FlagNames(f Flags) []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.flagNamesLocked(f)
}

func (m *Mailbox) flagNamesLocked(f Flags) []string {
	var out []string
	for _, s := range systemFlagNames {
		if f&s.f != 0 {
			out = append(out, s.name)
		}
	}
	for i, k := range m.kw {
		if f&KeywordFlag(i) != 0 && k != "" {
			out = append(out, k)
		}
	}
	return out
}

// Keywords returns every keyword the folder defines, "$Forwarded" first,
// for FLAGS and PERMANENTFLAGS.
func (m *Mailbox) Keywords() []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := []string{"$Forwarded"}
	for _, k := range m.kw {
		if k != "" {
			out = append(out, k)
		}
	}
	return out
}

// translateFlagsLocked maps flags of a message of src to dst's keyword
// indexes (defining missing keywords in dst). Both locks held. Keywords that
// do not fit are dropped, with a warning.
func (dst *Mailbox) translateFlagsLocked(src *Mailbox, f Flags) Flags {
	if dst == src || f&keywordFlags == 0 {
		return f
	}
	out := f & systemFlags
	var missing []string
	for i := range MaxKeywords {
		if f&KeywordFlag(i) == 0 || src.kw[i] == "" {
			continue
		}
		if j := dst.findKeywordLocked(src.kw[i]); j >= 0 {
			out |= KeywordFlag(j)
		} else {
			missing = append(missing, src.kw[i])
		}
	}
	if len(missing) > 0 {
		g, err := dst.defineKeywordsLocked(missing)
		if err != nil {
			dst.u.log().Warn("maildir: keywords dropped", "mailbox", dst.name, "err", err)
		}
		out |= g
	}
	return out
}
