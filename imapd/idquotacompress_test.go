package imapd

import (
	"bufio"
	"context"
	"io"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Python's imaplib, with zlib's DEFLATE (an implementation independent of Go's), asks for ID and
// the quota, turns COMPRESS on and fetches a message.
func TestPythonIDQuotaCompress(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not found")
	}
	qa := &quotaAuth{quota: 100 << 10}
	ts := newTestServer(t, func(o *Options) { qa.fakeAuth = o.Auth.(*fakeAuth); o.Auth = qa; o.Version = "9.9" })
	msg := testMessage(1, "python") + strings.Repeat("line of text to compress\r\n", 3000)
	ts.deliver(msg)
	host, port, _ := net.SplitHostPort(ts.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, py, "testdata/idquotacompress.py", host, port, testUser, testPass).CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	kib := itoa((len(msg) + 1023) / 1024)
	for _, want := range []string{
		`ID OK ("name" "Postie" "version" "9.9")`,
		"CAPS ID QUOTA QUOTA=RES-STORAGE COMPRESS=DEFLATE",
		`QUOTAROOT OK ['INBOX ""'] ['"" (STORAGE ` + kib + ` 100)']`,
		"SELECT OK 1",
		"FETCH OK " + itoa(len(msg)),
		`QUOTA OK "" (STORAGE ` + kib + ` 100)`,
		"LOGOUT BYE",
		"OK",
	} {
		if !strings.Contains(string(out), want+"\n") {
			t.Errorf("python output lacks %q:\n%s", want, out)
		}
	}
}

// Python's imaplib fetches PREVIEW and sets NOTIFY: the initial STATUS, then one after a delivery
// into the watched mailbox.
func TestPythonNotifyPreview(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not found")
	}
	ts := newTestServer(t)
	ts.deliver(testMessage(1, "python"))
	host, port, _ := net.SplitHostPort(ts.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "testdata/notifypreview.py", host, port, testUser, testPass)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sent, err := ts.user().Mailbox("Sent")
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		if sc.Text() == "WAITING" {
			if _, err := sent.Append(strings.NewReader(testMessage(2, "sent")), 0, time.Time{}, nil); err != nil {
				t.Fatal(err)
			}
			time.Sleep(pollRefreshGap + notifyCommandGap)
			io.WriteString(stdin, "go\n")
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("python: %v\n%s%s", err, out.String(), stderr.String())
	}
	v := itoa(int(sent.UIDValidity()))
	for _, want := range []string{
		`PREVIEW OK 1 (PREVIEW "Body of message 1. Second line.")`,
		`NOTIFY OK ['"Sent" (MESSAGES 0 UIDNEXT 1 UIDVALIDITY ` + v + `)']`,
		`NOOP OK ['"Sent" (MESSAGES 1 UIDNEXT 2 UIDVALIDITY ` + v + `)']`,
		"OK",
	} {
		if !strings.Contains(out.String(), want+"\n") {
			t.Errorf("python output lacks %q:\n%s", want, out.String())
		}
	}
}
