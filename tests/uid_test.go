package tests

import (
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// TestConcurrentSMTPAndLDAKeepUIDsUnique delivers into one mailbox from
// the server (SMTP) and from `postie deliver` processes at the same time,
// with an IMAP session watching, then checks over IMAP that every message
// has its own UID and that the UIDs survive a restart.
func TestConcurrentSMTPAndLDAKeepUIDsUnique(t *testing.T) {
	in := newInstance(t, "")
	in.addUser("ann@example.test")
	in.start()

	watcher := imapLogin(t, in, "ann@example.test")
	if _, err := watcher.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}

	const each = 40
	var wg sync.WaitGroup
	errs := make(chan error, 2*each)
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 0; i < each; i++ {
			if err := send(in.ports["smtp"], "x@remote.test", []string{"ann@example.test"}, fmt.Sprintf("Subject: smtp %d\r\n\r\nx\r\n", i)); err != nil {
				errs <- err
			}
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; i < each; i++ {
			cmd := exec.Command(postieBin, "deliver", "-config", in.config, "-f", "x@remote.test", "ann@example.test")
			cmd.Stdin = strings.NewReader(fmt.Sprintf("Subject: lda %d\n\nx\n", i))
			if out, err := cmd.CombinedOutput(); err != nil {
				errs <- fmt.Errorf("deliver: %v: %s", err, out)
			}
		}
	}()
	// The watching session keeps polling while mail arrives from both sides.
	for i := 0; i < 20; i++ {
		if err := watcher.Noop().Wait(); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	uids := fetchUIDs(t, in)
	if len(uids) != 2*each {
		t.Fatalf("IMAP shows %d messages, want %d", len(uids), 2*each)
	}
	seen := map[imap.UID]bool{}
	for _, u := range uids {
		if seen[u] {
			t.Fatalf("UID %d given twice", u)
		}
		seen[u] = true
	}
	watcher.Close()

	if err := in.stop(); err != nil {
		t.Fatal(err)
	}
	in.start()
	again := fetchUIDs(t, in)
	if fmt.Sprint(again) != fmt.Sprint(uids) {
		t.Fatalf("UIDs changed across a restart:\nbefore %v\nafter  %v", uids, again)
	}
}

func imapLogin(t *testing.T, in *instance, user string) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(in.ports["imap"], nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(user, password(user)).Wait(); err != nil {
		t.Fatalf("IMAP login: %v\n%s", err, in.log())
	}
	return c
}

func fetchUIDs(t *testing.T, in *instance) []imap.UID {
	t.Helper()
	c := imapLogin(t, in, "ann@example.test")
	defer c.Logout()
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	var all imap.SeqSet
	all.AddRange(1, 0)
	msgs, err := c.Fetch(all, &imap.FetchOptions{UID: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var out []imap.UID
	for _, m := range msgs {
		out = append(out, m.UID)
	}
	return out
}
