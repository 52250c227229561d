package imapd

import (
	"context"
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
