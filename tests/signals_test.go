package tests

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// TestSIGTERMDrains starts a transaction, sends SIGTERM in the middle of
// DATA, and checks that the message still gets its 250 and is stored, that
// new connections are refused, and that the server exits 0.
func TestSIGTERMDrains(t *testing.T) {
	in := newInstance(t, "")
	in.addUser("ann@example.test")
	in.start()

	c, err := smtp.Dial(in.ports["smtp"])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.remote.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("bob@remote.test", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("ann@example.test", nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("Subject: in flight\r\n\r\nfirst half\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := in.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	select {
	case err := <-in.exited:
		in.exited <- err
		t.Fatalf("server exited (%v) with a transaction in flight:\n%s", err, in.log())
	default:
	}
	if _, err := smtp.Dial(in.ports["smtp"]); err == nil {
		t.Error("a new connection was accepted after SIGTERM")
	}
	if _, err := w.Write([]byte("second half\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("the transaction in flight was not completed: %v\n%s", err, in.log())
	}
	c.Quit()
	if err := in.stop(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, in.log())
	}
	msgs := messages(t, in.maildir("example.test", "ann"))
	if len(msgs) != 1 {
		t.Fatalf("%d messages stored, want 1", len(msgs))
	}
	for _, b := range msgs {
		if !strings.Contains(string(b), "first half\r\nsecond half\r\n") {
			t.Errorf("stored message: %q", b)
		}
	}
}

// TestSIGHUPAndLiveAccountChanges: a user added while the server runs can
// receive mail at once, and SIGHUP reloads without stopping the server.
func TestSIGHUPAndLiveAccountChanges(t *testing.T) {
	in := newInstance(t, "")
	in.addUser("ann@example.test")
	in.start()
	if got := replyCode(send(in.ports["smtp"], "x@remote.test", []string{"late@example.test"}, "Subject: 1\r\n\r\nx\r\n")); got != "550 5.1.1" {
		t.Fatalf("before the user exists: %s", got)
	}
	in.addUser("late@example.test")
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := send(in.ports["smtp"], "x@remote.test", []string{"late@example.test"}, "Subject: 2\r\n\r\nx\r\n")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a user added with the CLI is still refused after 5 s: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := in.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if err := send(in.ports["smtp"], "x@remote.test", []string{"ann@example.test"}, "Subject: 3\r\n\r\nx\r\n"); err != nil {
		t.Fatalf("after SIGHUP: %v\n%s", err, in.log())
	}
	if !strings.Contains(in.log(), "SIGHUP") {
		t.Errorf("the log does not show the reload:\n%s", in.log())
	}
}
