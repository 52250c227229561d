package maildir

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"postie/envelope"
)

func TestDeliverLayout(t *testing.T) {
	u, root := testUser(t)
	msg := body(1)
	d := deliver(t, u, msg)
	if d.Size != int64(len(msg)) {
		t.Errorf("size %d, want %d", d.Size, len(msg))
	}
	if !strings.HasSuffix(d.Name, ",S="+strconv.Itoa(len(msg))) || len(d.Name) >= 128 || strings.ContainsAny(d.Name, ":/") {
		t.Errorf("bad base name %q", d.Name)
	}
	dir := filepath.Join(root, "example.test", "alice")
	if got := dirNames(t, filepath.Join(dir, "new")); len(got) != 1 || got[0] != d.Name {
		t.Errorf("new/ = %v, want [%s]", got, d.Name)
	}
	if got := dirNames(t, filepath.Join(dir, "tmp")); len(got) != 0 {
		t.Errorf("tmp/ not empty: %v", got)
	}
	b, err := os.ReadFile(filepath.Join(dir, "new", d.Name))
	if err != nil || string(b) != msg {
		t.Errorf("stored %q, %v", b, err)
	}
	fi, _ := os.Stat(filepath.Join(dir, "new", d.Name))
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode())
	}
	if bytes, n, err := u.Usage(); err != nil || bytes != int64(len(msg)) || n != 1 {
		t.Errorf("usage %d %d %v", bytes, n, err)
	}
	// Default folders exist, each with maildirfolder and a UID list.
	for _, f := range []string{".Sent", ".Drafts", ".Trash", ".Junk", ".Archive"} {
		for _, p := range []string{"cur", "new", "tmp", folderMarker, uidlistFile} {
			if _, err := os.Stat(filepath.Join(dir, f, p)); err != nil {
				t.Error(err)
			}
		}
	}
}

// errReader fails after giving some bytes.
type errReader struct{ n int }

func (r *errReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, errors.New("connection reset")
	}
	n := min(len(p), r.n)
	for i := range p[:n] {
		p[i] = 'x'
	}
	r.n -= n
	return n, nil
}

func TestDeliverFailingReaderLeavesNothing(t *testing.T) {
	u, root := testUser(t)
	if _, err := u.Deliver(&errReader{n: 100000}, DeliverOptions{}); err == nil {
		t.Fatal("Deliver succeeded with a failing reader")
	}
	dir := filepath.Join(root, "example.test", "alice")
	for _, d := range []string{"new", "cur", "tmp"} {
		if got := dirNames(t, filepath.Join(dir, d)); len(got) != 0 {
			t.Errorf("%s/ = %v after a failed delivery", d, got)
		}
	}
	if bytes, n, _ := u.Usage(); bytes != 0 || n != 0 {
		t.Errorf("usage %d %d after a failed delivery", bytes, n)
	}
}

// TestDeliverNothingVisibleBeforeComplete holds a delivery in the middle of
// its body and checks that new/ and cur/ stay empty until it completes.
func TestDeliverNothingVisibleBeforeComplete(t *testing.T) {
	u, root := testUser(t)
	dir := filepath.Join(root, "example.test", "alice")
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := u.Deliver(pr, DeliverOptions{})
		done <- err
	}()
	if _, err := pw.Write([]byte("Subject: half\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	// The first half has been consumed by the writer: it must be in tmp/ only.
	if got := dirNames(t, filepath.Join(dir, "new")); len(got) != 0 {
		t.Fatalf("new/ = %v before the message is complete", got)
	}
	if got := dirNames(t, filepath.Join(dir, "tmp")); len(got) != 1 {
		t.Fatalf("tmp/ = %v, want the partial file", got)
	}
	pw.Write([]byte("rest\r\n"))
	pw.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := dirNames(t, filepath.Join(dir, "new")); len(got) != 1 {
		t.Fatalf("new/ = %v after delivery", got)
	}
	if got := dirNames(t, filepath.Join(dir, "tmp")); len(got) != 0 {
		t.Fatalf("tmp/ = %v after delivery", got)
	}
}

func TestDeliverQuota(t *testing.T) {
	u, root := testUser(t)
	msg := strings.Repeat("x", 600)
	if _, err := u.Deliver(strings.NewReader(msg), DeliverOptions{Quota: 1000}); err != nil {
		t.Fatal(err)
	}
	_, err := u.Deliver(strings.NewReader(msg), DeliverOptions{Quota: 1000})
	if !errors.Is(err, ErrQuotaExceeded) {
		t.Fatalf("err = %v, want ErrQuotaExceeded", err)
	}
	if e := envelope.AsError(err); e.Code != 552 || e.Enhanced != [3]int{5, 2, 2} {
		t.Errorf("SMTP outcome %v, want 552 5.2.2", e)
	}
	dir := filepath.Join(root, "example.test", "alice")
	if got := dirNames(t, filepath.Join(dir, "tmp")); len(got) != 0 {
		t.Errorf("tmp/ = %v after a refused delivery", got)
	}
	if got := dirNames(t, filepath.Join(dir, "new")); len(got) != 1 {
		t.Errorf("new/ = %v", got)
	}
	if bytes, n, _ := u.Usage(); bytes != 600 || n != 1 {
		t.Errorf("usage %d %d", bytes, n)
	}
	// The quota Deliver saw also applies to APPEND.
	inbox := mailbox(t, u, "INBOX")
	if _, err := inbox.Append(strings.NewReader(msg), 0, time.Time{}, nil); !errors.Is(err, ErrQuotaExceeded) {
		t.Errorf("Append over quota: %v", err)
	}
	if _, err := u.Deliver(strings.NewReader("small"), DeliverOptions{Quota: 1000}); err != nil {
		t.Errorf("small delivery under quota: %v", err)
	}
}

func TestDeliverRefreshesLoadedInbox(t *testing.T) {
	u, root := testUser(t)
	inbox := mailbox(t, u, "INBOX")
	var rec recorder
	cancel := inbox.Watch(rec.fn)
	defer cancel()
	deliver(t, u, body(1))
	deliver(t, u, body(2))
	if got := summary(rec.take()); got != "A1:1 A2:2" {
		t.Errorf("changes %q", got)
	}
	dir := filepath.Join(root, "example.test", "alice")
	if got := dirNames(t, filepath.Join(dir, "new")); len(got) != 0 {
		t.Errorf("new/ = %v: delivered files should move to cur/", got)
	}
	if got := readAll(t, inbox, 2); got != body(2) {
		t.Errorf("message 2 = %q", got)
	}
}

func TestDeliverToFolderAndConcurrent(t *testing.T) {
	u, _ := testUser(t)
	if _, err := u.Deliver(strings.NewReader(body(1)), DeliverOptions{Mailbox: "Junk"}); err != nil {
		t.Fatal(err)
	}
	if _, err := u.Deliver(strings.NewReader(body(1)), DeliverOptions{Mailbox: "Nope"}); !errors.Is(err, ErrNoSuchMailbox) {
		t.Errorf("deliver to a missing folder: %v", err)
	}
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := u.Deliver(strings.NewReader(body(i)), DeliverOptions{}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if got := len(uidsOf(mailbox(t, u, "INBOX"))); got != 20 {
		t.Errorf("%d messages in INBOX, want 20", got)
	}
	if got := len(uidsOf(mailbox(t, u, "Junk"))); got != 1 {
		t.Errorf("%d messages in Junk, want 1", got)
	}
}
