package queue

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"postie/envelope"
	"postie/safeio"
)

// Fault injection at every durable step of the spool (issue 9, items 1
// and 8). A step is failed through Options.FS; the Injector matches the
// file's base name, so that the test's directory name never matches.

// faultStep is one step of a durable write of the spool: op on the files
// whose base name contains sub.
type faultStep struct {
	name string
	op   safeio.Op
	sub  string
}

// enqueueSteps are the steps of Enqueue: the message file is created in
// place (the state file is the commit point, so it needs no rename of its
// own), the state file goes through a temporary file and a rename, and one
// directory fsync makes both names durable.
var enqueueSteps = []faultStep{
	{"message_create", safeio.OpCreate, msgExt},
	{"message_write", safeio.OpWrite, msgExt},
	{"message_fsync", safeio.OpSync, msgExt},
	{"state_create", safeio.OpCreate, stateExt},
	{"state_write", safeio.OpWrite, stateExt},
	{"state_fsync", safeio.OpSync, stateExt},
	{"state_rename", safeio.OpRename, stateExt},
	{"dir_fsync", safeio.OpSyncDir, ""},
}

// stateSteps are the steps of a state update after an attempt.
var stateSteps = enqueueSteps[3:]

// injected returns an FS whose faults inj decides on base names.
func injected(inj *safeio.Injector) *safeio.FS {
	return &safeio.FS{Fault: func(op safeio.Op, path string) error { return inj.Fault(op, filepath.Base(path)) }}
}

// logBuffer is a concurrency-safe log sink for tests that read the log.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// A failure at any step of Enqueue or EnqueueFailed reaches the caller as
// an error the SMTP layer answers with 451, leaves nothing of the message
// in the spool and nothing scheduled, and a restart recovers exactly the
// messages that were acknowledged.
func TestEnqueueFaultAtEachStep(t *testing.T) {
	enqueuers := map[string]func(q *Queue, env *envelope.Envelope) (string, error){
		"Enqueue": func(q *Queue, env *envelope.Envelope) (string, error) {
			return q.Enqueue(context.Background(), env, strings.NewReader(testMsg))
		},
		"EnqueueFailed": func(q *Queue, env *envelope.Envelope) (string, error) {
			failed := make([]error, len(env.To))
			for i := range failed {
				failed[i] = envelope.ErrQuotaExceeded
			}
			return q.EnqueueFailed(context.Background(), env, strings.NewReader(testMsg), failed)
		},
	}
	for _, step := range enqueueSteps {
		for how, enqueue := range enqueuers {
			t.Run(step.name+"/"+how, func(t *testing.T) {
				inj := &safeio.Injector{}
				h := newHarness(t, newDeliverer(nil), func(o *Options) { o.FS = injected(inj) })
				keep := h.enqueue("alice@example.test", "bob@remote.test")
				before := strings.Join(spoolFiles(t, h.dir), " ")

				inj.Arm(step.op, step.sub)
				env := &envelope.Envelope{ID: "lost", From: "alice@example.test", To: []string{"carol@remote.test", "Carol@remote.test"}}
				id, err := enqueue(h.q, env)
				hits := inj.Hits()
				inj.Disarm()
				if err == nil {
					t.Fatalf("%s with a failed %s succeeded (ID %s)", how, step.name, id)
				}
				if hits == 0 || !errors.Is(err, safeio.ErrInjected) {
					t.Fatalf("error %v (%d faults hit), want the injected one", err, hits)
				}
				if e := envelope.AsError(err); e.Code != 451 || !e.Temporary() {
					t.Errorf("the error becomes the reply %d %v, want a temporary 451", e.Code, e.Enhanced)
				}
				if got := strings.Join(spoolFiles(t, h.dir), " "); got != before {
					t.Errorf("spool holds %q after the failure, want %q", got, before)
				}
				h.q.mu.Lock()
				n, live := len(h.q.items), 0
				for _, u := range h.q.units {
					if h.q.schedFor(u) != nil {
						live++
						if u.it.st.ID != keep {
							t.Errorf("%s is scheduled", u.it.st.ID)
						}
					}
				}
				h.q.mu.Unlock()
				if n != 1 || live != 1 {
					t.Errorf("%d messages in memory with %d units scheduled, want the acknowledged one only", n, live)
				}

				if err := h.q.Close(); err != nil {
					t.Fatal(err)
				}
				q, err := Open(testOptions(t, h.dir, h.clock, newDeliverer(nil)))
				if err != nil {
					t.Fatal(err)
				}
				h.q = q
				if len(q.items) != 1 || q.items[keep] == nil {
					t.Errorf("after a restart: %d messages, want exactly the acknowledged %s", len(q.items), keep)
				}
				if got := strings.Join(spoolFiles(t, h.dir), " "); got != before {
					t.Errorf("after a restart the spool holds %q, want %q", got, before)
				}
			})
		}
	}
}

// Enqueue does its steps in the order that makes the acknowledgement
// true: the message file written and fsynced, the state file written and
// fsynced, renamed into place, the directory fsynced; only then does it
// return (and the SMTP layer answer 250).
func TestEnqueueStepOrder(t *testing.T) {
	var mu sync.Mutex
	var steps []string
	var dir string
	trace := func(op safeio.Op, path string) {
		mu.Lock()
		defer mu.Unlock()
		name := filepath.Base(path)
		switch {
		case path == dir:
			name = "DIR"
		case strings.HasPrefix(name, tmpPrefix):
			name = "TMP"
		case strings.HasSuffix(name, msgExt):
			name = "MSG"
		case strings.HasSuffix(name, stateExt):
			name = "STATE"
		}
		steps = append(steps, string(op)+" "+name)
	}
	h := newHarness(t, newDeliverer(nil), func(o *Options) { o.FS = &safeio.FS{Trace: trace} })
	dir = h.dir
	mu.Lock()
	steps = nil // the recovery at Open
	mu.Unlock()
	h.enqueue("alice@example.test", "bob@remote.test")
	mu.Lock()
	got := strings.Join(steps, ", ")
	mu.Unlock()
	want := "create MSG, write MSG, fsync MSG, create TMP, write TMP, fsync TMP, rename STATE, fsyncdir DIR"
	if got != want {
		t.Errorf("Enqueue's steps:\n got %s\nwant %s", got, want)
	}
}

// A state update that fails after a delivery attempt loses nothing: the
// message stays in the spool (its state file behind the memory) and in the
// schedule, the failure is logged with the recipients a restart would
// deliver again, and the update is retried until it succeeds. No
// temporary file is left behind.
func TestStateSaveFaultAfterAttempt(t *testing.T) {
	for _, step := range stateSteps {
		t.Run(step.name, func(t *testing.T) {
			inj := &safeio.Injector{}
			logs := &logBuffer{}
			d := newDeliverer(func(rcpt string, n int) error {
				if strings.HasPrefix(rcpt, "b@") && n == 0 {
					return tempFail(rcpt, n)
				}
				return nil
			})
			h := newHarness(t, d, func(o *Options) {
				o.FS = injected(inj)
				o.Logger = slog.New(slog.NewTextHandler(logs, nil))
			})
			h.q.pollEvery = 10 * time.Millisecond
			id := h.enqueue("alice@example.test", "a@one.test", "b@two.test")
			statePath := filepath.Join(h.dir, id+stateExt)
			onDisk, _ := os.ReadFile(statePath)

			inj.Arm(step.op, step.sub)
			h.run()
			h.settle()
			waitFor(t, "a failed save", func() bool { return inj.Hits() > 0 })
			// The retries keep writing (and failing) every poll: between
			// two, the spool must hold the message's two files and no
			// temporary one. A temporary file that stays fails this.
			want := id + ".json " + id + ".msg"
			waitFor(t, "a spool without temporary files", func() bool {
				return strings.Join(spoolFiles(t, h.dir), " ") == want
			})
			if now, _ := os.ReadFile(statePath); step.op != safeio.OpSyncDir && !bytes.Equal(now, onDisk) {
				t.Errorf("the state file changed although its write failed:\n%s", now)
			}
			h.q.mu.Lock()
			it := h.q.items[id]
			unsaved := it != nil && h.q.unsaved[it]
			scheduled := it != nil && it.groups["two.test"] != nil
			h.q.mu.Unlock()
			if !unsaved || !scheduled {
				t.Fatalf("in memory: %v, unsaved %v, b@two.test scheduled %v", it != nil, unsaved, scheduled)
			}
			if l := logs.String(); !strings.Contains(l, "saving state failed") || !strings.Contains(l, "unsaved_deliveries=[a@one.test]") {
				t.Errorf("the failure is not logged with the recipient at risk:\n%s", l)
			}

			// The disk heals: the next poll saves the state (for a failed
			// directory fsync, the content was already there but not durable).
			inj.Disarm()
			waitFor(t, "the state to be saved", func() bool {
				h.q.mu.Lock()
				unsaved := h.q.unsaved[it]
				h.q.mu.Unlock()
				items, _ := List(h.dir)
				return !unsaved && len(items) == 1 && items[0].Rcpts[0].Status == StatusDelivered && items[0].Rcpts[1].Attempts == 1
			})
			if l := logs.String(); !strings.Contains(l, "state saved after an earlier failure") {
				t.Errorf("the recovery is not logged:\n%s", l)
			}
			h.advance(time.Minute)
			h.waitEmpty()
			if _, delivered, _, _ := d.stats(); delivered["a@one.test"] != 1 || delivered["b@two.test"] != 1 {
				t.Errorf("deliveries %v, want one each", delivered)
			}
		})
	}
}

// If the state still cannot be written when the scheduler stops, the
// next start finds the message as it was last saved: nothing is lost, and
// the recipient delivered since is delivered again, as the log said it
// would be.
func TestStateSaveFaultAtShutdown(t *testing.T) {
	inj := &safeio.Injector{}
	logs := &logBuffer{}
	d := newDeliverer(func(rcpt string, n int) error {
		if strings.HasPrefix(rcpt, "b@") {
			return tempFail(rcpt, n)
		}
		return nil
	})
	h := newHarness(t, d, func(o *Options) {
		o.FS = injected(inj)
		o.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	id := h.enqueue("alice@example.test", "a@one.test", "b@two.test")
	inj.Arm(safeio.OpRename, stateExt)
	h.run()
	h.settle()
	h.stop()
	if l := logs.String(); !strings.Contains(l, "stopping with a state file behind") || !strings.Contains(l, "rcpts=[a@one.test]") {
		t.Errorf("the shutdown does not say what will be delivered again:\n%s", l)
	}
	if err := h.q.Close(); err != nil {
		t.Fatal(err)
	}
	inj.Disarm()

	d2 := newDeliverer(nil)
	q, err := Open(testOptions(t, h.dir, h.clock, d2))
	if err != nil {
		t.Fatal(err)
	}
	h.q, h.d = q, d2
	if it := q.items[id]; it == nil || it.st.Rcpts[0].Status != StatusPending {
		t.Fatalf("after the restart: %+v, want the message as last saved", it)
	}
	h.run()
	h.waitEmpty()
	if _, delivered, _, _ := d2.stats(); delivered["a@one.test"] != 1 || delivered["b@two.test"] != 1 {
		t.Errorf("after the restart: %v, want a@ again (the logged duplicate) and b@", delivered)
	}
	if n := len(h.b.got()); n != 0 {
		t.Errorf("%d DSNs", n)
	}
}
