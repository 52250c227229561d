// Package dkim makes and keeps our DKIM signing keys and signs outgoing
// messages with them (RFC 6376; relaxed/relaxed, rsa-sha256), on top of
// go-msgauth's dkim package.
//
// One PEM file per domain and selector lives in a key directory, named
// "<domain>.<selector>.key". KeyGen creates one and returns the TXT record
// to publish; EnsureKeys makes one for each domain that has none (what
// `postie serve` does at start). LoadSigner returns a Signer for our
// domains that re-checks each domain's key file (one stat per message) and
// picks up a key that appears, changes or goes away without a restart.
package dkim

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	msgdkim "github.com/emersion/go-msgauth/dkim"

	"postie/envelope"
	"postie/safeio"
)

// keyBits is the RSA modulus size: RFC 8301 requires at least 1024 bits and
// recommends 2048, which still fits one DNS TXT record (as several strings).
const keyBits = 2048

// headerKeys are the fields we sign (RFC 6376 §5.4.1). From is required;
// absent fields are skipped by the signer.
var headerKeys = []string{
	"From", "To", "Cc", "Subject", "Date", "Message-ID", "Reply-To",
	"In-Reply-To", "References", "MIME-Version", "Content-Type",
	"Content-Transfer-Encoding",
}

// Signer signs messages for the domains it holds a key for. It is safe for
// concurrent use; a nil *Signer signs nothing.
//
// Before each use of a domain's key it stats the key file: a file that
// appeared or changed (size, modification time or inode) since it was last
// read is read again, so a key made by `postie dkim keygen` while the
// server runs is used from the next message on. A file that is removed
// stops signing for its domain; a file that cannot be parsed leaves the
// key read before in use (or none) until the file changes again.
type Signer struct {
	selector string
	mu       sync.Mutex
	keys     map[string]*keyFile // by lower-case domain; only our domains
}

// keyFile is one domain's key file and what was last read from it.
type keyFile struct {
	path string
	seen os.FileInfo   // the file as last read; nil when absent
	key  crypto.Signer // nil when there is none (yet)
}

// KeyGen makes a new RSA-2048 key for domain and selector, stores it in dir
// as "<domain>.<selector>.key" (PKCS#8 PEM, mode 0600, written atomically),
// and returns the DNS TXT record to publish, e.g.
// "postie._domainkey.example.test" and "v=DKIM1; k=rsa; p=MIIB...".
// It refuses to replace an existing key: a new key invalidates the record
// already published.
func KeyGen(dir, domain, selector string) (txtName, txtValue string, err error) {
	path, domain, err := keyPath(dir, domain, selector)
	if err != nil {
		return "", "", err
	}
	// Checked again, atomically, by the link below; this early check only
	// spares the user the key generation time.
	if _, err := os.Lstat(path); err == nil {
		return "", "", fmt.Errorf("dkim: key %s: %w", path, ErrKeyExists)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("dkim: keygen: %w", err)
	}
	key, err := rsa.GenerateKey(rand.Reader, keyBits)
	if err != nil {
		return "", "", fmt.Errorf("dkim: keygen: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", fmt.Errorf("dkim: keygen: %w", err)
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if err := writeNew(path, pemBytes); err != nil {
		return "", "", err
	}
	txtValue, err = txtRecord(key.Public())
	if err != nil {
		return "", "", err
	}
	return recordName(domain, selector), txtValue, nil
}

// ErrKeyExists is KeyGen's answer when the domain already has a key for
// the selector: keys are never overwritten (the published record would no
// longer match). Record shows the existing one.
var ErrKeyExists = errors.New("a key already exists")

// Record returns the TXT record for the existing key of domain and
// selector, for showing it again after KeyGen.
func Record(dir, domain, selector string) (txtName, txtValue string, err error) {
	path, domain, err := keyPath(dir, domain, selector)
	if err != nil {
		return "", "", err
	}
	key, err := readKey(path)
	if err != nil {
		return "", "", err
	}
	txtValue, err = txtRecord(key.Public())
	if err != nil {
		return "", "", err
	}
	return recordName(domain, selector), txtValue, nil
}

// LoadSigner loads the keys in dir for the given selector and domains.
// A domain without a key file is simply not signed; a key file that
// cannot be read or parsed is an error.
// Key files that appear or change later are picked up (see Signer).
func LoadSigner(dir, selector string, domains []string) (*Signer, error) {
	s := &Signer{selector: selector, keys: make(map[string]*keyFile)}
	for _, d := range domains {
		path, d, err := keyPath(dir, d, selector)
		if err != nil {
			return nil, err
		}
		kf := &keyFile{path: path}
		if err := kf.refresh(); err != nil {
			return nil, err
		}
		s.keys[d] = kf
	}
	return s, nil
}

// refresh re-reads the key file when it differs from the one last read.
// On a parse error the previous key stays, and the file is not read again
// until it changes.
func (kf *keyFile) refresh() error {
	fi, err := os.Stat(kf.path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			kf.seen, kf.key = nil, nil
			return nil
		}
		return fmt.Errorf("dkim: key: %w", err)
	}
	if kf.seen != nil && sameFile(kf.seen, fi) {
		return nil
	}
	kf.seen = fi
	key, err := readKey(kf.path)
	if err != nil {
		return err
	}
	kf.key = key
	return nil
}

// sameFile reports whether b is a's file, unchanged.
func sameFile(a, b os.FileInfo) bool {
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// key returns the current key for the canonical domain d, or nil.
func (s *Signer) key(d string) crypto.Signer {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	kf := s.keys[d]
	if kf == nil {
		return nil
	}
	_ = kf.refresh() // on error the key read before (if any) stays in use
	return kf.key
}

// Has reports whether s holds a key for domain.
func (s *Signer) Has(domain string) bool {
	return s.key(envelope.CanonDomain(domain)) != nil
}

// Signature reads the whole message from r and returns the DKIM-Signature
// header field for it (name, value and final CRLF), to be prepended to the
// message. It returns "" when s has no key for domain. Callers that can
// read the message twice use it to sign without buffering the message.
func (s *Signer) Signature(r io.Reader, domain string) (string, error) {
	domain = envelope.CanonDomain(domain)
	key := s.key(domain)
	if key == nil {
		return "", nil
	}
	signer, err := msgdkim.NewSigner(&msgdkim.SignOptions{
		Domain:                 domain,
		Selector:               s.selector,
		Signer:                 key,
		Hash:                   crypto.SHA256,
		HeaderCanonicalization: msgdkim.CanonicalizationRelaxed,
		BodyCanonicalization:   msgdkim.CanonicalizationRelaxed,
		HeaderKeys:             headerKeys,
	})
	if err != nil {
		return "", fmt.Errorf("dkim: sign for %s: %w", domain, err)
	}
	if _, err := io.Copy(signer, r); err != nil {
		signer.Close() // stops the signer's goroutine; the copy error is the one to report
		return "", fmt.Errorf("dkim: sign for %s: %w", domain, err)
	}
	if err := signer.Close(); err != nil {
		return "", fmt.Errorf("dkim: sign for %s: %w", domain, err)
	}
	return signer.Signature(), nil
}

// NewKey is a key EnsureKeys made, with the DNS TXT record to publish.
type NewKey struct {
	Domain, TXTName, TXTValue string
}

// EnsureKeys makes a key (see KeyGen) for each of domains that has none
// for selector in dir, and returns those it made. Existing keys are kept.
func EnsureKeys(dir, selector string, domains []string) ([]NewKey, error) {
	var made []NewKey
	for _, d := range domains {
		path, canon, err := keyPath(dir, d, selector)
		if err != nil {
			return made, err
		}
		if _, err := os.Lstat(path); err == nil {
			continue
		}
		name, value, err := KeyGen(dir, canon, selector)
		if errors.Is(err, ErrKeyExists) {
			continue // made concurrently: kept, like any existing key
		}
		if err != nil {
			return made, err
		}
		made = append(made, NewKey{Domain: canon, TXTName: name, TXTValue: value})
	}
	return made, nil
}

// keyPath validates domain and selector, since both become part of a file
// name, and returns the key file's path and the canonical domain.
func keyPath(dir, domain, selector string) (path, canon string, err error) {
	canon = envelope.CanonDomain(domain)
	if err := envelope.ValidateDomain(canon); err != nil || strings.HasPrefix(canon, "[") {
		return "", "", fmt.Errorf("dkim: bad domain %q", domain)
	}
	if !validSelector(selector) {
		return "", "", fmt.Errorf("dkim: bad selector %q", selector)
	}
	return filepath.Join(dir, canon+"."+selector+".key"), canon, nil
}

// validSelector accepts dot-separated DNS labels of letters, digits,
// hyphens and underscores (RFC 6376 §3.1).
func validSelector(sel string) bool {
	if sel == "" || len(sel) > 63 {
		return false
	}
	for _, label := range strings.Split(sel, ".") {
		if label == "" || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
			if !ok {
				return false
			}
		}
	}
	return true
}

func recordName(domain, selector string) string {
	return selector + "._domainkey." + domain
}

// txtRecord formats the public key as an RFC 6376 §3.6.1 key record.
func txtRecord(pub crypto.PublicKey) (string, error) {
	switch pub := pub.(type) {
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return "", fmt.Errorf("dkim: encode public key: %w", err)
		}
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der), nil
	case ed25519.PublicKey:
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub), nil
	default:
		return "", fmt.Errorf("dkim: unsupported key type %T", pub)
	}
}

// readKey parses a PEM private key: PKCS#8 (RSA or Ed25519) or PKCS#1 RSA,
// the forms other tools (openssl, opendkim-genkey) write.
func readKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("dkim: read key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("dkim: key %s: no PEM block", path)
	}
	var key any
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("dkim: key %s: unexpected PEM type %q", path, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("dkim: key %s: %w", path, err)
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < 1024 {
			return nil, fmt.Errorf("dkim: key %s: RSA key of %d bits is too short (RFC 8301)", path, k.N.BitLen())
		}
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	default:
		return nil, fmt.Errorf("dkim: key %s: unsupported key type %T", path, key)
	}
}

// writeNew stores data at path, which must not exist yet, durably and
// without ever replacing a key a concurrent KeyGen made.
func writeNew(path string, data []byte) error {
	if err := (*safeio.FS)(nil).CreateNew(path, data, 0o600); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("dkim: key %s: %w", path, ErrKeyExists)
		}
		return fmt.Errorf("dkim: write key: %w", err)
	}
	return nil
}
