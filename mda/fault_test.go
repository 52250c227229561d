package mda

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"postie/envelope"
	"postie/queue"
	"postie/safeio"
)

// injected returns an FS whose faults inj decides on base names, so that
// the test's directory name never matches.
func injected(inj *safeio.Injector) *safeio.FS {
	return &safeio.FS{Fault: func(op safeio.Op, path string) error { return inj.Fault(op, filepath.Base(path)) }}
}

// deliver calls d and demands one result per envelope recipient.
func deliver(t *testing.T, d interface {
	Deliver(context.Context, *envelope.Envelope, io.Reader) []error
}, env *envelope.Envelope, body string) []error {
	t.Helper()
	errs := d.Deliver(context.Background(), env, strings.NewReader(body))
	if len(errs) != len(env.To) {
		t.Fatalf("Deliver gave %d results for %d recipients: %v", len(errs), len(env.To), errs)
	}
	return errs
}

// expectTemp451 fails unless every result is the temporary 451 the SMTP
// layer answers a local fault with, and the injected fault is its cause.
func expectTemp451(t *testing.T, errs []error) {
	t.Helper()
	for i, err := range errs {
		e := envelope.AsError(err)
		if e == nil || e.Code != 451 || !e.Temporary() {
			t.Errorf("result %d: %v, want a temporary 451", i, err)
		} else if !errors.Is(err, safeio.ErrInjected) {
			t.Errorf("result %d: %v, not caused by the injected fault", i, err)
		}
	}
}

// dirEntries lists dir's names.
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// A large message is spooled to a temporary file; a failure to create or
// write it reaches every recipient as a temporary error, stores no copy,
// and leaves nothing in the spool directory.
func TestSpoolFaultIsTemporary(t *testing.T) {
	big := "Subject: big\r\n\r\n" + strings.Repeat("0123456789abcdef\r\n", memLimit/16)
	for _, op := range []safeio.Op{safeio.OpCreate, safeio.OpWrite} {
		t.Run(string(op), func(t *testing.T) {
			inj := &safeio.Injector{}
			m, root := newTestMDA(t, nil)
			m.opts.TmpDir = t.TempDir()
			m.opts.FS = injected(inj)
			inj.Arm(op, "postie-mda-")
			env := &envelope.Envelope{ID: "t", From: "x@remote.test", To: []string{"ann@example.test", "bob@example.test"}}
			errs := deliver(t, m, env, big)
			if inj.Hits() == 0 {
				t.Fatal("the spool file was not written through Options.FS")
			}
			expectTemp451(t, errs)
			if n := countMail(t, root, "ann") + countMail(t, root, "bob"); n != 0 {
				t.Errorf("%d copies stored although the spool failed", n)
			}
			if left := dirEntries(t, m.opts.TmpDir); len(left) != 0 {
				t.Errorf("the spool directory holds %v", left)
			}
			inj.Disarm()
			expectNil(t, deliver(t, m, env, big))
		})
	}
}

func expectNil(t *testing.T, errs []error) {
	t.Helper()
	for i, err := range errs {
		if err != nil {
			t.Errorf("result %d: %v", i, err)
		}
	}
}

// Submission to a remote recipient goes through the router into the
// queue: a failure at any durable step of the queue reaches the client as
// a temporary 451 and leaves the spool empty.
func TestRelayQueueFaultIsTemporary(t *testing.T) {
	steps := []struct {
		name string
		op   safeio.Op
		sub  string
	}{
		{"message_create", safeio.OpCreate, ".msg"},
		{"message_write", safeio.OpWrite, ".msg"},
		{"message_fsync", safeio.OpSync, ".msg"},
		{"state_create", safeio.OpCreate, ".json"},
		{"state_write", safeio.OpWrite, ".json"},
		{"state_fsync", safeio.OpSync, ".json"},
		{"state_rename", safeio.OpRename, ".json"},
		{"dir_fsync", safeio.OpSyncDir, ""},
	}
	for _, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			inj := &safeio.Injector{}
			spool := t.TempDir()
			q, err := queue.Open(queue.Options{Dir: spool, Hostname: "mx.example.test", FS: injected(inj), Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			defer q.Close()
			m, _ := newTestMDA(t, q)
			inj.Arm(step.op, step.sub)
			env := &envelope.Envelope{ID: "t", From: "ann@example.test", To: []string{"ext@remote.test", "other@remote.test"}, AuthUser: "ann@example.test"}
			errs := deliver(t, m.Relaying(), env, "Subject: s\r\n\r\nbody\r\n")
			if inj.Hits() == 0 {
				t.Fatal("the fault was not reached")
			}
			expectTemp451(t, errs)
			if items, err := queue.List(spool); err != nil || len(items) != 0 {
				t.Errorf("queue holds %d messages (%v)", len(items), err)
			}
			for _, name := range dirEntries(t, spool) {
				if name != "admin" && !strings.HasSuffix(name, ".lock") {
					t.Errorf("the spool holds %s", name)
				}
			}
		})
	}
}
