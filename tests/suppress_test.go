package tests

import (
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// TestHardBounceSuppressed is the suppression list end to end: the remote
// MX answers 550 5.1.1 to a submitted message; the sender gets the bounce;
// the next submission to that address is refused at RCPT with 550 5.1.1
// and the date of the bounce; `postie suppress list` shows it, `del`
// lifts it; mail from outside is never affected.
func TestHardBounceSuppressed(t *testing.T) {
	world := newRemoteWorld(t)
	world.backup.refuse(func(string) error { return errRejected }) // 550 5.1.1
	in := newInstance(t, world.extraConf)
	in.addUser("ann@example.test")
	in.start()
	body := "From: ann@example.test\r\nTo: nobody@remote.test\r\nSubject: first\r\n\r\nx\r\n"
	if err := submit(t, in, "ann@example.test", []string{"nobody@remote.test"}, body); err != nil {
		t.Fatalf("first submission: %v", err)
	}
	waitFor(t, "the bounce in ann's INBOX", 15*time.Second, func() bool {
		return len(messages(t, in.maildir("example.test", "ann"))) > 0
	})

	err := submit(t, in, "ann@example.test", []string{"nobody@remote.test"}, body)
	var se *smtp.SMTPError
	today := time.Now().UTC().Format(time.DateOnly)
	if !errors.As(err, &se) || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 1, 1}) || !strings.Contains(se.Message, today) {
		t.Fatalf("second submission to the hard-bounced address: %v; want 550 5.1.1 with %s", err, today)
	}
	out := in.mustRun("", "suppress", "list")
	if !strings.Contains(out, "nobody@remote.test") || !strings.Contains(out, "5.1.1") {
		t.Errorf("suppress list:\n%s", out)
	}

	// The MX role never consults the list, even for a listed local address.
	in.mustRun("", "suppress", "add", "ann@example.test")
	if err := send(in.ports["smtp"], "friend@remote.test", []string{"ann@example.test"}, "Subject: hi\r\n\r\nx\r\n"); err != nil {
		t.Errorf("MX delivery to a listed address: %v", err)
	}

	in.mustRun("", "suppress", "del", "nobody@remote.test")
	c, err := smtp.DialStartTLS(in.ports["submission"], &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", "ann@example.test", password("ann@example.test"))); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("ann@example.test", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("nobody@remote.test", nil); err != nil {
		t.Errorf("RCPT after suppress del: %v", err)
	}
}
