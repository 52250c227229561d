package smtpd

import (
	"context"
	"net/netip"
	"sync"
	"testing"

	"postie/envelope"
)

// fakeChecks names every client "mx.remote.test", lists those in blocked,
// and records the calls.
type fakeChecks struct {
	mu      sync.Mutex
	names   int
	asked   int
	mails   []string
	ctxs    []context.Context
	blocked map[netip.Addr]bool
}

func (f *fakeChecks) ClientName(_ context.Context, ip netip.Addr) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.names++
	return "mx.remote.test"
}

func (f *fakeChecks) Blocked(_ context.Context, ip netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked++
	if f.blocked[ip] {
		return envelope.Errorf(554, 5, 7, 1, "client [%s] is listed in bl.test", ip)
	}
	return nil
}

func (f *fakeChecks) StartMail(ctx context.Context, _ netip.Addr, helo, from string) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mails = append(f.mails, helo+" "+from)
	f.ctxs = append(f.ctxs, ctx)
	return "early:" + from
}

func (f *fakeChecks) counts() (names, asked, mails int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.names, f.asked, len(f.mails)
}

// A client outside the trusted networks is looked up once per session,
// and its mail is marked Inbound with its name and the work begun at
// MAIL FROM.
func TestMXOutsideClientChecked(t *testing.T) {
	chk := &fakeChecks{}
	f := start(t, RoleMX, func(o *Options) { o.Checks = chk })
	c := dial(t, f.addr)
	for range 2 {
		_, err := send(c, "x@remote.example", []string{"ann@example.test"}, simpleMsg)
		wantCode(t, "send", err, 0, "")
	}
	got := f.deliv.last(t).env
	if !got.Inbound || got.ClientName != "mx.remote.test" || got.Early != "early:x@remote.example" {
		t.Errorf("envelope: Inbound %v, ClientName %q, Early %v", got.Inbound, got.ClientName, got.Early)
	}
	if names, asked, mails := chk.counts(); names != 1 || asked != 1 || mails != 2 {
		t.Errorf("ClientName %d, Blocked %d, StartMail %d calls; want 1, 1, 2", names, asked, mails)
	}
}

// A trusted client is not looked up, and its mail is not Inbound.
func TestMXTrustedClientNotChecked(t *testing.T) {
	chk := &fakeChecks{blocked: map[netip.Addr]bool{netip.MustParseAddr("127.0.0.1"): true}}
	f := start(t, RoleMX, func(o *Options) {
		o.Checks = chk
		o.TrustedNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	_, err := send(dial(t, f.addr), "x@remote.example", []string{"ann@example.test"}, simpleMsg)
	wantCode(t, "send", err, 0, "")
	if got := f.deliv.last(t).env; got.Inbound || got.ClientName != "" || got.Early != nil {
		t.Errorf("trusted envelope: %+v", got)
	}
	if names, asked, mails := chk.counts(); names+asked+mails != 0 {
		t.Errorf("checks called for a trusted client: %d %d %d", names, asked, mails)
	}
}

// A listed client is refused at RCPT, except for the postmaster.
func TestMXBlockedAtRcpt(t *testing.T) {
	chk := &fakeChecks{blocked: map[netip.Addr]bool{netip.MustParseAddr("192.0.2.66"): true}}
	f := start(t, RoleMX, func(o *Options) { o.Checks = chk })
	c := dial(t, f.serveAs(t, "192.0.2.66"))
	wantCode(t, "MAIL", c.Mail("x@remote.example", nil), 0, "")
	wantCode(t, "RCPT", c.Rcpt("ann@example.test", nil), 554, "5.7.1")
	wantCode(t, "RCPT postmaster", c.Rcpt("postmaster@example.test", nil), 0, "")
	if !hasLine(f.logs.String(), "bl.test") {
		t.Error("the refusal is not logged")
	}
	// Another client is not.
	c2 := dial(t, f.serveAs(t, "192.0.2.67"))
	wantCode(t, "MAIL", c2.Mail("x@remote.example", nil), 0, "")
	wantCode(t, "RCPT", c2.Rcpt("ann@example.test", nil), 0, "")
}

// Submission is never checked; its mail is not Inbound.
func TestSubmissionNotChecked(t *testing.T) {
	chk := &fakeChecks{}
	f := start(t, RoleSubmission, func(o *Options) { o.Checks = chk })
	c := login(t, f.addr, "ann@example.test", "secret")
	_, err := send(c, "ann@example.test", []string{"bob@example.org"}, simpleMsg)
	wantCode(t, "send", err, 0, "")
	if got := f.deliv.last(t).env; got.Inbound || got.Early != nil {
		t.Errorf("submission envelope: %+v", got)
	}
	if names, asked, mails := chk.counts(); names+asked+mails != 0 {
		t.Errorf("checks called on submission: %d %d %d", names, asked, mails)
	}
}

// The work begun at MAIL FROM is cancelled when the transaction ends,
// so a client looping MAIL and RSET keeps at most one running.
func TestMXEarlyWorkCancelledAtReset(t *testing.T) {
	chk := &fakeChecks{}
	f := start(t, RoleMX, func(o *Options) { o.Checks = chk })
	c := dial(t, f.addr)
	wantCode(t, "MAIL", c.Mail("x@remote.example", nil), 0, "")
	chk.mu.Lock()
	ctx := chk.ctxs[0]
	chk.mu.Unlock()
	if ctx.Err() != nil {
		t.Fatal("cancelled before the transaction ended")
	}
	wantCode(t, "RSET", c.Reset(), 0, "")
	waitFor(t, "the cancellation", func() bool { return ctx.Err() != nil })
}
