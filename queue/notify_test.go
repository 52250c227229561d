package queue

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"postie/envelope"
)

// enqueueParams queues testMsg from alice@example.test with parameters.
func (h *harness) enqueueParams(p envelope.Params, to []string, rp []envelope.RcptParams) string {
	h.t.Helper()
	env := &envelope.Envelope{ID: "t1", From: "alice@example.test", To: to, Params: p, RcptParams: rp}
	id, err := h.q.Enqueue(context.Background(), env, strings.NewReader(testMsg))
	if err != nil {
		h.t.Fatalf("Enqueue: %v", err)
	}
	return id
}

var notifySuccess = envelope.RcptParams{Notify: envelope.NotifySuccess | envelope.NotifyFailure,
	ORcptType: "rfc822", ORcpt: "Bob@Remote.test"}

// NOTIFY=SUCCESS to a host without DSN support: the queue sends the
// "relayed" notice, with ENVID and Original-Recipient (RFC 3461 §5.2.2,
// RFC 3464 §2.2.1, §2.3.1).
func TestSuccessNoticeRelayed(t *testing.T) {
	d := newDeliverer(nil)
	d.noDSN = true
	h := newHarness(t, d, nil)
	h.run()
	h.enqueueParams(envelope.Params{EnvID: "QQ314159"}, []string{"bob@remote.test", "carol@remote.test"},
		[]envelope.RcptParams{notifySuccess})
	waitFor(t, "the success notice", func() bool { return len(h.b.got()) == 1 })
	h.waitEmpty()
	got := h.b.got()[0]
	if got.env.From != "" || got.env.To[0] != "alice@example.test" {
		t.Errorf("notice envelope %q -> %q", got.env.From, got.env.To)
	}
	p := parseDSN(t, got.body)
	expectField(t, p.perMessage, "Original-Envelope-Id", "QQ314159")
	if len(p.rcpts) != 1 {
		t.Fatalf("notice lists %d recipients, want bob only (carol asked for nothing): %+v", len(p.rcpts), p.rcpts)
	}
	b := p.rcpt(t, "bob@remote.test")
	expectField(t, b, "Action", "relayed")
	expectField(t, b, "Status", "2.0.0")
	expectField(t, b, "Original-Recipient", "rfc822;Bob@Remote.test")
	if s := p.header.Get("Subject"); !strings.Contains(s, "Success") {
		t.Errorf("Subject %q", s)
	}
	if strings.Contains(p.orig, "must not come back") || !strings.Contains(p.orig, "Subject: hello") {
		t.Errorf("a success notice returns the headers only: %q", p.orig)
	}
}

// The parameters reach the deliverer; a host with DSN support takes the
// promise over, and no notice comes from us.
func TestParamsPassedOn(t *testing.T) {
	d := newDeliverer(nil)
	h := newHarness(t, d, nil)
	h.run()
	h.enqueueParams(envelope.Params{RequireTLS: true, Ret: envelope.RetHdrs, EnvID: "E1"},
		[]string{"bob@remote.test", "carol@remote.test"}, []envelope.RcptParams{notifySuccess, {Notify: envelope.NotifyNever}})
	h.waitEmpty()
	h.settle()
	if n := len(h.b.got()); n != 0 {
		t.Errorf("%d notices sent, want none: the next hop supports DSN", n)
	}
	calls, _, _, _ := d.stats()
	if len(calls) != 1 {
		t.Fatalf("%d calls", len(calls))
	}
	tr := calls[0].t
	if want := (envelope.Params{RequireTLS: true, Ret: "HDRS", EnvID: "E1"}); tr.Params != want {
		t.Errorf("Params = %+v, want %+v", tr.Params, want)
	}
	if tr.RcptParam(0) != notifySuccess || tr.RcptParam(1) != (envelope.RcptParams{Notify: envelope.NotifyNever}) {
		t.Errorf("RcptParams = %+v", tr.RcptParams)
	}
}

// NOTIFY=NEVER: a recipient that fails for good is not bounced, while one
// without NOTIFY in the same message is.
func TestNotifyNeverNoBounce(t *testing.T) {
	d := newDeliverer(func(rcpt string, n int) error {
		return &envelope.Error{Code: 550, Enhanced: [3]int{5, 1, 1}, Message: "no such user"}
	})
	h := newHarness(t, d, nil)
	h.run()
	h.enqueueParams(envelope.Params{}, []string{"never@remote.test"}, []envelope.RcptParams{{Notify: envelope.NotifyNever}})
	h.waitEmpty()
	h.settle()
	if n := len(h.b.got()); n != 0 {
		t.Fatalf("NOTIFY=NEVER got %d bounces", n)
	}
	h.enqueueParams(envelope.Params{}, []string{"never@remote.test", "plain@remote.test", "succ@remote.test"},
		[]envelope.RcptParams{{Notify: envelope.NotifyNever}, {}, {Notify: envelope.NotifySuccess}})
	waitFor(t, "the bounce", func() bool { return len(h.b.got()) == 1 })
	h.waitEmpty()
	p := parseDSN(t, h.b.got()[0].body)
	if len(p.rcpts) != 1 || p.rcpts[0].Get("Final-Recipient") != "rfc822; plain@remote.test" {
		t.Errorf("bounce lists %+v, want plain@remote.test alone", p.rcpts)
	}
}

// RET=HDRS returns the headers only; RET=FULL the whole message (within
// maxReturnFull); without RET, the headers. A REQUIRETLS message's bounce
// returns the headers whatever RET says and asks for REQUIRETLS itself
// (RFC 8689 section 5).
func TestBounceRet(t *testing.T) {
	for _, tc := range []struct {
		ret        string
		requireTLS bool
		full       bool
	}{{envelope.RetHdrs, false, false}, {envelope.RetFull, false, true}, {"", false, false}, {envelope.RetFull, true, false}} {
		t.Run(fmt.Sprintf("RET=%s,REQUIRETLS=%v", tc.ret, tc.requireTLS), func(t *testing.T) {
			d := newDeliverer(func(string, int) error { return &envelope.Error{Code: 554, Enhanced: [3]int{5, 0, 0}, Message: "no"} })
			h := newHarness(t, d, nil)
			h.run()
			h.enqueueParams(envelope.Params{Ret: tc.ret, RequireTLS: tc.requireTLS}, []string{"bob@remote.test"}, nil)
			waitFor(t, "the bounce", func() bool { return len(h.b.got()) == 1 })
			got := h.b.got()[0]
			p := parseDSN(t, got.body)
			hasBody := strings.Contains(p.orig, "The body, which must not come back")
			if p.full != tc.full || hasBody != tc.full || !strings.Contains(p.orig, "Subject: hello") {
				t.Errorf("full %v, body returned %v, want %v:\n%s", p.full, hasBody, tc.full, p.orig)
			}
			if got.env.Params.RequireTLS != tc.requireTLS {
				t.Errorf("the bounce's REQUIRETLS is %v, want %v", got.env.Params.RequireTLS, tc.requireTLS)
			}
		})
	}
}

// NOTIFY without DELAY: no delay notice for that recipient.
func TestDelayNoticeFollowsNotify(t *testing.T) {
	d := newDeliverer(tempFail)
	h := newHarness(t, d, func(o *Options) { o.DelayWarning = 10 * time.Minute })
	h.run()
	h.enqueueParams(envelope.Params{}, []string{"bob@remote.test"}, []envelope.RcptParams{{Notify: envelope.NotifyFailure}})
	h.settle()
	h.advance(11 * time.Minute)
	h.advance(time.Minute)
	if n := len(h.b.got()); n != 0 {
		t.Fatalf("NOTIFY=FAILURE got %d delay notices", n)
	}
	h.enqueueParams(envelope.Params{}, []string{"a@remote.test", "b@remote.test"},
		[]envelope.RcptParams{{Notify: envelope.NotifyFailure}, {Notify: envelope.NotifyDelay}})
	h.settle()
	h.advance(11 * time.Minute)
	waitFor(t, "the delay notice", func() bool { return len(h.b.got()) == 1 })
	p := parseDSN(t, h.b.got()[0].body)
	if len(p.rcpts) != 1 || p.rcpts[0].Get("Action") != "delayed" || p.rcpts[0].Get("Final-Recipient") != "rfc822; b@remote.test" {
		t.Errorf("delay notice lists %+v, want b@remote.test alone", p.rcpts)
	}
}

// The parameters survive a restart; a state file without them (an older
// spool) loads with the defaults.
func TestParamsKeptAcrossRestart(t *testing.T) {
	d := newDeliverer(tempFail)
	h := newHarness(t, d, nil)
	id := h.enqueueParams(envelope.Params{RequireTLS: true, Ret: envelope.RetFull, EnvID: "E2"},
		[]string{"bob@remote.test"}, []envelope.RcptParams{notifySuccess})
	h.q.Close()
	d2 := newDeliverer(nil)
	q, err := Open(testOptions(t, h.dir, h.clock, d2))
	if err != nil {
		t.Fatal(err)
	}
	h.q = q
	h.run()
	waitFor(t, "the attempt", func() bool { return d2.callCount() == 1 })
	calls, _, _, _ := d2.stats()
	tr := calls[0].t
	if !tr.Params.RequireTLS || tr.Params.Ret != "FULL" || tr.Params.EnvID != "E2" || tr.RcptParam(0) != notifySuccess {
		t.Errorf("after a restart the attempt carries %+v %+v", tr.Params, tr.RcptParams)
	}
	_ = id

	st, err := decodeState([]byte(`{"version":1,"id":"` + id + `","from":"a@example.test","created":"2025-03-01T12:00:00Z","size":1,` +
		`"rcpts":[{"addr":"b@remote.test","status":"pending"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if st.params() != (envelope.Params{}) || st.Rcpts[0].params() != (envelope.RcptParams{}) {
		t.Errorf("an old state file loads with %+v %+v", st.params(), st.Rcpts[0].params())
	}
}

// A local delivery with NOTIFY=SUCCESS, recorded by the router through
// EnqueueFailed with a nil error, becomes a "delivered" notice.
func TestSuccessNoticeDeliveredHere(t *testing.T) {
	d := newDeliverer(nil)
	h := newHarness(t, d, nil)
	h.run()
	env := &envelope.Envelope{ID: "loc", From: "alice@example.test", To: []string{"ann@example.test", "full@example.test"},
		Params: envelope.Params{EnvID: "LOCAL1"}, RcptParams: []envelope.RcptParams{notifySuccess, {}}}
	if _, err := h.q.EnqueueFailed(context.Background(), env, strings.NewReader(testMsg), []error{nil, envelope.ErrQuotaExceeded}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the notice", func() bool { return len(h.b.got()) == 1 })
	h.waitEmpty()
	p := parseDSN(t, h.b.got()[0].body)
	expectField(t, p.perMessage, "Original-Envelope-Id", "LOCAL1")
	a := p.rcpt(t, "ann@example.test")
	expectField(t, a, "Action", "delivered")
	expectField(t, a, "Status", "2.0.0")
	expectField(t, a, "Original-Recipient", "rfc822;Bob@Remote.test")
	expectField(t, p.rcpt(t, "full@example.test"), "Action", "failed")
	if d.callCount() != 0 {
		t.Error("the deliverer was called")
	}
}
