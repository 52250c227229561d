package mda

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"postie/envelope"
	"postie/inbound"
	"postie/junk"
)

// fakeInspector answers every Inspect with ins and records the calls.
type fakeInspector struct {
	ins   Inspection
	calls int
	msgs  []string
}

func (f *fakeInspector) Inspect(_ context.Context, _ *envelope.Envelope, msg io.ReaderAt, size int64) *Inspection {
	f.calls++
	b, _ := io.ReadAll(io.NewSectionReader(msg, 0, size))
	f.msgs = append(f.msgs, string(b))
	ins := f.ins
	return &ins
}

// fakeJunk says junk for messages containing "viagra" and records notes.
type fakeJunk struct {
	mu       sync.Mutex
	verified []bool
	paths    []string
	noted    map[string][]string
	bodies   map[*junk.Features][]byte // what each Extract read
}

func (f *fakeJunk) Extract(msg io.Reader) *junk.Features {
	b, _ := io.ReadAll(msg)
	fe := new(junk.Features)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.bodies == nil {
		f.bodies = map[*junk.Features][]byte{}
	}
	f.bodies[fe] = b
	return fe
}

func (f *fakeJunk) ClassifyFeatures(path string, fe *junk.Features, s junk.Sender) (junk.Verdict, error) {
	f.mu.Lock()
	b := f.bodies[fe]
	f.mu.Unlock()
	f.mu.Lock()
	f.verified = append(f.verified, s.Verified)
	f.paths = append(f.paths, path)
	f.mu.Unlock()
	if bytes.Contains(b, []byte("viagra")) {
		return junk.Verdict{Junk: true, Score: 0.991, Reason: "bayes 0.99"}, nil
	}
	return junk.Verdict{Score: 0.012, Reason: "bayes 0.01"}, nil
}

func (f *fakeJunk) NoteSent(path string, rcpts ...string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.noted == nil {
		f.noted = map[string][]string{}
	}
	f.noted[path] = append(f.noted[path], rcpts...)
	return nil
}

// stored returns the messages in a user's folder ("" = INBOX).
func stored(t *testing.T, root, user, folder string) []string {
	t.Helper()
	dir := filepath.Join(root, "example.test", user)
	if folder != "" {
		dir = filepath.Join(dir, "."+folder)
	}
	var out []string
	for _, sub := range []string{"new", "cur"} {
		entries, _ := os.ReadDir(filepath.Join(dir, sub))
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(dir, sub, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, string(b))
		}
	}
	return out
}

func inboundEnv(to ...string) *envelope.Envelope {
	return &envelope.Envelope{ID: "t", From: "x@remote.test", To: to, RemoteAddr: "192.0.2.7", Helo: "mx.remote.test", Protocol: "ESMTP", Inbound: true}
}

const arHeader = "Authentication-Results: mx.example.test;\r\n\tspf=fail smtp.mailfrom=x@remote.test;\r\n\tdkim=none;\r\n\tdmarc=fail header.from=remote.test\r\n"

// Reject and Defer refuse every recipient, local or forwarded, and
// nothing is stored or queued.
func TestInspectRefusals(t *testing.T) {
	for _, c := range []struct {
		action inbound.Action
		code   int
	}{{inbound.Reject, 550}, {inbound.Defer, 451}} {
		fwd := &fakeForwarder{}
		m, root := newTestMDA(t, fwd)
		reply := envelope.Errorf(c.code, c.code/100, 7, 1, "refused by test")
		m.opts.Inspector = &fakeInspector{ins: Inspection{Action: c.action, Reply: reply, Reason: "dmarc reject"}}
		errs := deliver(t, m, inboundEnv("sales@example.test", "bob@example.test"), "Subject: s\r\n\r\nbody\r\n")
		for i, err := range errs {
			if e := envelope.AsError(err); e == nil || e.Code != c.code {
				t.Errorf("%v: recipient %d: %v, want %d", c.action, i, err, c.code)
			}
		}
		if countMail(t, root, "ann") != 0 || countMail(t, root, "bob") != 0 || len(stored(t, root, "bob", "Junk")) != 0 || len(fwd.envs) != 0 {
			t.Errorf("%v: something was stored or queued", c.action)
		}
	}
}

// Only mail from outside is inspected and judged; it gets the checks'
// fields, a Received: naming the client's verified name or "unknown",
// and X-Spam fields; forged Authentication-Results are gone.
func TestInspectStoredCopy(t *testing.T) {
	m, root := newTestMDA(t, &fakeForwarder{})
	insp := &fakeInspector{ins: Inspection{Action: inbound.Accept, Header: arHeader, Verified: true}}
	jf := &fakeJunk{}
	m.opts.Inspector, m.opts.Junk = insp, jf
	body := "Authentication-Results: MX.example.test; dkim=pass\r\nAuthentication-Results: other.test; spf=pass\r\nSubject: s\r\n\r\nbody\r\n"

	env := inboundEnv("ann@example.test")
	env.ClientName = "mx.remote.test"
	if errs := deliver(t, m, env, body); errs[0] != nil {
		t.Fatal(errs[0])
	}
	got := stored(t, root, "ann", "")
	if len(got) != 1 {
		t.Fatalf("ann has %d messages", len(got))
	}
	want := "Received: from mx.remote.test (mx.remote.test [192.0.2.7])\r\n"
	if !strings.Contains(got[0], want) {
		t.Errorf("Received: lacks %q:\n%s", want, got[0])
	}
	_, after, _ := strings.Cut(got[0], "for <ann@example.test>; ")
	_, after, _ = strings.Cut(after, "\r\n")
	wantTail := arHeader + "X-Spam-Score: 0.012\r\nX-Spam-Reason: bayes 0.01\r\nAuthentication-Results: other.test; spf=pass\r\nSubject: s\r\n\r\nbody\r\n"
	if after != wantTail {
		t.Errorf("after the trace fields:\n%q\nwant\n%q", after, wantTail)
	}
	if len(insp.msgs) != 1 || insp.msgs[0] != body {
		t.Errorf("the inspector saw %q, want the message as received", insp.msgs)
	}
	if len(jf.verified) != 1 || !jf.verified[0] || filepath.Base(jf.paths[0]) != "postie-junk" {
		t.Errorf("filter asked with verified %v, path %v", jf.verified, jf.paths)
	}

	// No verified name: "unknown". Forged fields go even without an
	// Inspector, and no X-Spam fields are written when nothing judged.
	m.opts.Inspector, m.opts.Junk = nil, nil
	if errs := deliver(t, m, inboundEnv("bob@example.test"), body); errs[0] != nil {
		t.Fatal(errs[0])
	}
	got = stored(t, root, "bob", "")
	if len(got) != 1 || !strings.Contains(got[0], "(unknown [192.0.2.7])") || strings.Contains(got[0], "MX.example.test") || strings.Contains(got[0], "X-Spam") {
		t.Errorf("bob's copy:\n%q", got)
	}

	// Mail not from outside is passed as it is, unjudged.
	m.opts.Inspector, m.opts.Junk = insp, jf
	trusted := inboundEnv("bob@example.test")
	trusted.Inbound = false
	if errs := deliver(t, m, trusted, body+"again\r\n"); errs[0] != nil {
		t.Fatal(errs[0])
	}
	for _, s := range stored(t, root, "bob", "") {
		if strings.Contains(s, "again") && (!strings.Contains(s, "MX.example.test") || strings.Contains(s, "X-Spam") || !strings.Contains(s, "([192.0.2.7])")) {
			t.Errorf("trusted copy changed:\n%s", s)
		}
	}
	if insp.calls != 1 || len(jf.verified) != 1 {
		t.Errorf("inspector called %d times, filter %d; want once each (outside mail only)", insp.calls, len(jf.verified))
	}
}

// The checks' Junk verdict and the user's filter each file into Junk with
// X-Spam-Flag; the filter is asked per recipient.
func TestInspectJunk(t *testing.T) {
	m, root := newTestMDA(t, &fakeForwarder{})
	jf := &fakeJunk{}
	m.opts.Inspector = &fakeInspector{ins: Inspection{Action: inbound.Junk, Reason: "dmarc quarantine", Header: arHeader}}
	m.opts.Junk = jf
	if errs := deliver(t, m, inboundEnv("ann@example.test", "bob@example.test"), "Subject: q\r\n\r\nhello\r\n"); errs[0] != nil || errs[1] != nil {
		t.Fatal(errs)
	}
	for _, u := range []string{"ann", "bob"} {
		got := stored(t, root, u, "Junk")
		if len(got) != 1 || len(stored(t, root, u, "")) != 0 {
			t.Fatalf("%s: %d in Junk, %d in INBOX", u, len(got), len(stored(t, root, u, "")))
		}
		for _, f := range []string{"X-Spam-Flag: YES\r\n", "X-Spam-Score: 1.000\r\n", "X-Spam-Reason: dmarc quarantine\r\n"} {
			if !strings.Contains(got[0], f) {
				t.Errorf("%s's copy lacks %q", u, f)
			}
		}
	}
	if len(jf.verified) != 0 {
		t.Error("the filter was asked about mail the checks already filed as junk")
	}

	m.opts.Inspector = &fakeInspector{ins: Inspection{Action: inbound.Accept, Header: arHeader}}
	if errs := deliver(t, m, inboundEnv("ann@example.test"), "Subject: v\r\n\r\ncheap viagra\r\n"); errs[0] != nil {
		t.Fatal(errs[0])
	}
	got := stored(t, root, "ann", "Junk")
	if len(got) != 2 || len(stored(t, root, "ann", "")) != 0 {
		t.Fatalf("filter's junk: %d in Junk, %d in INBOX", len(got), len(stored(t, root, "ann", "")))
	}
	found := false
	for _, s := range got {
		found = found || strings.Contains(s, "X-Spam-Flag: YES\r\nX-Spam-Score: 0.991\r\nX-Spam-Reason: bayes 0.99\r\n")
	}
	if !found {
		t.Errorf("the filter's verdict is not recorded:\n%q", got)
	}
}

// A user without a Junk folder gets junk in INBOX, still flagged.
func TestInspectJunkWithoutFolder(t *testing.T) {
	m, root := newTestMDA(t, nil)
	m.opts.Inspector = &fakeInspector{ins: Inspection{Action: inbound.Junk, Reason: "spf fail"}}
	mu, err := m.opts.Store.User("example.test", "ann")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(mu.Dir(), ".Junk")); err != nil {
		t.Fatal(err)
	}
	if errs := deliver(t, m, inboundEnv("ann@example.test"), "Subject: q\r\n\r\nhello\r\n"); errs[0] != nil {
		t.Fatal(errs[0])
	}
	if got := stored(t, root, "ann", ""); len(got) != 1 || !strings.Contains(got[0], "X-Spam-Flag: YES") {
		t.Errorf("INBOX: %q", got)
	}
}

// Authenticated submission notes whom the user wrote to, after the
// delivery and for the recipients that took it; other mail notes nothing.
func TestNoteSent(t *testing.T) {
	fwd := &fakeForwarder{}
	m, _ := newTestMDA(t, fwd)
	jf := &fakeJunk{}
	m.opts.Junk = jf
	env := &envelope.Envelope{ID: "s", From: "ann@example.test", To: []string{"friend@remote.test", "bob@example.test"}, AuthUser: "ann@example.test"}
	if errs := deliver(t, m.Relaying(), env, "Subject: hi\r\n\r\nhello\r\n"); errs[0] != nil || errs[1] != nil {
		t.Fatal(errs)
	}
	// Bounces and the MX note nothing.
	deliver(t, m.Relaying(), &envelope.Envelope{ID: "b", To: []string{"x@remote.test"}}, "Subject: bounce\r\n\r\n")
	deliver(t, m, &envelope.Envelope{ID: "m", From: "x@remote.test", To: []string{"ann@example.test"}}, "Subject: in\r\n\r\n")
	m.waitNotes()
	jf.mu.Lock()
	defer jf.mu.Unlock()
	if len(jf.noted) != 1 {
		t.Fatalf("noted %v, want ann's file only", jf.noted)
	}
	for path, rcpts := range jf.noted {
		if !strings.Contains(path, filepath.Join("example.test", "ann")) || strings.Join(rcpts, ",") != "friend@remote.test,bob@example.test" {
			t.Errorf("noted %s: %v", path, rcpts)
		}
	}
}

// A junk filter that fails leaves the message in INBOX, saying so.
func TestJunkFilterFailure(t *testing.T) {
	m, root := newTestMDA(t, nil)
	m.opts.Junk = failingJunk{}
	if errs := deliver(t, m, inboundEnv("ann@example.test"), "Subject: q\r\n\r\nhello\r\n"); errs[0] != nil {
		t.Fatal(errs[0])
	}
	if got := stored(t, root, "ann", ""); len(got) != 1 || !strings.Contains(got[0], "X-Spam-Reason: filter unavailable\r\n") {
		t.Errorf("INBOX: %q", got)
	}
}

type failingJunk struct{}

func (failingJunk) Extract(io.Reader) *junk.Features { return new(junk.Features) }
func (failingJunk) ClassifyFeatures(string, *junk.Features, junk.Sender) (junk.Verdict, error) {
	return junk.Verdict{Score: 0.5, Reason: "filter unavailable"}, errors.New("disk on fire")
}
func (failingJunk) NoteSent(string, ...string) error { return errors.New("disk on fire") }

// TestJunkFeaturesOncePerMessage: a message for several users is read for
// the junk filter once; each user's statistics then judge the same features.
func TestJunkFeaturesOncePerMessage(t *testing.T) {
	m, root := newTestMDA(t, &fakeForwarder{})
	jf := &fakeJunk{}
	m.opts.Inspector = &fakeInspector{ins: Inspection{Action: inbound.Accept, Header: arHeader}}
	m.opts.Junk = jf
	if errs := deliver(t, m, inboundEnv("ann@example.test", "bob@example.test"), "Subject: q\r\n\r\nviagra\r\n"); errs[0] != nil || errs[1] != nil {
		t.Fatal(errs)
	}
	if len(jf.bodies) != 1 || len(jf.paths) != 2 {
		t.Fatalf("%d extractions for %d classifications, want 1 for 2", len(jf.bodies), len(jf.paths))
	}
	for _, u := range []string{"ann", "bob"} {
		if len(stored(t, root, u, "Junk")) != 1 {
			t.Errorf("%s's copy is not in Junk", u)
		}
	}
}
