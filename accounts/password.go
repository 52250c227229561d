package accounts

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// maxPasswordLen bounds what we hash: no real password is longer, and a
// megabyte "password" from the network should not cost us anything.
const maxPasswordLen = 1024

// hashParams are the argon2id cost parameters of new hashes.
type hashParams struct {
	time    uint32 // passes
	memory  uint32 // KiB
	threads uint8
	saltLen uint32
	keyLen  uint32
}

// defaultParams are one of OWASP's equivalent argon2id settings (7 MiB, 5
// passes, 1 lane), about as costly in time as its 19 MiB, 2-pass baseline
// (30-50 ms on one core here) but with a third of the memory: a burst of
// logins (every client reconnecting after a restart) no longer leaves the
// server's resident memory tens of MiB higher for minutes. argon2id is
// chosen over bcrypt because it is memory-hard, has no 72-byte password
// limit, and is the current recommendation (RFC 9106, OWASP). Hashes made
// with other parameters keep verifying: the parameters are in the hash.
func defaultParams() hashParams {
	return hashParams{time: 5, memory: 7 * 1024, threads: 1, saltLen: 16, keyLen: 32}
}

// Limits on parameters read from a stored hash, so that a typo in the file
// cannot make every login allocate gigabytes or spin for minutes.
const (
	maxArgonMemory = 1 << 20 // KiB (1 GiB)
	maxArgonTime   = 64
)

// HashPassword returns an argon2id hash of pw in the PHC string form
// "$argon2id$v=19$m=7168,t=5,p=1$<salt>$<key>", the form accounts.toml stores.
func HashPassword(pw string) (string, error) {
	return hashPassword(pw, defaultParams())
}

func hashPassword(pw string, p hashParams) (string, error) {
	if pw == "" {
		return "", errors.New("accounts: empty password")
	}
	if len(pw) > maxPasswordLen {
		return "", fmt.Errorf("accounts: password longer than %d bytes", maxPasswordLen)
	}
	salt := make([]byte, p.saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("accounts: hash password: %w", err)
	}
	key := argon2.IDKey([]byte(pw), salt, p.time, p.memory, p.threads, p.keyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.memory, p.time, p.threads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// CheckPassword reports whether pw matches hash, an argon2id PHC string or a
// bcrypt hash ("$2a$", "$2b$", "$2y$"). A malformed hash matches nothing.
func CheckPassword(hash, pw string) bool {
	if len(pw) > maxPasswordLen {
		return false
	}
	if strings.HasPrefix(hash, "$2") {
		return bcrypt.CompareHashAndPassword([]byte(hash), []byte(pw)) == nil
	}
	a, err := parseArgon2id(hash)
	if err != nil {
		return false
	}
	got := argon2.IDKey([]byte(pw), a.salt, a.time, a.memory, a.threads, uint32(len(a.key)))
	return subtle.ConstantTimeCompare(got, a.key) == 1
}

// checkHashSyntax reports why hash is not a hash CheckPassword understands.
// It keeps plain-text passwords and typos out of accounts.toml.
func checkHashSyntax(hash string) error {
	switch {
	case hash == "":
		return errors.New("empty password hash")
	case strings.HasPrefix(hash, "$2"):
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return fmt.Errorf("bad bcrypt hash: %w", err)
		}
		return nil
	case strings.HasPrefix(hash, "$argon2id$"):
		_, err := parseArgon2id(hash)
		return err
	}
	return errors.New(`password is not an argon2id ("$argon2id$...") or bcrypt ("$2a$...") hash`)
}

type argon2Hash struct {
	time, memory uint32
	threads      uint8
	salt, key    []byte
}

// parseArgon2id parses "$argon2id$v=19$m=M,t=T,p=P$salt$key" (base64 without
// padding, as the reference implementation writes it).
func parseArgon2id(s string) (*argon2Hash, error) {
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return nil, errors.New("bad argon2id hash: want $argon2id$v=19$m=..,t=..,p=..$salt$key")
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return nil, fmt.Errorf("bad argon2id hash: unsupported version %q", parts[2])
	}
	var h argon2Hash
	for _, kv := range strings.Split(parts[3], ",") {
		k, v, _ := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("bad argon2id hash: parameter %q", kv)
		}
		switch k {
		case "m":
			h.memory = uint32(n)
		case "t":
			h.time = uint32(n)
		case "p":
			if n > 255 {
				return nil, fmt.Errorf("bad argon2id hash: parameter %q", kv)
			}
			h.threads = uint8(n)
		default:
			return nil, fmt.Errorf("bad argon2id hash: unknown parameter %q", kv)
		}
	}
	switch {
	case h.time < 1 || h.time > maxArgonTime:
		return nil, fmt.Errorf("bad argon2id hash: t=%d out of range 1..%d", h.time, maxArgonTime)
	case h.threads < 1:
		return nil, errors.New("bad argon2id hash: p must be at least 1")
	case h.memory < 8*uint32(h.threads) || h.memory > maxArgonMemory:
		return nil, fmt.Errorf("bad argon2id hash: m=%d out of range %d..%d", h.memory, 8*uint32(h.threads), maxArgonMemory)
	}
	var err error
	if h.salt, err = base64.RawStdEncoding.DecodeString(parts[4]); err != nil || len(h.salt) < 8 {
		return nil, errors.New("bad argon2id hash: salt")
	}
	if h.key, err = base64.RawStdEncoding.DecodeString(parts[5]); err != nil || len(h.key) < 16 || len(h.key) > 128 {
		return nil, errors.New("bad argon2id hash: key")
	}
	return &h, nil
}
