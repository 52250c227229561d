package tests

import (
	"bytes"
	"fmt"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-msgauth/dkim"
)

// remoteWorld is a fake Internet on loopback: a DNS server and two MX
// sinks for remote.test on distinct loopback addresses with one port, as
// real MX hosts share port 25.
type remoteWorld struct {
	dns       *dnsServer
	primary   string // address the primary MX resolves to (nothing listens there)
	backup    *sink
	extraConf string
}

func newRemoteWorld(t testing.TB) *remoteWorld {
	t.Helper()
	backup := newSink(t, "127.0.0.3:0")
	_, port, _ := net.SplitHostPort(backup.addr)
	w := &remoteWorld{dns: newDNSServer(t), primary: "127.0.0.2", backup: backup}
	w.dns.setMX("remote.test", &net.MX{Host: "mx1.remote.test", Pref: 10}, &net.MX{Host: "mx2.remote.test", Pref: 20})
	w.dns.setA("mx1.remote.test", w.primary)
	w.dns.setA("mx2.remote.test", "127.0.0.3")
	w.extraConf = fmt.Sprintf("\n[outbound]\nresolver = %q\nport = %s\nconnect_timeout = \"2s\"\n", w.dns.addr, port)
	return w
}

// submit sends a message through the submission port as an authenticated
// user, over STARTTLS, the way a mail client does.
func submit(t testing.TB, in *instance, user string, to []string, body string) error {
	t.Helper()
	rcpts := make([]rcptArg, len(to))
	for i, r := range to {
		rcpts[i].to = r
	}
	return submitWith(t, in, user, nil, rcpts, body)
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSubmissionReachesRemoteViaBackupMXSigned is the sending half end to
// end: a client submits to a remote and a local recipient; the local copy
// lands at once, the remote one goes through the queue to the backup MX
// (the primary is down), DKIM-signed with the key `postie dkim keygen`
// made, whose TXT record verifies the signature.
func TestSubmissionReachesRemoteViaBackupMXSigned(t *testing.T) {
	world := newRemoteWorld(t)
	in := newInstance(t, world.extraConf)
	in.addUser("ann@example.test")
	in.addUser("bea@example.test")
	out := in.mustRun("", "dkim", "keygen", "example.test")
	m := regexp.MustCompile(`(?s)(\S+)\. IN TXT \( (.*) \)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("dkim keygen printed no TXT record:\n%s", out)
	}
	if again := in.mustRun("", "dkim", "keygen", "example.test"); !strings.Contains(again, m[0]) {
		t.Fatalf("a second keygen should keep the key and show the same record:\n%s", again)
	}
	txtName, txt := m[1], strings.Join(regexp.MustCompile(`"([^"]*)"`).FindAllString(m[2], -1), "")
	txt = strings.ReplaceAll(txt, `"`, "")
	in.start()

	body := "From: Ann <ann@example.test>\r\nTo: bob@remote.test, bea@example.test\r\nSubject: over the wall\r\n\r\nHello Bob.\r\n"
	if err := submit(t, in, "ann@example.test", []string{"bob@remote.test", "bea@example.test"}, body); err != nil {
		t.Fatalf("submit: %v\n%s", err, in.log())
	}
	if n := len(messages(t, in.maildir("example.test", "bea"))); n != 1 {
		t.Errorf("the local recipient has %d messages right after the 250, want 1", n)
	}
	waitFor(t, "the backup MX to receive the message", 15*time.Second, func() bool { return len(world.backup.messages()) > 0 })
	got := world.backup.messages()[0]
	if got.from != "ann@example.test" || len(got.to) != 1 || got.to[0] != "bob@remote.test" {
		t.Errorf("envelope at the sink: from %q to %v", got.from, got.to)
	}
	for _, want := range []string{"Subject: over the wall", "Hello Bob.", "Message-ID: ", "Date: ", "DKIM-Signature: "} {
		if !bytes.Contains(got.data, []byte(want)) {
			t.Errorf("message at the sink lacks %q:\n%s", want, got.data)
		}
	}
	verifs, err := dkim.VerifyWithOptions(bytes.NewReader(got.data), &dkim.VerifyOptions{
		LookupTXT: func(domain string) ([]string, error) {
			if domain != txtName {
				return nil, fmt.Errorf("unexpected TXT lookup %q", domain)
			}
			return []string{txt}, nil
		},
	})
	if err != nil || len(verifs) != 1 || verifs[0].Err != nil || verifs[0].Domain != "example.test" {
		t.Fatalf("DKIM verification: %v %+v", err, verifs)
	}
	if len(world.backup.messages()) != 1 {
		t.Errorf("the sink got %d copies, want 1", len(world.backup.messages()))
	}
}

// TestPermanentFailureBouncesToLocalSender: the remote MX answers 550; the
// sender gets an RFC 3464 report in their INBOX.
func TestPermanentFailureBouncesToLocalSender(t *testing.T) {
	world := newRemoteWorld(t)
	world.backup.refuse(func(string) error { return errRejected })
	in := newInstance(t, world.extraConf)
	in.addUser("ann@example.test")
	in.start()
	body := "From: ann@example.test\r\nTo: nobody@remote.test\r\nSubject: doomed\r\n\r\nx\r\n"
	if err := submit(t, in, "ann@example.test", []string{"nobody@remote.test"}, body); err != nil {
		t.Fatalf("submit: %v", err)
	}
	var dsn []byte
	waitFor(t, "a bounce in ann's INBOX", 15*time.Second, func() bool {
		for _, b := range messages(t, in.maildir("example.test", "ann")) {
			dsn = b
			return true
		}
		return false
	})
	r, err := mail.CreateReader(bytes.NewReader(dsn))
	if err != nil {
		t.Fatalf("the bounce does not parse: %v\n%s", err, dsn)
	}
	mt, params, _ := r.Header.ContentType()
	if mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Errorf("bounce Content-Type %s %v", mt, params)
	}
	for _, want := range []string{"Return-Path: <>", "Final-Recipient: rfc822; nobody@remote.test", "Action: failed", "Status: 5.1.1", "no such mailbox here", "Subject: doomed"} {
		if !bytes.Contains(dsn, []byte(want)) {
			t.Errorf("bounce lacks %q:\n%s", want, dsn)
		}
	}
}

// TestQueueSurvivesRestart: mail for an unreachable domain waits in the
// queue, shows in `postie queue list`, survives a restart, and is
// delivered once the remote side is back.
func TestQueueSurvivesRestart(t *testing.T) {
	dns := newDNSServer(t)
	dns.setMX("late.test", &net.MX{Host: "mx.late.test", Pref: 10})
	dns.setA("mx.late.test", "127.0.0.4")
	probe, err := net.Listen("tcp", "127.0.0.4:0") // reserve a port, then free it: the MX is down
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(probe.Addr().String())
	probe.Close()
	in := newInstance(t, fmt.Sprintf("\n[outbound]\nresolver = %q\nport = %s\nconnect_timeout = \"1s\"\n", dns.addr, port))
	in.addUser("ann@example.test")
	in.start()
	if err := submit(t, in, "ann@example.test", []string{"carl@late.test"}, "From: ann@example.test\r\nSubject: patience\r\n\r\nx\r\n"); err != nil {
		t.Fatalf("submit: %v", err)
	}
	var listing string
	deadline := time.Now().Add(10 * time.Second)
	for {
		listing = in.mustRun("", "queue", "list")
		if strings.Contains(listing, "carl@late.test") && strings.Contains(listing, "refused") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no failed attempt in the queue listing:\n%s\n%s", listing, in.log())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("queue list:\n%s", listing)
	if err := in.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	back := newSink(t, "127.0.0.4:"+port)
	in.start()
	in.mustRun("", "queue", "flush")
	waitFor(t, "delivery after the restart", 15*time.Second, func() bool { return len(back.messages()) == 1 })
	waitFor(t, "the queue to empty", 5*time.Second, func() bool {
		return strings.Contains(in.mustRun("", "queue", "list"), "empty")
	})
}

// TestNoRelayWithoutAuth: neither the MX nor the submission port relays
// for a client that has not logged in.
func TestNoRelayWithoutAuth(t *testing.T) {
	world := newRemoteWorld(t)
	in := newInstance(t, world.extraConf)
	in.addUser("ann@example.test")
	in.start()
	if got := replyCode(send(in.ports["smtp"], "ann@example.test", []string{"bob@remote.test"}, "Subject: x\r\n\r\nx\r\n")); got != "554 5.7.1" {
		t.Errorf("MX relay attempt: %s, want 554 5.7.1", got)
	}
	if got := replyCode(send(in.ports["submission"], "ann@example.test", []string{"bob@remote.test"}, "Subject: x\r\n\r\nx\r\n")); !strings.HasPrefix(got, "530 ") {
		t.Errorf("unauthenticated submission: %s, want 530", got)
	}
	// The control: the same message from a logged-in user does reach the
	// sink, so an empty sink means refused, not undeliverable. Queued
	// after the attempts above, it is the only message the sink may get.
	if err := submit(t, in, "ann@example.test", []string{"bob@remote.test"}, "From: ann@example.test\r\nSubject: control\r\n\r\nx\r\n"); err != nil {
		t.Fatalf("authenticated submission: %v", err)
	}
	waitFor(t, "the authenticated message at the sink", 15*time.Second, func() bool { return len(world.backup.messages()) > 0 })
	time.Sleep(500 * time.Millisecond)
	msgs := world.backup.messages()
	if len(msgs) != 1 || !bytes.Contains(msgs[0].data, []byte("Subject: control")) {
		t.Fatalf("the sink got %d messages, want only the authenticated one", len(msgs))
	}
}
