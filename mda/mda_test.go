package mda

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"postie/accounts"
	"postie/envelope"
	"postie/maildir"
)

type fakeForwarder struct {
	err    error
	envs   []*envelope.Envelope
	body   []string
	failed [][]error // per EnqueueFailed call
}

func (f *fakeForwarder) EnqueueFailed(ctx context.Context, env *envelope.Envelope, body io.Reader, failed []error) (string, error) {
	if _, err := f.Enqueue(ctx, env, body); err != nil {
		return "", err
	}
	f.failed = append(f.failed, failed)
	return "q2", nil
}

func (f *fakeForwarder) Enqueue(ctx context.Context, env *envelope.Envelope, body io.Reader) (string, error) {
	b, _ := io.ReadAll(body)
	if f.err != nil {
		return "", f.err
	}
	f.envs = append(f.envs, env)
	f.body = append(f.body, string(b))
	return "q1", nil
}

func newTestMDA(t testing.TB, fwd Forwarder) (*Router, string) {
	t.Helper()
	dir := t.TempDir()
	domains := []string{"example.test"}
	admin := &accounts.Admin{Path: filepath.Join(dir, "accounts.toml"), Domains: domains}
	for _, u := range []string{"ann@example.test", "bob@example.test"} {
		if err := admin.AddUser(u, "pw", 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := admin.AddAlias("sales@example.test", []string{"ann@example.test", "ext@remote.test"}); err != nil {
		t.Fatal(err)
	}
	db, err := accounts.Open(admin.Path, domains, nil)
	if err != nil {
		t.Fatal(err)
	}
	mail := filepath.Join(dir, "mail")
	return New(Options{Hostname: "mx.example.test", Directory: db, Store: maildir.NewStore(mail, maildir.StoreOptions{}), Forwarder: fwd}), mail
}

func countMail(t *testing.T, root, user string) int {
	t.Helper()
	n := 0
	for _, sub := range []string{"new", "cur"} {
		entries, _ := os.ReadDir(filepath.Join(root, "example.test", user, sub))
		n += len(entries)
	}
	return n
}

func TestDeliverAliasWithLocalAndRemoteTargets(t *testing.T) {
	fwd := &fakeForwarder{}
	m, root := newTestMDA(t, fwd)
	env := &envelope.Envelope{ID: "t", From: "x@remote.test", To: []string{"sales@example.test", "bob+tag@example.test"}}
	errs := deliver(t, m, env, "Subject: s\n\nbody\n")
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("Deliver = %v", errs)
	}
	if countMail(t, root, "ann") != 1 || countMail(t, root, "bob") != 1 {
		t.Errorf("ann has %d, bob %d messages; want 1 each", countMail(t, root, "ann"), countMail(t, root, "bob"))
	}
	if len(fwd.envs) != 1 || strings.Join(fwd.envs[0].To, ",") != "ext@remote.test" || fwd.envs[0].From != "x@remote.test" {
		t.Fatalf("forwarded: %+v", fwd.envs)
	}
	if !strings.HasPrefix(fwd.body[0], "Received: ") || strings.Contains(fwd.body[0], "Delivered-To") || !strings.HasSuffix(fwd.body[0], "\r\n\r\nbody\r\n") {
		t.Errorf("forwarded body: %q", fwd.body[0])
	}
}

// A failure to queue the remote part of an alias must come before any
// local copy is stored: the sender retries after a 451, and a copy stored
// on the first try would be stored again.
func TestDeliverQueueFailureStoresNothingForThatRecipient(t *testing.T) {
	fwd := &fakeForwarder{err: errors.New("disk full")}
	m, root := newTestMDA(t, fwd)
	env := &envelope.Envelope{ID: "t", From: "x@remote.test", To: []string{"sales@example.test", "bob@example.test"}}
	errs := deliver(t, m, env, "Subject: s\r\n\r\nbody\r\n")
	if e := envelope.AsError(errs[0]); e == nil || !e.Temporary() {
		t.Fatalf("alias with a failed forward: %v, want a temporary error", errs[0])
	}
	if errs[1] != nil {
		t.Fatalf("bob: %v", errs[1])
	}
	if n := countMail(t, root, "ann"); n != 0 {
		t.Errorf("ann got %d copies although her alias failed as a whole", n)
	}
}

func TestCheckRecipient(t *testing.T) {
	m, _ := newTestMDA(t, nil)
	ctx := context.Background()
	if err := m.CheckRecipient(ctx, "ann+x@EXAMPLE.test"); err != nil {
		t.Errorf("ann+x: %v", err)
	}
	if err := m.CheckRecipient(ctx, "nobody@example.test"); !errors.Is(err, envelope.ErrUnknownUser) {
		t.Errorf("nobody: %v", err)
	}
	if err := m.CheckRecipient(ctx, "postmaster@example.test"); err != nil {
		t.Errorf("postmaster: %v", err)
	}
	if e := envelope.AsError(m.CheckRecipient(ctx, "sales@example.test")); e == nil || !e.Temporary() {
		t.Errorf("an alias with a remote target and no forwarder: %v, want temporary", e)
	}
}

// A recipient that fails while another got the message is bounced through
// the queue and reported as handled; an all-failed message is left to the
// caller's reply.
func TestDeliverBouncesLateFailures(t *testing.T) {
	fwd := &fakeForwarder{}
	m, root := newTestMDA(t, fwd)
	admin := &accounts.Admin{Path: filepath.Join(filepath.Dir(root), "accounts.toml"), Domains: []string{"example.test"}}
	if err := admin.SetQuota("bob@example.test", 10); err != nil {
		t.Fatal(err)
	}
	waitQuota := func() bool { u, _ := m.opts.Directory.Lookup("bob@example.test"); return u != nil && u.Quota == 10 }
	for i := 0; i < 50 && !waitQuota(); i++ {
		time.Sleep(50 * time.Millisecond)
	}
	env := &envelope.Envelope{ID: "t", From: "x@remote.test", To: []string{"ann@example.test", "bob@example.test"}}
	errs := deliver(t, m, env, "Subject: s\r\n\r\nbody\r\n")
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("Deliver = %v, want both handled", errs)
	}
	if countMail(t, root, "ann") != 1 || countMail(t, root, "bob") != 0 {
		t.Fatalf("ann has %d, bob %d messages; want 1 and 0", countMail(t, root, "ann"), countMail(t, root, "bob"))
	}
	if len(fwd.failed) != 1 || strings.Join(fwd.envs[0].To, ",") != "bob@example.test" || len(fwd.failed[0]) != 1 || !errors.Is(fwd.failed[0][0], envelope.ErrQuotaExceeded) {
		t.Fatalf("bounce recorded: envs %+v, failed %v", fwd.envs, fwd.failed)
	}
	errs = deliver(t, m, &envelope.Envelope{ID: "t2", From: "x@remote.test", To: []string{"bob@example.test"}}, "x\r\n")
	if !errors.Is(errs[0], envelope.ErrQuotaExceeded) || len(fwd.failed) != 1 {
		t.Fatalf("all-failed: %v, bounces %d; want the error itself and no bounce", errs, len(fwd.failed))
	}
}
