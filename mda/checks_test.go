package mda

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"postie/envelope"
	"postie/inbound"
	"postie/internal/dnstest"
	"postie/internal/dnsutil"
	"postie/rspamd"
)

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

func newTestChecks(t testing.TB, edit func(*ChecksOptions)) (*Checks, *dnstest.Server) {
	t.Helper()
	dns := dnstest.New(t)
	r := dns.Resolver()
	o := ChecksOptions{
		Resolver: r,
		Inbound:  inbound.Options{Hostname: "mx.example.test", Domains: []string{"example.test"}},
		DNSBL:    []string{"bl.test"},
		Logger:   quietLog,
	}
	if edit != nil {
		edit(&o)
	}
	return NewChecks(o), dns
}

var client = netip.MustParseAddr("192.0.2.7")

// The client's name is looked up once and then kept; a temporary failure
// is not kept.
func TestChecksClientName(t *testing.T) {
	c, dns := newTestChecks(t, nil)
	dns.PTR("192.0.2.7", "mx.remote.test")
	dns.A("mx.remote.test", "192.0.2.7")
	ctx := context.Background()
	for range 3 {
		if got := c.ClientName(ctx, client); got != "mx.remote.test" {
			t.Fatalf("ClientName = %q", got)
		}
	}
	if n := dns.Count("7.2.0.192.in-addr.arpa", "PTR"); n != 1 {
		t.Errorf("%d PTR queries for three calls, want 1", n)
	}
	other := netip.MustParseAddr("192.0.2.8")
	dns.ServFail("8.2.0.192.in-addr.arpa")
	c.ClientName(ctx, other)
	c.ClientName(ctx, other)
	if n := dns.Count("8.2.0.192.in-addr.arpa", "PTR"); n < 2 {
		t.Errorf("a temporary failure was kept: %d queries for two calls", n)
	}
	if got := c.ClientName(ctx, other); got != "" {
		t.Errorf("no name: %q", got)
	}
}

func TestChecksBlocked(t *testing.T) {
	c, dns := newTestChecks(t, nil)
	dns.A("7.2.0.192.bl.test", "127.0.0.2")
	dns.TXT("7.2.0.192.bl.test", "spam source")
	err := c.Blocked(context.Background(), client)
	if e := envelope.AsError(err); e == nil || e.Code != 554 || !strings.Contains(e.Message, "bl.test") || !strings.Contains(e.Message, "spam source") {
		t.Errorf("listed: %v", err)
	}
	if err := c.Blocked(context.Background(), netip.MustParseAddr("192.0.2.8")); err != nil {
		t.Errorf("not listed: %v", err)
	}
	c, _ = newTestChecks(t, func(o *ChecksOptions) { o.DNSBL = nil })
	if err := c.Blocked(context.Background(), client); err != nil {
		t.Errorf("no lists: %v", err)
	}
}

const checkedMsg = "From: x@remote.test\r\nSubject: s\r\n\r\nbody\r\n"

func inspectMsg(c *Checks, env *envelope.Envelope) *Inspection {
	return c.Inspect(context.Background(), env, strings.NewReader(checkedMsg), int64(len(checkedMsg)))
}

// The SPF check begun at MAIL FROM is the one Inspect uses.
func TestChecksEarlySPF(t *testing.T) {
	c, dns := newTestChecks(t, func(o *ChecksOptions) { o.CacheTTL = -1 })
	dns.TXT("remote.test", "v=spf1 ip4:192.0.2.0/24 -all")
	env := inboundEnv("ann@example.test")
	env.Early = c.StartMail(context.Background(), client, env.Helo, env.From)
	ins := inspectMsg(c, env)
	if !strings.Contains(ins.Header, "spf=pass") || !ins.Verified || ins.Action != inbound.Accept {
		t.Errorf("inspection: %+v", ins)
	}
	if n := dns.Count("remote.test", "TXT"); n != 1 {
		t.Errorf("SPF record asked %d times, want once", n)
	}
	// An Early for another sender is not used.
	env.Early = c.StartMail(context.Background(), client, env.Helo, "y@elsewhere.test")
	inspectMsg(c, env)
	if n := dns.Count("remote.test", "TXT"); n != 2 {
		t.Errorf("SPF record asked %d times, want twice", n)
	}
}

type fakeRspamd struct {
	res  rspamd.Result
	err  error
	meta rspamd.Meta
	body string
}

func (f *fakeRspamd) Check(_ context.Context, msg io.Reader, meta rspamd.Meta) (rspamd.Result, error) {
	b, _ := io.ReadAll(msg)
	f.body, f.meta = string(b), meta
	return f.res, f.err
}

// rspamd's verdict counts where it is stricter than the checks'; rspamd
// failing changes nothing.
func TestChecksRspamd(t *testing.T) {
	cases := []struct {
		res    rspamd.Result
		err    error
		action inbound.Action
		code   int
	}{
		{rspamd.Result{Action: rspamd.ActionReject, Score: 20, Header: "default: True [20.00 / 15.00]"}, nil, inbound.Reject, 550},
		{rspamd.Result{Action: rspamd.ActionSoftReject}, nil, inbound.Defer, 451},
		{rspamd.Result{Action: rspamd.ActionAddHeader, Score: 7, Header: "default: False [7.00 / 15.00]"}, nil, inbound.Junk, 0},
		{rspamd.Result{Action: rspamd.ActionNoAction}, nil, inbound.Accept, 0},
		{rspamd.Result{}, errors.New("connection refused"), inbound.Accept, 0},
	}
	for _, tc := range cases {
		rs := &fakeRspamd{res: tc.res, err: tc.err}
		c, dns := newTestChecks(t, func(o *ChecksOptions) { o.Rspamd = rs })
		dns.TXT("remote.test", "v=spf1 ip4:192.0.2.0/24 -all")
		env := inboundEnv("ann@example.test")
		env.ClientName = "mx.remote.test"
		ins := inspectMsg(c, env)
		if ins.Action != tc.action || (tc.code != 0) != (ins.Reply != nil) || ins.Reply != nil && ins.Reply.Code != tc.code {
			t.Errorf("%q/%v: action %v reply %v, want %v %d", tc.res.Action, tc.err, ins.Action, ins.Reply, tc.action, tc.code)
		}
		if tc.res.Header != "" && !strings.Contains(ins.Header, "X-Spamd-Result: "+tc.res.Header+"\r\n") {
			t.Errorf("%q: header %q", tc.res.Action, ins.Header)
		}
		if rs.body != checkedMsg || rs.meta.IP != client || rs.meta.From != "x@remote.test" || rs.meta.Hostname != "mx.remote.test" || len(rs.meta.Rcpts) != 1 {
			t.Errorf("rspamd was asked %+v with %q", rs.meta, rs.body)
		}
	}
}

// The router's and the checks' views agree: a real Checks behind the
// router refuses what DMARC says to reject.
func TestChecksBehindRouter(t *testing.T) {
	c, dns := newTestChecks(t, nil)
	dns.TXT("remote.test", "v=spf1 -all")
	dns.TXT("_dmarc.remote.test", "v=DMARC1; p=reject")
	m, root := newTestMDA(t, nil)
	m.opts.Inspector = c
	errs := deliver(t, m, inboundEnv("ann@example.test"), checkedMsg)
	if e := envelope.AsError(errs[0]); e == nil || e.Code != 550 || !bytes.Contains([]byte(e.Message), []byte("DMARC")) {
		t.Errorf("DMARC reject: %v", errs[0])
	}
	if countMail(t, root, "ann") != 0 {
		t.Error("a refused message is stored")
	}
}

// The checks' DNS answers are kept for the TTL: found and not found, but
// not temporary failures.
func TestDNSCache(t *testing.T) {
	dns := dnstest.New(t)
	dns.TXT("a.test", "v=spf1 -all")
	dns.ServFail("broken.test")
	c := newDNSCache(dns.Resolver(), time.Hour)
	ctx := context.Background()
	for range 3 {
		if txt, err := c.LookupTXT(ctx, "A.test."); err != nil || len(txt) != 1 || txt[0] != "v=spf1 -all" {
			t.Fatalf("LookupTXT = %q, %v", txt, err)
		}
		if _, err := c.LookupTXT(ctx, "nothing.test"); !dnsutil.NotFound(err) {
			t.Fatalf("not found: %v", err)
		}
		if _, err := c.LookupTXT(ctx, "broken.test"); err == nil || dnsutil.NotFound(err) {
			t.Fatalf("server failure: %v", err)
		}
	}
	if n := dns.Count("a.test", "TXT"); n != 1 {
		t.Errorf("a.test asked %d times, want once", n)
	}
	if n := dns.Count("nothing.test", "TXT"); n != 1 {
		t.Errorf("nothing.test asked %d times, want once", n)
	}
	if n := dns.Count("broken.test", "TXT"); n < 3 {
		t.Errorf("a temporary failure was kept: broken.test asked %d times", n)
	}
	// The two address lookups keep their answers apart (their types differ).
	dns.A("host.test", "192.0.2.1")
	if a, err := c.LookupNetIP(ctx, "ip", "host.test"); err != nil || len(a) != 1 {
		t.Fatalf("LookupNetIP = %v, %v", a, err)
	}
	if a, err := c.LookupIPAddr(ctx, "host.test"); err != nil || len(a) != 1 || a[0].IP.String() != "192.0.2.1" {
		t.Fatalf("LookupIPAddr after LookupNetIP = %v, %v", a, err)
	}
	short := newDNSCache(dns.Resolver(), time.Millisecond)
	short.LookupTXT(ctx, "a.test")
	time.Sleep(5 * time.Millisecond)
	short.LookupTXT(ctx, "a.test")
	if n := dns.Count("a.test", "TXT"); n != 3 {
		t.Errorf("an expired answer was used: a.test asked %d times in all, want 3", n)
	}
}
