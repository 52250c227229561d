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

	"github.com/emersion/go-imap/v2"
)

// TestPythonClient plays a Thunderbird-like session with a second, independent client: Python's imaplib.
func TestPythonClient(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not found")
	}
	ts := newTestServer(t)
	for i, s := range []string{"first", "second", "third"} {
		ts.deliver(testMessage(i+1, s))
	}
	host, port, _ := net.SplitHostPort(ts.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "testdata/thunderbird.py", host, port, testUser, testPass)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	var out []string
	for sc.Scan() {
		line := sc.Text()
		out = append(out, line)
		if line == "IDLING" {
			ts.deliver(testMessage(4, "arrives during idle"))
			io.WriteString(stdin, "go\n")
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("python: %v\nstdout: %v\nstderr: %s", err, out, stderr.String())
	}
	if len(out) == 0 || out[len(out)-1] != "OK" {
		t.Fatalf("python output %v\n%s", out, stderr.String())
	}
	// What the script did is really in the store.
	c := ts.dial(nil)
	for box, want := range map[string]uint32{"INBOX": 2, "Sent": 1, "Trash": 1} {
		st, err := c.Status(box, &imap.StatusOptions{NumMessages: true}).Wait()
		if err != nil || *st.NumMessages != want {
			t.Errorf("%s: %v messages (%v), want %d", box, st, err, want)
		}
	}
}
