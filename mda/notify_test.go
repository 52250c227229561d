package mda

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"postie/accounts"
	"postie/envelope"
)

// NOTIFY=SUCCESS on a local recipient: the copy is stored and the queue
// gets a success notice to send (a nil error in EnqueueFailed), with the
// recipient's parameters; a recipient without it, and the null sender,
// get none.
func TestDeliverSuccessNotice(t *testing.T) {
	fwd := &fakeForwarder{}
	m, root := newTestMDA(t, fwd)
	succ := envelope.RcptParams{Notify: envelope.NotifySuccess, ORcptType: "rfc822", ORcpt: "ann@old.test"}
	env := &envelope.Envelope{ID: "t", From: "x@remote.test", To: []string{"ann@example.test", "bob@example.test"},
		Params: envelope.Params{EnvID: "E9"}, RcptParams: []envelope.RcptParams{succ, {}}}
	errs := deliver(t, m, env, "Subject: s\r\n\r\nbody\r\n")
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("Deliver = %v", errs)
	}
	if countMail(t, root, "ann") != 1 || countMail(t, root, "bob") != 1 {
		t.Fatal("copies not stored")
	}
	if len(fwd.failed) != 1 || len(fwd.failed[0]) != 1 || fwd.failed[0][0] != nil {
		t.Fatalf("notices recorded: %v", fwd.failed)
	}
	got := fwd.envs[0]
	if strings.Join(got.To, ",") != "ann@example.test" || got.RcptParam(0) != succ || got.Params.EnvID != "E9" || got.From != "x@remote.test" {
		t.Errorf("notice envelope: %+v", got)
	}

	env.From = ""
	deliver(t, m, env, "Subject: s\r\n\r\nbody\r\n")
	if len(fwd.failed) != 1 {
		t.Errorf("the null sender got a success notice")
	}
}

// A late failure of a NOTIFY=NEVER recipient is handled without a bounce;
// forwarded copies carry the recipient's parameters on, with the alias as
// ORCPT.
func TestDeliverNotifyNeverAndForward(t *testing.T) {
	fwd := &fakeForwarder{}
	m, root := newTestMDA(t, fwd)
	admin := &accounts.Admin{Path: filepath.Join(filepath.Dir(root), "accounts.toml"), Domains: []string{"example.test"}}
	if err := admin.SetQuota("bob@example.test", 10); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		if u, _ := m.opts.Directory.Lookup("bob@example.test"); u != nil && u.Quota == 10 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	env := &envelope.Envelope{ID: "t", From: "x@remote.test", To: []string{"ann@example.test", "bob@example.test"},
		RcptParams: []envelope.RcptParams{{}, {Notify: envelope.NotifyNever}}}
	errs := deliver(t, m, env, "Subject: s\r\n\r\nbody\r\n")
	if errs[0] != nil || errs[1] != nil || len(fwd.envs) != 0 {
		t.Fatalf("Deliver = %v, queued %d; want both handled and no bounce", errs, len(fwd.envs))
	}

	env = &envelope.Envelope{ID: "t2", From: "x@remote.test", To: []string{"bob@example.test", "sales@example.test"},
		RcptParams: []envelope.RcptParams{{}, {Notify: envelope.NotifyFailure | envelope.NotifyDelay}}}
	deliver(t, m, env, "Subject: s\r\n\r\nbody\r\n")
	var fw *envelope.Envelope
	for _, e := range fwd.envs {
		if len(e.To) == 1 && e.To[0] == "ext@remote.test" {
			fw = e
		}
	}
	if fw == nil {
		t.Fatalf("no forwarded copy: %+v", fwd.envs)
	}
	want := envelope.RcptParams{Notify: envelope.NotifyFailure | envelope.NotifyDelay, ORcptType: "rfc822", ORcpt: "sales@example.test"}
	if fw.RcptParam(0) != want {
		t.Errorf("forwarded params %+v, want %+v", fw.RcptParams, want)
	}
	if len(fwd.failed) != 1 || !errors.Is(fwd.failed[0][0], envelope.ErrQuotaExceeded) {
		t.Errorf("bob's bounce: %v", fwd.failed)
	}
}
