package queue

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestReadHeaders(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "m")
	long := "X-Long: " + strings.Repeat("a", 2000) + "\n"
	for _, tc := range []struct{ in, want string }{
		{testMsg, "From: Alice <alice@example.test>\r\nTo: bob@remote.test\r\nSubject: hello\r\nMessage-ID: <m1@example.test>\r\n"},
		{"A: 1\nB: 2\n\nbody\n", "A: 1\r\nB: 2\r\n"},     // bare LF
		{"A: 1\r\n folded\r\n", "A: 1\r\n folded\r\n"},   // no body
		{"A: 1\r\n" + long + "B: 2\r\n\r\n", "A: 1\r\n"}, // stops before a line too long
		{"", ""},
	} {
		os.WriteFile(path, []byte(tc.in), 0o600)
		got, err := readHeaders(path, maxReportHeaders)
		if err != nil || string(got) != tc.want {
			t.Errorf("readHeaders(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	os.WriteFile(path, []byte("A: 1\r\nB: 2\r\n\r\n"), 0o600)
	if got, _ := readHeaders(path, 10); string(got) != "A: 1\r\n" {
		t.Errorf("capped readHeaders = %q", got)
	}
}

// FuzzReport feeds what a remote server and a sender control (the reply
// text, the host name, the original headers) into a DSN, which must still
// parse with every delivery-status field on one line.
func FuzzReport(f *testing.F) {
	f.Add("550 5.1.1 no such user", "mx.remote.test", []byte(testMsg))
	f.Add("451 line one\r\nInjected: yes\r\n\r\nmore", "mx\r\nX: y", []byte("Subject: =?utf-8?q?h=C3=A9?=\r\n\r\n"))
	f.Add("550 caf\xc3\xa9 \xff\x00\x7f", "", []byte("Subject: caf\xc3\xa9\n\nbody"))
	f.Add(strings.Repeat("x", 3000), "h", []byte("--boundary\r\n\r\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, reply, host string, orig []byte) {
		path := filepath.Join(dir, "msg")
		if err := os.WriteFile(path, orig, 0o600); err != nil {
			t.Fatal(err)
		}
		headers, err := readHeaders(path, maxReportHeaders)
		if err != nil {
			t.Fatal(err)
		}
		now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
		rep := &report{
			hostname: "mail.example.test", queueID: "06al34uu02dphl35", dsnID: "06al34uu02dphl36",
			sender: "alice@example.test", arrival: now, now: now, lifetime: time.Hour, headers: headers,
			envID: host, // ENVID and ORCPT come from the network too
			rcpts: []RcptState{
				{Addr: "bob@remote.test", Reply: reply, RemoteMTA: host, LastError: reply, DSNStatus: "5.1.1", LastAttempt: now},
				{Addr: "carol@other.test", LastError: reply, Reason: "delivery time expired after 1h0m0s", ORcpt: reply},
			},
		}
		var buf bytes.Buffer
		if err := writeReport(&buf, rep); err != nil {
			t.Fatal(err)
		}
		p := parseDSN(t, buf.Bytes())
		if len(p.rcpts) != 2 {
			t.Fatalf("%d recipient blocks", len(p.rcpts))
		}
		bob := p.rcpt(t, "bob@remote.test")
		if bob.Len() > 7 {
			t.Errorf("reply text added fields: %v", bob.Map())
		}
		expectField(t, bob, "Status", "5.1.1")
		if d := bob.Get("Diagnostic-Code"); fieldText(reply) != "" && d != "smtp; "+fieldText(reply) {
			t.Errorf("Diagnostic-Code = %q", d)
		}
		if carol := p.rcpt(t, "carol@other.test"); carol.Get("Status") != "5.0.0" || carol.Has("Diagnostic-Code") {
			t.Errorf("carol's block: %v", carol.Map())
		}
		want := 3
		if fieldText(host) != "" {
			want++ // Original-Envelope-Id
		}
		if p.perMessage.Len() != want {
			t.Errorf("per-message fields: %v", p.perMessage.Map())
		}
	})
}

// TestDSNNonASCIIAddresses: a non-ASCII recipient (SMTPUTF8) and its
// ORCPT appear in the 7bit delivery-status part as type utf-8 in
// utf-8-addr-xtext (RFC 6533 section 3), not with their letters replaced
// by "?"; ASCII ones stay rfc822.
func TestDSNNonASCIIAddresses(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	rep := &report{
		hostname: "mail.example.test", queueID: "q1", dsnID: "q2", sender: "alice@example.test",
		arrival: now, now: now, lifetime: time.Hour,
		rcpts: []RcptState{
			{Addr: "élève+1@exemple.test", ORcpt: "utf-8;élève+1@exemple.test", DSNStatus: "5.1.1", Reply: "550 5.1.1 unknown"},
			{Addr: "bob@remote.test", ORcpt: "rfc822;Bob@Remote.test", DSNStatus: "5.1.1", Reply: "550 5.1.1 unknown"},
		},
	}
	var buf bytes.Buffer
	if err := writeReport(&buf, rep); err != nil {
		t.Fatal(err)
	}
	p := parseDSN(t, buf.Bytes())
	if len(p.rcpts) != 2 {
		t.Fatalf("%d recipient blocks", len(p.rcpts))
	}
	expectField(t, p.rcpts[0], "Final-Recipient", `utf-8; \x{E9}l\x{E8}ve\x{2B}1@exemple.test`)
	expectField(t, p.rcpts[0], "Original-Recipient", `utf-8;\x{E9}l\x{E8}ve\x{2B}1@exemple.test`)
	expectField(t, p.rcpts[1], "Final-Recipient", "rfc822; bob@remote.test")
	expectField(t, p.rcpts[1], "Original-Recipient", "rfc822;Bob@Remote.test")
}
