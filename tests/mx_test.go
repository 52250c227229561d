package tests

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// send makes one SMTP transaction and returns the error of the first
// command that failed (as *smtp.SMTPError when the server answered).
func send(addr, from string, to []string, body string) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello("client.remote.test"); err != nil {
		return err
	}
	return transact(c, from, to, body)
}

// transact runs MAIL, RCPT, DATA and QUIT on a ready client.
func transact(c *smtp.Client, from string, to []string, body string) error {
	if err := c.Mail(from, nil); err != nil {
		return err
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write([]byte(body)); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

func replyCode(err error) string {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return fmt.Sprintf("%d %d.%d.%d", se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
	}
	if err == nil {
		return "ok"
	}
	return "error: " + err.Error()
}

func TestMXDeliversIntoMaildirWithTraceHeaders(t *testing.T) {
	in := newInstance(t, "")
	in.addUser("ann@example.test")
	in.start()

	body := "From: bob@remote.test\r\nTo: ann@example.test\r\nSubject: hello\r\n\r\nfirst line\nbare LF line\r\n.dot line\r\n"
	if err := send(in.ports["smtp"], "bob@remote.test", []string{"Ann+lists@EXAMPLE.test"}, body); err != nil {
		t.Fatalf("send: %v\n%s", err, in.log())
	}
	msgs := messages(t, in.maildir("example.test", "ann"))
	if len(msgs) != 1 {
		t.Fatalf("want 1 message in ann's INBOX, got %d", len(msgs))
	}
	for name, b := range msgs {
		if !strings.HasPrefix(name, "new/") {
			t.Errorf("fresh delivery is in %s, want new/", name)
		}
		if m := regexp.MustCompile(`,S=(\d+)`).FindStringSubmatch(name); m == nil || m[1] != fmt.Sprint(len(b)) {
			t.Errorf("name %s does not carry the size %d", name, len(b))
		}
		s := string(b)
		for _, want := range []string{"Return-Path: <bob@remote.test>\r\n", "Delivered-To: ann@example.test\r\n", "Received: from client.remote.test ([127.0.0.1])", "by mx.example.test", "Subject: hello\r\n", "first line\r\nbare LF line\r\n.dot line\r\n"} {
			if !strings.Contains(s, want) {
				t.Errorf("stored message lacks %q:\n%s", want, s)
			}
		}
		if strings.Contains(strings.ReplaceAll(s, "\r\n", ""), "\n") {
			t.Errorf("stored message has a bare LF:\n%q", s)
		}
	}
}

func TestMXReplyCodes(t *testing.T) {
	in := newInstance(t, "")
	in.addUser("ann@example.test")
	in.addUser("full@example.test", "600") // room for one ~420-byte copy, not two
	in.start()
	addr := in.ports["smtp"]
	msg := "Subject: x\r\n\r\n" + strings.Repeat("filler\r\n", 20)

	cases := []struct {
		name string
		to   []string
		want string
	}{
		{"unknown local user", []string{"nobody@example.test"}, "550 5.1.1"},
		{"foreign domain: no open relay", []string{"victim@elsewhere.test"}, "554 5.7.1"},
		{"postmaster of every domain", []string{"postmaster@other.test"}, "ok"},
		{"the first message fits the quota", []string{"full@example.test"}, "ok"},
		{"the second does not", []string{"full@example.test"}, "552 5.2.2"},
	}
	for _, c := range cases {
		if got := replyCode(send(addr, "bob@remote.test", c.to, msg)); got != c.want {
			t.Errorf("%s: got %s, want %s", c.name, got, c.want)
		}
	}

	var many []string
	for i := 0; i < 21; i++ {
		many = append(many, "ann@example.test")
	}
	if got := replyCode(send(addr, "bob@remote.test", many, msg)); got != "452 4.5.3" {
		t.Errorf("21 recipients with max_recipients=20: got %s, want 452 4.5.3", got)
	}
	big := "Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("x", 998)+"\r\n", 1100)
	if got := replyCode(send(addr, "bob@remote.test", []string{"ann@example.test"}, big)); got != "552 5.3.4" {
		t.Errorf("over max_message_size: got %s, want 552 5.3.4", got)
	}
	// Refused mail is not stored: ann has only the postmaster message
	// (postmaster@other.test has no user there, so it reaches the first user).
	if n := len(messages(t, in.maildir("example.test", "ann"))); n > 1 {
		t.Errorf("ann has %d messages; refused mail must not be stored", n)
	}
}

func TestMXParallelSessionsEveryMessageOnce(t *testing.T) {
	in := newInstance(t, "")
	const users, sessions, total = 10, 50, 1000
	for u := 0; u < users; u++ {
		in.addUser(fmt.Sprintf("u%d@example.test", u))
	}
	in.start()

	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, sessions)
	for s := 0; s < sessions; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n := next.Add(1) - 1
				if n >= total {
					return
				}
				to := fmt.Sprintf("u%d@example.test", n%users)
				body := fmt.Sprintf("Subject: load %d\r\nX-Seq: %d\r\n\r\nbody of %d\r\n", n, n, n)
				if err := send(in.ports["smtp"], "load@remote.test", []string{to}, body); err != nil {
					errs <- fmt.Errorf("message %d: %w", n, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for u := 0; u < users; u++ {
		for _, b := range messages(t, in.maildir("example.test", fmt.Sprintf("u%d", u))) {
			m := regexp.MustCompile(`X-Seq: (\d+)`).FindSubmatch(b)
			if m == nil {
				t.Fatalf("message without X-Seq: %q", b)
			}
			seen[string(m[1])]++
		}
	}
	if len(seen) != total {
		t.Errorf("%d distinct messages stored, want %d", len(seen), total)
	}
	for seq, n := range seen {
		if n != 1 {
			t.Errorf("message %s stored %d times", seq, n)
		}
	}
}

// TestCrashSafety kills the server with SIGKILL in the middle of a load and
// checks the durability promise: every message answered 250 is in its
// Maildir, complete, and no partial file is visible in new/ or cur/.
func TestCrashSafety(t *testing.T) {
	in := newInstance(t, "")
	in.addUser("ann@example.test")
	in.start()

	const sessions = 16
	var acked sync.Map
	var next atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	payload := strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyz\r\n", 200) // ~7.8 KB
	for s := 0; s < sessions; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				n := next.Add(1)
				body := fmt.Sprintf("Subject: crash %d\r\nX-Seq: %d\r\n\r\n%sEND %d\r\n", n, n, payload, n)
				if err := send(in.ports["smtp"], "load@remote.test", []string{"ann@example.test"}, body); err == nil {
					acked.Store(n, true)
				} else if errors.Is(err, syscall.ECONNREFUSED) {
					return
				}
			}
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	in.kill()
	close(stop)
	wg.Wait()

	stored := map[int64]bool{}
	root := in.maildir("example.test", "ann")
	for name, b := range messages(t, root) {
		m := regexp.MustCompile(`X-Seq: (\d+)`).FindSubmatch(b)
		if m == nil {
			t.Errorf("%s: partial or foreign file in the Maildir: %q", name, b[:min(len(b), 200)])
			continue
		}
		var n int64
		fmt.Sscan(string(m[1]), &n)
		if !bytes.HasSuffix(b, []byte(fmt.Sprintf("%sEND %d\r\n", payload, n))) {
			t.Errorf("%s: message %d is incomplete (%d bytes)", name, n, len(b))
		}
		if stored[n] {
			t.Errorf("message %d stored twice", n)
		}
		stored[n] = true
	}
	count := 0
	acked.Range(func(k, _ any) bool {
		count++
		if !stored[k.(int64)] {
			t.Errorf("message %d was answered 250 but is not in the Maildir", k)
		}
		return true
	})
	if count == 0 {
		t.Fatalf("no message was acknowledged before the kill; the test proved nothing\n%s", in.log())
	}
	t.Logf("%d messages acknowledged before SIGKILL, %d files stored", count, len(stored))

	// The server starts again on the same data, and whatever a killed
	// delivery left in tmp/ never shows as mail: after one more message the
	// folder holds exactly what was stored before plus that one.
	in.start()
	if err := send(in.ports["smtp"], "load@remote.test", []string{"ann@example.test"}, "Subject: after\r\nX-Seq: 0\r\n\r\nEND 0\r\n"); err != nil {
		t.Fatalf("after restart: %v", err)
	}
	if n := len(messages(t, root)); n != len(stored)+1 {
		t.Fatalf("%d messages after the restart and one more delivery, want %d", n, len(stored)+1)
	}
}

// TestLateFailureIsBounced: when one recipient of a message fails during
// DATA (its mailbox filled up after RCPT said yes) while another got the
// message, SMTP can only answer 250; the failed copy must not be lost
// silently, so the sender gets a bounce for it.
func TestLateFailureIsBounced(t *testing.T) {
	in := newInstance(t, "")
	in.addUser("ann@example.test")
	in.addUser("carl@example.test")
	in.addUser("full@example.test", "600")
	in.start()
	msg := "Subject: x\r\n\r\n" + strings.Repeat("filler\r\n", 20)
	if err := send(in.ports["smtp"], "bob@remote.test", []string{"full@example.test"}, msg); err != nil {
		t.Fatal(err)
	}
	msg = "From: carl@example.test\r\nSubject: to both\r\n\r\n" + strings.Repeat("filler\r\n", 20)
	if err := send(in.ports["smtp"], "carl@example.test", []string{"ann@example.test", "full@example.test"}, msg); err != nil {
		t.Fatalf("mixed outcome: %v", err)
	}
	if n := len(messages(t, in.maildir("example.test", "ann"))); n != 1 {
		t.Fatalf("ann has %d messages, want 1", n)
	}
	var dsn []byte
	waitFor(t, "a bounce for full@ in carl's INBOX", 10*time.Second, func() bool {
		for _, b := range messages(t, in.maildir("example.test", "carl")) {
			dsn = b
			return true
		}
		return false
	})
	for _, want := range []string{"Final-Recipient: rfc822; full@example.test", "Status: 5.2.2", "Subject: to both"} {
		if !bytes.Contains(dsn, []byte(want)) {
			t.Errorf("bounce lacks %q:\n%s", want, dsn)
		}
	}
	if bytes.Contains(dsn, []byte("ann@example.test")) && bytes.Contains(dsn, []byte("Final-Recipient: rfc822; ann")) {
		t.Errorf("the bounce names ann, who got the message:\n%s", dsn)
	}
}
