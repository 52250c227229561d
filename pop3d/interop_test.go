package pop3d

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"postie/internal/testutil"
)

// Real clients against the server: Python's poplib and fetchmail. Each
// fetches and deletes a maildrop of mixed messages and every byte is
// compared with what was delivered.

func TestPoplib(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	for _, useTLS := range []bool{false, true} {
		t.Run(fmt.Sprintf("stls=%v", useTLS), func(t *testing.T) {
			serverTLS := testutil.ServerTLS(t, "pop.example.test")
			fx := newInteropFixture(t, serverTLS, mixedMessages())
			if useTLS {
				remoteOnly(fx.srv) // so the password must wait for STLS
			}
			out := t.TempDir()
			args := []string{"testdata/poplib_fetch.py", "127.0.0.1", fx.port(), testUser, testPass, out}
			if useTLS {
				ca := filepath.Join(t.TempDir(), "ca.pem")
				writePEM(t, ca, serverTLS)
				args = append(args, ca)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, python, args...)
			if output, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("poplib: %v\n%s", err, output)
			}
			for i, want := range fx.msgs {
				got, err := os.ReadFile(filepath.Join(out, fmt.Sprintf("%d.eml", i+1)))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("message %d: poplib got %d octets %q..., want %d octets", i+1, len(got), head(got), len(want))
				}
			}
			uidl, err := os.ReadFile(filepath.Join(out, "uidl.txt"))
			if err != nil {
				t.Fatal(err)
			}
			if got, want := string(uidl), fx.uidlListing(); got != want {
				t.Errorf("UIDL listing:\n%s\nwant:\n%s", got, want)
			}
			fx.checkEmpty(t)
		})
	}
}

func head(b []byte) []byte { return b[:min(len(b), 60)] }

// firstDiff shows where got and want part.
func firstDiff(got, want []byte) string {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	from := max(i-20, 0)
	return fmt.Sprintf("at %d: got %q, want %q", i, got[from:min(i+20, len(got))], want[from:min(i+20, len(want))])
}

// writePEM writes the certificate of cfg as a PEM file, for a client's
// trust store.
func writePEM(t *testing.T, path string, cfg *tls.Config) {
	t.Helper()
	data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cfg.Certificates[0].Certificate[0]})
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestFetchmail(t *testing.T) {
	fetchmail, err := exec.LookPath("fetchmail")
	if err != nil {
		t.Skip("fetchmail not installed")
	}
	// fetchmail cuts lines longer than its 8 KiB buffer (far beyond RFC
	// 5322's 998), so it gets a maildrop without those.
	var msgs [][]byte
	for _, m := range mixedMessages() {
		if !hasLineLongerThan(m, 8000) {
			msgs = append(msgs, m)
		}
	}
	fx := newInteropFixture(t, nil, msgs)
	dir := t.TempDir()
	outDir := filepath.Join(dir, "out")
	if err := os.Mkdir(outDir, 0o700); err != nil {
		t.Fatal(err)
	}
	// The MDA writes each message to the next numbered file. fetchmail
	// otherwise adds a Received header (invisible turns that off), strips
	// CRs for an MDA (no stripcr), and rewrites addresses (no rewrite).
	mda := filepath.Join(dir, "mda.sh")
	script := "#!/bin/sh\nn=$(ls '" + outDir + "' | wc -l)\nexec cat > '" + outDir + "'/$((n+1)).eml\n"
	if err := os.WriteFile(mda, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	rc := filepath.Join(dir, "fetchmailrc")
	conf := fmt.Sprintf(`set no syslog
set invisible
poll 127.0.0.1 with proto POP3 service %s uidl no envelope
  user "%s" there with password "%s" is "%s" here
  options fetchall nokeep no rewrite no stripcr no mimedecode sslproto "" no sslcertck
  mda "%s"
`, fx.port(), testUser, testPass, "nobody", mda)
	if err := os.WriteFile(rc, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, fetchmail, "-f", rc, "-v", "--nodetach", "--idfile", filepath.Join(dir, "ids"))
	cmd.Env = append(os.Environ(), "HOME="+dir, "FETCHMAILHOME="+dir)
	output, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("fetchmail: %v\n%s", err, output)
	}
	for i, want := range fx.msgs {
		got, err := os.ReadFile(filepath.Join(outDir, fmt.Sprintf("%d.eml", i+1)))
		if err != nil {
			t.Fatalf("%v\nfetchmail said:\n%s", err, output)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("message %d: fetchmail delivered %d octets, want %d; first difference: %s", i+1, len(got), len(want), firstDiff(got, want))
		}
	}
	if t.Failed() {
		t.Logf("fetchmail said:\n%s", output)
	}
	fx.checkEmpty(t)
}

// interopFixture is a server on 127.0.0.1 over the real store, with a
// maildrop of mixed messages for testUser.
type interopFixture struct {
	*realServer
	msgs  [][]byte
	uidls []string // the UIDL listing the store implies, "n uid" lines
}

func newInteropFixture(t *testing.T, serverTLS *tls.Config, msgs [][]byte) *interopFixture {
	t.Helper()
	rs := startReal(t, t.TempDir(), serverTLS)
	rs.deliver(t, msgs...)
	return &interopFixture{realServer: rs, msgs: msgs, uidls: rs.uidls(t)}
}

func (fx *interopFixture) port() string {
	_, port, _ := net.SplitHostPort(fx.addr)
	return port
}

func (fx *interopFixture) uidlListing() string {
	return strings.Join(fx.uidls, "\n") + "\n"
}

func (fx *interopFixture) checkEmpty(t *testing.T) {
	t.Helper()
	if n := len(fx.messages(t)); n != 0 {
		t.Errorf("%d messages left after the client deleted all", n)
	}
}

func hasLineLongerThan(m []byte, n int) bool {
	for _, line := range bytes.Split(m, []byte("\n")) {
		if len(line) > n {
			return true
		}
	}
	return false
}
