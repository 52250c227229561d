package tests

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"postie/config"
	"postie/internal/testutil"
)

func needPython(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 not installed")
	}
}

// exampleRoles are the listener keys of config.toml.example by the role
// names the log gives them.
var exampleRoles = map[string]string{
	"smtp": "smtp.listen", "submission": "submission.listen", "submissions": "submission.tls_listen",
	"imap": "imap.listen", "imaps": "imap.tls_listen", "pop3": "pop3.listen", "pop3s": "pop3.tls_listen",
	"http": "http.listen", "https": "http.tls_listen",
}

// exampleInstance runs the server on config.toml.example as it ships,
// copied into a temporary directory so its ./data lands there, with one
// change: each of its fixed loopback ports becomes a kernel-picked one, so
// that a quick-start server running beside the tests is neither disturbed
// nor mistaken for ours.
func exampleInstance(t *testing.T) *instance {
	t.Helper()
	const shipped = "../config.toml.example"
	cfg, err := config.Load(shipped)
	if err != nil {
		t.Fatalf("the shipped example does not load: %v", err)
	}
	got := map[string][]string{
		"smtp": cfg.SMTP.Listen, "submission": cfg.Submission.Listen, "submissions": cfg.Submission.TLSListen,
		"imap": cfg.IMAP.Listen, "imaps": cfg.IMAP.TLSListen, "pop3": cfg.POP3.Listen, "pop3s": cfg.POP3.TLSListen,
		"http": cfg.HTTP.Listen, "https": cfg.HTTP.TLSListen,
	}
	promised := map[string]string{} // by role
	byKey := testutil.ExampleListeners(t, "../README.md")
	for role, key := range exampleRoles {
		promised[role] = byKey[key]
	}
	for role, want := range promised {
		if len(got[role]) != 1 || got[role][0] != want {
			t.Fatalf("config.toml.example: %s listens on %v, the README promises %s", role, got[role], want)
		}
	}
	b, err := os.ReadFile(shipped)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	for role, addr := range promised {
		quoted := fmt.Sprintf("%q", addr)
		if n := strings.Count(text, quoted); n != 1 {
			t.Fatalf("config.toml.example names %s (%s) %d times, want once", quoted, role, n)
		}
		text = strings.Replace(text, quoted, `"127.0.0.1:0"`, 1)
	}
	in := &instance{t: t, dir: t.TempDir(), extraRoles: []string{"http", "https"}}
	in.config = filepath.Join(in.dir, "config.toml")
	if err := os.WriteFile(in.config, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return in
}

// TestThunderbirdLikeSession plays what Thunderbird does against `postie
// serve` on the shipped example configuration, with Python's imaplib:
// login, LIST, SELECT, header sync, IDLE while a message arrives by SMTP,
// APPEND to Sent, MOVE to Trash, EXPUNGE.
func TestThunderbirdLikeSession(t *testing.T) {
	needPython(t)
	in := exampleInstance(t)
	in.addUser("ann@example.test")
	in.start()
	const initial = 5
	for i := 0; i < initial; i++ {
		body := fmt.Sprintf("From: bob@remote.test\r\nTo: ann@example.test\r\nSubject: note %d\r\nMessage-ID: <%d@remote.test>\r\n\r\nbody %d\r\n", i, i, i)
		if err := send(in.ports["smtp"], "bob@remote.test", []string{"ann@example.test"}, body); err != nil {
			t.Fatal(err)
		}
	}
	host, port, _ := strings.Cut(in.ports["imap"], ":")
	cmd := exec.Command("python3", "testdata/thunderbird.py", host, port, "ann@example.test", password("ann@example.test"), fmt.Sprint(initial))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stdout)
	done := false
	for lines.Scan() {
		switch lines.Text() {
		case "IDLING":
			time.Sleep(200 * time.Millisecond)
			if err := send(in.ports["smtp"], "bob@remote.test", []string{"ann@example.test"}, "From: bob@remote.test\r\nSubject: arrived during idle\r\n\r\nnew\r\n"); err != nil {
				t.Error(err)
			}
			fmt.Fprintln(stdin, "SENT")
		case "DONE":
			done = true
		}
	}
	if err := cmd.Wait(); err != nil || !done {
		t.Fatalf("the imaplib session failed: %v\n%s\n%s", err, stderr.String(), in.log())
	}
	// The example's data_dir "./data" is the copy's own, beside it.
	if _, err := os.Stat(filepath.Join(in.dir, "data", "tls", "cert.pem")); err != nil {
		t.Errorf("the example config did not keep its data beside itself: %v", err)
	}
}

// TestPOP3FetchAndDeleteWithPoplib fetches mixed mail with Python's poplib
// from `postie serve` and checks every byte against the stored files, then
// deletes it all.
func TestPOP3FetchAndDeleteWithPoplib(t *testing.T) {
	needPython(t)
	in := newInstance(t, "")
	in.addUser("ann@example.test")
	in.start()
	bodies := []string{
		"Subject: plain\r\n\r\nhello\r\n",
		"Subject: dots\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nend\r\n",
		"Subject: 8bit\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nGrüße aus Köln\r\n",
		"Subject: multipart\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\npart one\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n" + strings.Repeat("QUJDRA==\r\n", 500) + "--b--\r\n",
	}
	for _, b := range bodies {
		if err := send(in.ports["smtp"], "bob@remote.test", []string{"ann@example.test"}, b); err != nil {
			t.Fatal(err)
		}
	}
	stored := messages(t, in.maildir("example.test", "ann"))
	if len(stored) != len(bodies) {
		t.Fatalf("%d stored, want %d", len(stored), len(bodies))
	}
	script := `
import poplib, sys
p = poplib.POP3(sys.argv[1], int(sys.argv[2]))
p.user(sys.argv[3]); p.pass_(sys.argv[4])
n, size = p.stat()
for i in range(1, n + 1):
    resp, lines, octets = p.retr(i)
    data = b"\r\n".join(lines) + b"\r\n"
    assert len(data) == octets, (len(data), octets)
    sys.stdout.buffer.write(b"%d\n" % len(data) + data)
    p.dele(i)
p.quit()
`
	host, port, _ := strings.Cut(in.ports["pop3"], ":")
	out, err := exec.Command("python3", "-c", script, host, port, "ann@example.test", password("ann@example.test")).CombinedOutput()
	if err != nil {
		t.Fatalf("poplib: %v\n%s", err, out)
	}
	want := map[string]bool{}
	for _, b := range stored {
		want[string(b)] = true
	}
	r := bufio.NewReader(bytes.NewReader(out))
	got := 0
	for {
		var n int
		if _, err := fmt.Fscanf(r, "%d\n", &n); err != nil {
			break
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(r, buf); err != nil {
			t.Fatal(err)
		}
		if !want[string(buf)] {
			t.Errorf("RETR gave bytes that match no stored message:\n%q", buf)
		}
		got++
	}
	if got != len(bodies) {
		t.Fatalf("poplib fetched %d messages, want %d", got, len(bodies))
	}
	if left := messages(t, in.maildir("example.test", "ann")); len(left) != 0 {
		t.Fatalf("%d messages left after DELE and QUIT", len(left))
	}
}
