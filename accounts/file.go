package accounts

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/BurntSushi/toml"

	"postie/envelope"
	"postie/safeio"
)

// fileData is accounts.toml as decoded and validated, in file order.
// Addresses are normalised: user and alias addresses folded to lower case,
// alias targets with their domain lower-cased (a remote local part keeps
// its case).
type fileData struct {
	Users   []fileUser  `toml:"user"`
	Aliases []fileAlias `toml:"alias"`
}

type fileUser struct {
	Address            string `toml:"address"`
	Password           string `toml:"password"`
	Quota              int64  `toml:"quota"`
	MaxMessagesPerHour int    `toml:"max_messages_per_hour"`
}

type fileAlias struct {
	Address string   `toml:"address"`
	Targets []string `toml:"targets"`
}

// decodeFile parses and validates the contents of accounts.toml; name is
// used in error messages, which carry the line when it is known.
func decodeFile(name string, data []byte) (*fileData, error) {
	var fd fileData
	md, err := toml.Decode(string(data), &fd)
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return nil, fmt.Errorf("accounts: %s: %s", lineRef(name, pe.Position.Line), pe.Message)
	}
	if err != nil {
		return nil, fmt.Errorf("accounts: %s: %w", name, err)
	}
	if keys := md.Undecoded(); len(keys) > 0 {
		k := keys[0]
		return nil, fmt.Errorf("accounts: %s: unknown key %q", lineRef(name, keyLine(data, k[len(k)-1])), k.String())
	}
	userLines := headerLines(data, "user")
	if len(userLines) != len(fd.Users) {
		userLines = nil // inline-table syntax: no header lines to point at
	}
	aliasLines := headerLines(data, "alias")
	if len(aliasLines) != len(fd.Aliases) {
		aliasLines = nil
	}
	seen := make(map[string]bool)
	for i := range fd.Users {
		u := &fd.Users[i]
		if err := u.normalize(); err != nil {
			return nil, entryError(name, "user", i, userLines, err)
		}
		if seen[u.Address] {
			return nil, entryError(name, "user", i, userLines, fmt.Errorf("user %s appears twice", u.Address))
		}
		seen[u.Address] = true
	}
	seen = make(map[string]bool)
	for i := range fd.Aliases {
		a := &fd.Aliases[i]
		if err := a.normalize(); err != nil {
			return nil, entryError(name, "alias", i, aliasLines, err)
		}
		if seen[a.Address] {
			return nil, entryError(name, "alias", i, aliasLines, fmt.Errorf("alias %s appears twice", a.Address))
		}
		seen[a.Address] = true
	}
	return &fd, nil
}

func (u *fileUser) normalize() error {
	addr, err := normalizeUserAddress(u.Address)
	if err != nil {
		return err
	}
	u.Address = addr
	if err := checkHashSyntax(u.Password); err != nil {
		return fmt.Errorf("user %s: %w", addr, err)
	}
	if u.Quota < 0 {
		return fmt.Errorf("user %s: negative quota", addr)
	}
	if u.MaxMessagesPerHour < 0 {
		return fmt.Errorf("user %s: negative max_messages_per_hour", addr)
	}
	return nil
}

func (a *fileAlias) normalize() error {
	addr, err := normalizeAliasAddress(a.Address)
	if err != nil {
		return err
	}
	a.Address = addr
	if len(a.Targets) == 0 {
		return fmt.Errorf("alias %s has no targets", addr)
	}
	seen := make(map[string]bool, len(a.Targets))
	out := a.Targets[:0]
	for _, t := range a.Targets {
		nt, err := normalizeTarget(addr, t)
		if err != nil {
			return err
		}
		if !seen[envelope.Key(nt)] {
			seen[envelope.Key(nt)] = true
			out = append(out, nt)
		}
	}
	a.Targets = out
	return nil
}

// normalizeUserAddress validates a user's address and returns its lookup
// form. A user's local part may not hold '+': that is where tags start.
func normalizeUserAddress(addr string) (string, error) {
	if err := envelope.Validate(addr); err != nil {
		return "", fmt.Errorf("user address: %w", err)
	}
	local, domain := envelope.Split(addr)
	if strings.Contains(local, "+") {
		return "", fmt.Errorf("user address %q: '+' is reserved for +tags", addr)
	}
	if strings.HasPrefix(domain, "[") {
		return "", fmt.Errorf("user address %q: address literals are not mailbox domains", addr)
	}
	return envelope.Key(addr), nil
}

// normalizeAliasAddress validates an alias address, "local@domain" or the
// catch-all "@domain", and returns its lookup form.
func normalizeAliasAddress(addr string) (string, error) {
	if d, ok := strings.CutPrefix(addr, "@"); ok {
		if err := envelope.ValidateDomain(d); err != nil || strings.HasPrefix(d, "[") {
			return "", fmt.Errorf("catch-all alias %q: bad domain", addr)
		}
		return envelope.Key(addr), nil
	}
	if err := envelope.Validate(addr); err != nil {
		return "", fmt.Errorf("alias address: %w", err)
	}
	if _, domain := envelope.Split(addr); strings.HasPrefix(domain, "[") {
		return "", fmt.Errorf("alias address %q: address literals are not our domains", addr)
	}
	return envelope.Key(addr), nil
}

// normalizeTarget validates one target of alias (already normalised).
func normalizeTarget(alias, t string) (string, error) {
	nt, err := envelope.Normalize(t)
	if err != nil {
		return "", fmt.Errorf("alias %s: target: %w", alias, err)
	}
	if envelope.Key(nt) == alias {
		return "", fmt.Errorf("alias %s: targets itself", alias)
	}
	return nt, nil
}

func entryError(name, kind string, i int, lines []int, err error) error {
	if lines != nil {
		return fmt.Errorf("accounts: %s: %w", lineRef(name, lines[i]), err)
	}
	return fmt.Errorf("accounts: %s: %s #%d: %w", name, kind, i+1, err)
}

func lineRef(name string, line int) string {
	if line <= 0 {
		return name
	}
	return name + ":" + strconv.Itoa(line)
}

// headerLines returns the 1-based line numbers of the "[[name]]" headers.
func headerLines(data []byte, name string) []int {
	var lines []int
	for i, l := range bytes.Split(data, []byte("\n")) {
		l = bytes.TrimSpace(l)
		if !bytes.HasPrefix(l, []byte("[[")) {
			continue
		}
		end := bytes.Index(l, []byte("]]"))
		if end < 0 {
			continue
		}
		h := strings.Trim(strings.TrimSpace(string(l[2:end])), `"'`)
		if h == name {
			lines = append(lines, i+1)
		}
	}
	return lines
}

// keyLine returns the first line that assigns key, or 0: a best effort to
// point at a misspelt key.
func keyLine(data []byte, key string) int {
	for i, l := range bytes.Split(data, []byte("\n")) {
		rest, ok := bytes.CutPrefix(bytes.TrimSpace(l), []byte(key))
		if ok && bytes.HasPrefix(bytes.TrimSpace(rest), []byte("=")) {
			return i + 1
		}
	}
	return 0
}

// encodeFile renders fd as accounts.toml. Every value written is a
// validated address or a hash, but quote escapes anything TOML needs anyway.
func encodeFile(fd *fileData) []byte {
	var b bytes.Buffer
	b.WriteString("# Postie accounts: users, password hashes and aliases.\n")
	b.WriteString("# Rewritten by \"postie user ...\" and \"postie alias ...\" (comments are not kept).\n")
	for _, u := range fd.Users {
		fmt.Fprintf(&b, "\n[[user]]\naddress = %s\npassword = %s\nquota = %d\nmax_messages_per_hour = %d\n",
			quote(u.Address), quote(u.Password), u.Quota, u.MaxMessagesPerHour)
	}
	for _, a := range fd.Aliases {
		ts := make([]string, len(a.Targets))
		for i, t := range a.Targets {
			ts[i] = quote(t)
		}
		fmt.Fprintf(&b, "\n[[alias]]\naddress = %s\ntargets = [%s]\n", quote(a.Address), strings.Join(ts, ", "))
	}
	return b.Bytes()
}

// quote writes s as a TOML basic string.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// fileSig identifies one version of the file cheaply, from a stat: an
// atomic rewrite changes the inode, an in-place edit the size or mtime.
type fileSig struct {
	exists    bool
	dev, ino  uint64
	size      int64
	mtimeNano int64
}

func sigOf(fi fs.FileInfo) fileSig {
	s := fileSig{exists: true, size: fi.Size(), mtimeNano: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.dev, s.ino = uint64(st.Dev), uint64(st.Ino)
	}
	return s
}

// statSig stats path; a missing file has the zero signature.
func statSig(path string) (fileSig, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fileSig{}, nil
	}
	if err != nil {
		return fileSig{}, fmt.Errorf("accounts: %w", err)
	}
	return sigOf(fi), nil
}

// readFile reads path and the signature of exactly the version read (fstat
// of the open file, so a concurrent rename cannot mismatch the two). A
// missing file reads as empty.
func readFile(path string) ([]byte, fileSig, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fileSig{}, nil
	}
	if err != nil {
		return nil, fileSig{}, fmt.Errorf("accounts: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fileSig{}, fmt.Errorf("accounts: %w", err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, fileSig{}, fmt.Errorf("accounts: read %s: %w", path, err)
	}
	return data, sigOf(fi), nil
}

// writeFileAtomic replaces path with data, mode 0600, durably; when root
// rewrites the server's file, its owner is kept so the server can still
// read it.
func writeFileAtomic(fsys *safeio.FS, path string, data []byte) error {
	if err := fsys.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("accounts: write %s: %w", path, err)
	}
	return nil
}

// lockFile takes an exclusive flock on path (created 0600 if needed) and
// returns the function that releases it. It serialises the admin commands
// among themselves; the server never takes it (it reads whole renamed files).
func lockFile(path string) (unlock func(), err error) {
	f, err := safeio.Lock(path, false, false)
	if err != nil {
		return nil, fmt.Errorf("accounts: lock: %w", err)
	}
	return func() { f.Close() }, nil // closing the descriptor releases the lock
}
