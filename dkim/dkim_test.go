package dkim

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	msgdkim "github.com/emersion/go-msgauth/dkim"
)

const testMessage = "From: Ann <ann@example.test>\r\n" +
	"To: bob@remote.test\r\n" +
	"Subject: hello\r\n" +
	"Date: Mon, 02 Jan 2006 15:04:05 +0000\r\n" +
	"Message-ID: <1@example.test>\r\n" +
	"X-Unsigned: may be changed\r\n" +
	"\r\n" +
	"Hello Bob,\r\n" +
	"\r\n" +
	".a line with a leading dot\r\n"

// lookupFor answers TXT queries with exactly the record KeyGen printed.
func lookupFor(name, value string) func(string) ([]string, error) {
	return func(q string) ([]string, error) {
		if q == name {
			return []string{value}, nil
		}
		return nil, fmt.Errorf("no TXT for %s", q)
	}
}

func verify(t *testing.T, msg []byte, name, value string) *msgdkim.Verification {
	t.Helper()
	vs, err := msgdkim.VerifyWithOptions(bytes.NewReader(msg), &msgdkim.VerifyOptions{LookupTXT: lookupFor(name, value)})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if len(vs) != 1 {
		t.Fatalf("got %d verifications, want 1", len(vs))
	}
	return vs[0]
}

func TestKeyGenSignVerify(t *testing.T) {
	dir := t.TempDir()
	name, value, err := KeyGen(dir, "Example.TEST.", "postie")
	if err != nil {
		t.Fatal(err)
	}
	if name != "postie._domainkey.example.test" {
		t.Errorf("txt name = %q", name)
	}
	if !strings.HasPrefix(value, "v=DKIM1; k=rsa; p=MII") {
		t.Errorf("txt value = %q", value)
	}
	fi, err := os.Stat(filepath.Join(dir, "example.test.postie.key"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key mode = %v, want 0600", fi.Mode().Perm())
	}
	if leftovers, _ := filepath.Glob(filepath.Join(dir, ".keygen-*")); len(leftovers) != 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}
	if n, v, err := Record(dir, "example.test", "postie"); err != nil || n != name || v != value {
		t.Errorf("Record = %q, %q, %v; want KeyGen's", n, v, err)
	}

	s, err := LoadSigner(dir, "postie", []string{"example.test", "other.test"})
	if err != nil {
		t.Fatal(err)
	}
	if !s.Has("EXAMPLE.test") || s.Has("other.test") {
		t.Fatalf("Has: example.test=%v other.test=%v", s.Has("example.test"), s.Has("other.test"))
	}

	var out bytes.Buffer
	signed, err := sign(s, &out, strings.NewReader(testMessage), "example.test")
	if err != nil || !signed {
		t.Fatalf("Sign = %v, %v", signed, err)
	}
	if !strings.HasPrefix(out.String(), "DKIM-Signature: ") || !strings.HasSuffix(out.String(), testMessage) {
		t.Fatalf("signed message malformed:\n%s", out.String())
	}
	for _, want := range []string{"c=relaxed/relaxed", "a=rsa-sha256", "d=example.test", "s=postie"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("signature lacks %q", want)
		}
	}
	v := verify(t, out.Bytes(), name, value)
	if v.Err != nil {
		t.Fatalf("signature does not verify: %v", v.Err)
	}
	if v.Domain != "example.test" {
		t.Errorf("verified domain = %q", v.Domain)
	}
	for _, k := range v.HeaderKeys {
		if strings.EqualFold(k, "X-Unsigned") {
			t.Errorf("signed a field outside the list: %v", v.HeaderKeys)
		}
	}

	// A change to a signed field must break the signature.
	tampered := bytes.Replace(out.Bytes(), []byte("Subject: hello"), []byte("Subject: HELLO"), 1)
	if v := verify(t, tampered, name, value); v.Err == nil {
		t.Error("tampered message still verifies")
	}
	// Relaxed canonicalisation tolerates whitespace changes in the body.
	relaxed := bytes.Replace(out.Bytes(), []byte("Hello Bob,"), []byte("Hello   Bob,  "), 1)
	if v := verify(t, relaxed, name, value); v.Err != nil {
		t.Errorf("relaxed body change broke the signature: %v", v.Err)
	}
}

func TestSignUnknownDomainCopies(t *testing.T) {
	s, err := LoadSigner(t.TempDir(), "postie", []string{"example.test"})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	signed, err := sign(s, &out, strings.NewReader(testMessage), "example.test")
	if err != nil || signed {
		t.Fatalf("Sign = %v, %v; want false, nil", signed, err)
	}
	if out.String() != testMessage {
		t.Errorf("message changed")
	}
	var nilSigner *Signer
	if nilSigner.Has("example.test") {
		t.Error("nil signer has a key")
	}
	if sig, err := nilSigner.Signature(strings.NewReader(testMessage), "example.test"); sig != "" || err != nil {
		t.Errorf("nil signer Signature = %q, %v", sig, err)
	}
}

// nonSeeker hides bytes.Reader's Seek: Signature must not rely on it.
type nonSeeker struct{ io.Reader }

// The signature over a message read from its current position (not from
// the start of the reader) verifies once prepended.
func TestSignaturePrependedVerifies(t *testing.T) {
	dir := t.TempDir()
	name, value, err := KeyGen(dir, "example.test", "sel1")
	if err != nil {
		t.Fatal(err)
	}
	s, err := LoadSigner(dir, "sel1", []string{"example.test"})
	if err != nil {
		t.Fatal(err)
	}
	prefix := "garbage before the message"
	r := strings.NewReader(prefix + testMessage)
	r.Seek(int64(len(prefix)), io.SeekStart)
	for _, in := range []io.Reader{r, nonSeeker{strings.NewReader(testMessage)}} {
		var out bytes.Buffer
		if signed, err := sign(s, &out, in, "example.test"); err != nil || !signed {
			t.Fatalf("Sign(%T) = %v, %v", in, signed, err)
		}
		if !strings.HasSuffix(out.String(), "\r\n"+testMessage) {
			t.Fatalf("Sign(%T) output does not end with the message", in)
		}
		if v := verify(t, out.Bytes(), name, value); v.Err != nil {
			t.Errorf("Sign(%T): %v", in, v.Err)
		}
	}
}

func TestKeyGenRefusesOverwrite(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := KeyGen(dir, "example.test", "postie"); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "example.test.postie.key")
	before, _ := os.ReadFile(path)
	if _, _, err := KeyGen(dir, "example.test", "postie"); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("second KeyGen: err = %v, want 'already exists'", err)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Error("key was overwritten")
	}
	// The atomic link also refuses when the early check is raced.
	if err := writeNew(path, []byte("x")); err == nil {
		t.Error("writeNew replaced an existing file")
	}
}

func TestBadNames(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ domain, selector string }{
		{"../etc", "postie"},
		{"a/b.test", "postie"},
		{"", "postie"},
		{"[127.0.0.1]", "postie"},
		{"example.test", "../x"},
		{"example.test", "a/b"},
		{"example.test", ""},
		{"example.test", "a..b"},
	} {
		if _, _, err := KeyGen(dir, c.domain, c.selector); err == nil {
			t.Errorf("KeyGen(%q, %q) accepted", c.domain, c.selector)
		}
		if _, err := LoadSigner(dir, c.selector, []string{c.domain}); err == nil {
			t.Errorf("LoadSigner(%q, %q) accepted", c.selector, c.domain)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Errorf("files created for bad names: %v", entries)
	}
}

func TestLoadPKCS1AndBadKeys(t *testing.T) {
	dir := t.TempDir()
	key, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := os.WriteFile(filepath.Join(dir, "old.test.s.key"), pkcs1, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := LoadSigner(dir, "s", []string{"old.test"})
	if err != nil || !s.Has("old.test") {
		t.Fatalf("PKCS#1 key: %v", err)
	}
	_, value, err := Record(dir, "old.test", "s")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := sign(s, &out, strings.NewReader(testMessage), "old.test"); err != nil {
		t.Fatal(err)
	}
	if v := verify(t, out.Bytes(), "s._domainkey.old.test", value); v.Err != nil {
		t.Errorf("PKCS#1 key signature: %v", v.Err)
	}

	if err := os.WriteFile(filepath.Join(dir, "bad.test.s.key"), []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSigner(dir, "s", []string{"old.test", "bad.test"}); err == nil {
		t.Error("LoadSigner accepted a corrupt key file")
	}
	_, _, err = Record(dir, "missing.test", "s")
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Record of a missing key: %v", err)
	}
}

func TestSignMalformedMessage(t *testing.T) {
	dir := t.TempDir()
	s := keyedSigner(t, dir)
	// No blank line ending the header: go-msgauth cannot sign it.
	if _, err := s.Signature(strings.NewReader("From: a@example.test"), "example.test"); err == nil {
		t.Error("signed a message without a header end")
	}
}

func FuzzSign(f *testing.F) {
	dir := f.TempDir()
	s := keyedSigner(f, dir)
	f.Add([]byte(testMessage))
	f.Add([]byte("From: a\n\nbody"))
	f.Add([]byte("\r\n\r\n"))
	f.Add([]byte(" continuation first\r\n\r\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		var out bytes.Buffer
		signed, err := sign(s, &out, bytes.NewReader(msg), "example.test")
		if err == nil && signed && !bytes.HasSuffix(out.Bytes(), msg) {
			t.Fatal("signed output does not end with the message")
		}
	})
}

func BenchmarkSign1MB(b *testing.B) {
	dir := b.TempDir()
	s := keyedSigner(b, dir)
	line := strings.Repeat("x", 76) + "\r\n"
	msg := []byte(testMessage + strings.Repeat(line, (1<<20)/len(line)))
	b.SetBytes(int64(len(msg)))
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.Signature(bytes.NewReader(msg), "example.test"); err != nil {
			b.Fatal(err)
		}
	}
}

// sign writes the message with its DKIM-Signature prepended, as outbound
// does with Signature; signed reports whether s had a key for domain.
func sign(s *Signer, w io.Writer, r io.Reader, domain string) (signed bool, err error) {
	if !s.Has(domain) {
		_, err := io.Copy(w, r)
		return false, err
	}
	var buf bytes.Buffer
	sig, err := s.Signature(io.TeeReader(r, &buf), domain)
	if err != nil {
		return false, err
	}
	io.WriteString(w, sig)
	buf.WriteTo(w)
	return sig != "", nil
}

// keyedSigner makes a key for example.test (selector postie) in dir and
// loads a Signer over dir.
func keyedSigner(tb testing.TB, dir string) *Signer {
	tb.Helper()
	if _, _, err := KeyGen(dir, "example.test", "postie"); err != nil {
		tb.Fatal(err)
	}
	s, err := LoadSigner(dir, "postie", []string{"example.test"})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}
