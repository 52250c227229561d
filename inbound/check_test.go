package inbound

import (
	"bytes"
	"crypto"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/authres"
)

func TestSPF(t *testing.T) {
	e := newEnv(t)
	e.dns.TXT("pass.test", "v=spf1 ip4:192.0.2.0/24 -all")
	e.dns.TXT("fail.test", "v=spf1 ip4:198.51.100.1 -all")
	e.dns.TXT("soft.test", "v=spf1 ~all")
	e.dns.TXT("neutral.test", "v=spf1 ?all")
	e.dns.TXT("nospf.test", "google-site-verification=abc")
	e.dns.TXT("temp.test", "v=spf1 -all")
	e.dns.ServFail("temp.test")
	e.dns.TXT("two.test", "v=spf1 -all", "v=spf1 +all")
	e.dns.TXT("viamx.test", "v=spf1 mx -all")
	e.dns.MX("viamx.test", 10, "mx.viamx.test")
	e.dns.A("mx.viamx.test", "192.0.2.10")
	e.dns.TXT("helo.sender.test", "v=spf1 a -all")
	e.dns.A("helo.sender.test", "192.0.2.10")
	for _, tc := range []struct {
		helo, from string
		want       Result
	}{
		{"x.test", "a@pass.test", Pass},
		{"x.test", "a@fail.test", Fail},
		{"x.test", "a@soft.test", SoftFail},
		{"x.test", "a@neutral.test", Neutral},
		{"x.test", "a@nospf.test", None},
		{"x.test", "a@nxdomain.test", None},
		{"x.test", "a@temp.test", TempError},
		{"x.test", "a@two.test", PermError},
		{"x.test", "a@viamx.test", Pass},
		{"helo.sender.test", "", Pass},    // <>: the HELO identity
		{"[192.0.2.10]", "", None},        // an address literal has no SPF
		{"x.test", "a@[192.0.2.1]", None}, // nor a literal MAIL FROM domain
	} {
		got := e.c.SPF(testCtx(t), clientIP, tc.helo, tc.from)
		if got.Result != tc.want {
			t.Errorf("SPF(%s, %q) = %s (%s), want %s", tc.helo, tc.from, got.Result, got.Reason, tc.want)
		}
	}
	// The RFC's limit of 10 DNS lookups (RFC 7208 §4.6.4).
	e.dns.TXT("many.test", "v=spf1 a:a1.test a:a2.test a:a3.test a:a4.test a:a5.test a:a6.test "+
		"a:a7.test a:a8.test a:a9.test a:a10.test a:a11.test ip4:192.0.2.10 -all")
	for i := 1; i <= 11; i++ {
		e.dns.A("a"+string(rune('0'+i/10))+string(rune('0'+i%10))+".test", "198.51.100.1")
	}
	if got := e.c.SPF(testCtx(t), clientIP, "x.test", "a@many.test"); got.Result != PermError {
		t.Errorf("11 lookups: %s, want permerror", got.Result)
	}
}

func TestDKIM(t *testing.T) {
	for _, alg := range []string{"rsa", "ed25519"} {
		t.Run(alg, func(t *testing.T) {
			e := newEnv(t)
			var key crypto.Signer = rsaKey()
			if alg == "ed25519" {
				key = ed25519Key(t)
			}
			signed := e.sign(t, message("bob@sender.test"), "sender.test", "s1", key)
			v := e.check(t, "bob@sender.test", signed)
			if len(v.DKIM) != 1 || v.DKIM[0].Result != Pass || v.DKIM[0].Domain != "sender.test" || v.DKIM[0].Selector != "s1" {
				t.Fatalf("DKIM = %+v, want one pass d=sender.test s=s1", v.DKIM)
			}
			if !strings.Contains(v.AuthResults, "dkim=pass header.d=sender.test header.s=s1") {
				t.Errorf("Authentication-Results: %s", v.AuthResults)
			}
			tampered := bytes.Replace(signed, []byte("see you tomorrow"), []byte("send me money"), 1)
			v = e.check(t, "bob@sender.test", tampered)
			if len(v.DKIM) != 1 || v.DKIM[0].Result != Fail {
				t.Fatalf("tampered body: DKIM = %+v, want fail", v.DKIM)
			}
			if !strings.Contains(v.AuthResults, "dkim=fail reason=") {
				t.Errorf("Authentication-Results: %s", v.AuthResults)
			}
		})
	}
}

// Key trouble and several signatures.
func TestDKIMErrors(t *testing.T) {
	e := newEnv(t)
	msg := message("bob@sender.test")
	signed := e.sign(t, msg, "sender.test", "s1", ed25519Key(t))
	signed = e.sign(t, signed, "other.test", "s2", ed25519Key(t))
	signed = e.sign(t, signed, "gone.test", "s3", ed25519Key(t))
	e.dns.Remove("s3._domainkey.gone.test") // no key: permerror
	signed = e.sign(t, signed, "slow.test", "s4", ed25519Key(t))
	e.dns.ServFail("s4._domainkey.slow.test") // temperror
	v := e.check(t, "bob@sender.test", signed)
	got := map[string]Result{}
	for _, k := range v.DKIM {
		got[k.Domain] = k.Result
	}
	want := map[string]Result{"sender.test": Pass, "other.test": Pass, "gone.test": PermError, "slow.test": TempError}
	if len(v.DKIM) != 4 || len(got) != 4 {
		t.Fatalf("DKIM = %+v", v.DKIM)
	}
	for d, r := range want {
		if got[d] != r {
			t.Errorf("%s: %s, want %s", d, got[d], r)
		}
	}
	if strings.Contains(v.AuthResults, ":53:") {
		t.Errorf("Authentication-Results quotes a DNS error: %s", v.AuthResults)
	}
	// Several signatures: each names its b= prefix (RFC 6008).
	if n := strings.Count(v.AuthResults, "header.b="); n != 4 {
		t.Errorf("%d header.b in %s", n, v.AuthResults)
	}
	for _, k := range v.DKIM {
		if !strings.Contains(v.AuthResults, "header.b="+k.B[:8]) && !strings.Contains(v.AuthResults, `header.b="`+k.B[:8]) {
			t.Errorf("no header.b for %s in %s", k.Domain, v.AuthResults)
		}
	}
	// At most MaxDKIMSignatures are verified.
	e2 := newEnv(t, func(o *Options) { o.MaxDKIMSignatures = 2 })
	for _, k := range v.DKIM {
		e2.dns.TXT(k.Selector+"._domainkey."+k.Domain, "v=DKIM1; p=")
	}
	if v := e2.check(t, "", signed); len(v.DKIM) != 2 {
		t.Errorf("MaxDKIMSignatures 2: %d results", len(v.DKIM))
	}
}

// A message whose From: is aligned with a DKIM or SPF pass, with and
// without a record.
func TestDMARCPass(t *testing.T) {
	e := newEnv(t)
	e.dns.TXT("_dmarc.sender.test", "v=DMARC1; p=reject")
	e.dns.TXT("sender.test", "v=spf1 ip4:192.0.2.10 -all")
	e.dns.TXT("bounces.esp.test", "v=spf1 ip4:192.0.2.10 -all")

	// SPF-aligned, relaxed: a subdomain's MAIL FROM.
	e.dns.TXT("mail.sender.test", "v=spf1 ip4:192.0.2.10 -all")
	v := e.check(t, "b@mail.sender.test", message("bob@sender.test"))
	if v.DMARC.Result != Pass || !v.DMARC.SPFAligned || v.Action != Accept || !v.Verified() {
		t.Errorf("spf-aligned: %+v, action %s", v.DMARC, v.Action)
	}
	// DKIM-aligned while SPF passes for someone else (an ESP).
	signed := e.sign(t, message("bob@sender.test"), "sender.test", "k", ed25519Key(t))
	v = e.check(t, "x@bounces.esp.test", signed)
	if v.DMARC.Result != Pass || !v.DMARC.DKIMAligned || v.DMARC.SPFAligned || v.Action != Accept {
		t.Errorf("dkim-aligned: %+v, action %s", v.DMARC, v.Action)
	}
	want := ourHost + ";\r\n\tspf=pass smtp.mailfrom=x@bounces.esp.test;\r\n\tdkim=pass header.d=sender.test header.s=k;\r\n\tdmarc=pass header.from=sender.test"
	if v.AuthResults != want {
		t.Errorf("Authentication-Results:\n%s\nwant\n%s", v.AuthResults, want)
	}
	id, res, err := authres.Parse(strings.NewReplacer("\r\n\t", " ").Replace(v.AuthResults))
	if err != nil || id != ourHost || len(res) != 3 {
		t.Errorf("authres.Parse: %q %v %v", id, res, err)
	}
	if h := v.Header(); !strings.HasPrefix(h, "Authentication-Results: "+ourHost+";") || !strings.HasSuffix(h, "\r\n") {
		t.Errorf("Header() = %q", h)
	}
}

func TestDMARCPolicies(t *testing.T) {
	for _, tc := range []struct {
		name, record, from string
		pct                int
		result             Result
		policy, applied    Policy
		action             Action
		reason             string
	}{
		{"reject", "v=DMARC1; p=reject", "a@sender.test", 50, Fail, PolicyReject, PolicyReject, Reject, "dmarc reject"},
		{"quarantine", "v=DMARC1; p=quarantine", "a@sender.test", 50, Fail, PolicyQuarantine, PolicyQuarantine, Junk, "dmarc quarantine"},
		{"none", "v=DMARC1; p=none", "a@sender.test", 50, Fail, PolicyNone, PolicyNone, Accept, ""},
		{"no record", "", "a@sender.test", 50, None, "", "", Accept, ""},
		{"pct=0 reject", "v=DMARC1; p=reject; pct=0", "a@sender.test", 0, Fail, PolicyReject, PolicyQuarantine, Junk, "dmarc quarantine"},
		{"pct=100 reject", "v=DMARC1; p=reject; pct=100", "a@sender.test", 99, Fail, PolicyReject, PolicyReject, Reject, "dmarc reject"},
		{"pct=50 sampled", "v=DMARC1; p=quarantine; pct=50", "a@sender.test", 49, Fail, PolicyQuarantine, PolicyQuarantine, Junk, "dmarc quarantine"},
		{"pct=50 not sampled", "v=DMARC1; p=quarantine; pct=50", "a@sender.test", 50, Fail, PolicyQuarantine, PolicyNone, Accept, ""},
		// Organisational domain: the record of sender.test, sp= for a subdomain.
		{"org fallback sp", "v=DMARC1; p=none; sp=reject", "a@news.sender.test", 50, Fail, PolicyReject, PolicyReject, Reject, "dmarc reject"},
		{"org fallback p", "v=DMARC1; p=quarantine", "a@deep.news.sender.test", 50, Fail, PolicyQuarantine, PolicyQuarantine, Junk, "dmarc quarantine"},
		{"bad record", "v=DMARC1; p=bogus", "a@sender.test", 50, PermError, "", "", Accept, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.pct = tc.pct
			if tc.record != "" {
				e.dns.TXT("_dmarc.sender.test", tc.record)
			}
			v := e.check(t, "", message(tc.from))
			d := v.DMARC
			if d.Result != tc.result || d.Policy != tc.policy || d.Applied != tc.applied || v.Action != tc.action || v.Reason != tc.reason {
				t.Errorf("got %s policy %q applied %q action %s reason %q (%s)", d.Result, d.Policy, d.Applied, v.Action, v.Reason, d.Reason)
			}
			if tc.action == Reject && (v.Reply == nil || v.Reply.Code != 550 || v.Reply.Enhanced != [3]int{5, 7, 1} || !strings.Contains(v.Reply.Message, "DMARC")) {
				t.Errorf("reply %v, want 550 5.7.1 naming DMARC", v.Reply)
			}
			if tc.action != Reject && tc.action != Defer && v.Reply != nil {
				t.Errorf("reply %v for %s", v.Reply, v.Action)
			}
		})
	}
}

// Relaxed alignment takes the organisational domain, strict the exact one.
func TestDMARCAlignmentModes(t *testing.T) {
	for _, tc := range []struct {
		record string
		pass   bool
	}{
		{"v=DMARC1; p=reject", true},
		{"v=DMARC1; p=reject; adkim=r", true},
		{"v=DMARC1; p=reject; adkim=s", false},
		{"v=DMARC1; p=reject; adkim=s; aspf=s", false},
	} {
		e := newEnv(t)
		e.dns.TXT("_dmarc.news.sender.test", tc.record)
		// DKIM d=sender.test for From: news.sender.test; SPF for an unrelated domain.
		signed := e.sign(t, message("a@news.sender.test"), "sender.test", "k", ed25519Key(t))
		v := e.check(t, "", signed)
		if (v.DMARC.Result == Pass) != tc.pass || (v.Action == Reject) == tc.pass {
			t.Errorf("%s: %s, action %s; want pass %v", tc.record, v.DMARC.Result, v.Action, tc.pass)
		}
	}
	// SPF in strict mode: MAIL FROM at a subdomain is not aligned.
	for _, aspf := range []string{"r", "s"} {
		e := newEnv(t)
		e.dns.TXT("_dmarc.sender.test", "v=DMARC1; p=reject; aspf="+aspf)
		e.dns.TXT("bounce.sender.test", "v=spf1 ip4:192.0.2.10 -all")
		v := e.check(t, "b@bounce.sender.test", message("a@sender.test"))
		if (v.DMARC.Result == Pass) != (aspf == "r") {
			t.Errorf("aspf=%s: %s", aspf, v.DMARC.Result)
		}
	}
}

// Zero or several From: domains fail DMARC (RFC 7489 §6.6.1).
func TestDMARCFromProblems(t *testing.T) {
	e := newEnv(t)
	e.dns.TXT("_dmarc.strict.test", "v=DMARC1; p=reject")
	e.dns.TXT("relaxed.test", "v=spf1 ip4:192.0.2.10 -all") // SPF passes: still no single From domain
	for _, tc := range []struct {
		name   string
		msg    []byte
		action Action
	}{
		{"no From", message(""), Junk},
		{"empty group", message("undisclosed-recipients:;"), Junk},
		{"two domains", message("a@relaxed.test, b@other.test"), Junk},
		{"two fields", message("a@relaxed.test", "From: a@relaxed.test"), Junk},
		{"two domains, one p=reject", message("a@relaxed.test, b@strict.test"), Reject},
		{"unparseable, p=reject", message("<<a@strict.test"), Reject},
		{"two fields, one ours", message("a@relaxed.test", "From: boss@ours.test"), Reject},
	} {
		v := e.check(t, "x@relaxed.test", tc.msg)
		if v.DMARC.Result != Fail || v.DMARC.From != "" || v.Action != tc.action {
			t.Errorf("%s: %s from %q, action %s (%s)", tc.name, v.DMARC.Result, v.DMARC.From, v.Action, v.DMARC.Reason)
		}
		if strings.Contains(v.AuthResults, "header.from") {
			t.Errorf("%s: header.from in %s", tc.name, v.AuthResults)
		}
	}
	// Several addresses at one domain are one From domain.
	if v := e.check(t, "x@relaxed.test", message("a@relaxed.test, b@Relaxed.test")); v.DMARC.From != "relaxed.test" {
		t.Errorf("one domain twice: from %q (%s)", v.DMARC.From, v.DMARC.Reason)
	}
}

// Our own domains cannot be forged from outside, record or not.
func TestOwnDomainForgery(t *testing.T) {
	e := newEnv(t)
	v := e.check(t, "boss@ours.test", message("Boss <boss@ours.test>"))
	if v.Action != Reject || v.Reply == nil || v.Reply.Code != 550 || v.Reply.Enhanced != [3]int{5, 7, 1} || v.Reason != "own domain unauthenticated" {
		t.Fatalf("forged own domain: action %s reply %v reason %q", v.Action, v.Reply, v.Reason)
	}
	// Case and the second domain too, even with a lax published record.
	e.dns.TXT("_dmarc.other-ours.test", "v=DMARC1; p=none")
	if v := e.check(t, "", message("boss@OTHER-OURS.test")); v.Action != Reject {
		t.Errorf("second domain: %s", v.Action)
	}
	// Mail of ours that comes back authenticated (a list, a forward) is fine.
	signed := e.sign(t, message("boss@ours.test"), "ours.test", "postie", ed25519Key(t))
	if v := e.check(t, "list@lists.test", signed); v.Action != Accept || v.DMARC.Result != None || !v.Verified() {
		t.Errorf("signed by us: %s %s", v.Action, v.DMARC.Result)
	}
	// Our key unavailable for now: try later, not refused.
	e.dns.ServFail("postie._domainkey.ours.test")
	if v := e.check(t, "list@lists.test", signed); v.Action != Defer || v.Reply == nil || v.Reply.Code != 451 {
		t.Errorf("temperror on our key: %s %v", v.Action, v.Reply)
	}
	// The switch turns the protection off.
	off := newEnv(t, func(o *Options) { o.AllowUnalignedOwnDomain = true })
	if v := off.check(t, "boss@ours.test", message("boss@ours.test")); v.Action != Accept {
		t.Errorf("AllowUnalignedOwnDomain: %s", v.Action)
	}
	// A subdomain of ours is not ours: DMARC decides.
	if v := e.check(t, "", message("x@mail.ours.test")); v.Action != Accept {
		t.Errorf("subdomain: %s", v.Action)
	}
}

func TestSPFFailAndTempErrors(t *testing.T) {
	e := newEnv(t)
	e.dns.TXT("sender.test", "v=spf1 -all")
	v := e.check(t, "a@sender.test", message("a@sender.test"))
	if v.Action != Junk || v.Reason != "spf fail" {
		t.Errorf("spf fail, no DMARC: %s %q", v.Action, v.Reason)
	}
	e.dns.TXT("_dmarc.sender.test", "v=DMARC1; p=none")
	if v := e.check(t, "a@sender.test", message("a@sender.test")); v.Action != Junk {
		t.Errorf("spf fail, p=none: %s", v.Action)
	}
	// DKIM passes in alignment: an SPF failure (a forward) does not junk.
	signed := e.sign(t, message("a@sender.test"), "sender.test", "k", ed25519Key(t))
	if v := e.check(t, "a@sender.test", signed); v.Action != Accept || v.DMARC.Result != Pass {
		t.Errorf("spf fail, dkim pass: %s %s", v.Action, v.DMARC.Result)
	}

	// Temporary DNS errors never lose mail.
	t2 := newEnv(t)
	t2.dns.ServFail("sender.test")
	t2.dns.ServFail("_dmarc.sender.test")
	v = t2.check(t, "a@sender.test", message("a@sender.test"))
	if v.SPF.Result != TempError || v.DMARC.Result != TempError || v.Action != Accept || v.Reply != nil {
		t.Errorf("temperror: spf %s dmarc %s action %s", v.SPF.Result, v.DMARC.Result, v.Action)
	}
	if !strings.Contains(v.AuthResults, "spf=temperror") || !strings.Contains(v.AuthResults, "dmarc=temperror") {
		t.Errorf("Authentication-Results: %s", v.AuthResults)
	}
	// The stored header does not quote the resolver's errors, which name
	// our DNS server ("lookup x on 10.0.0.53:53: ...").
	if strings.Contains(v.AuthResults, ":53:") {
		t.Errorf("Authentication-Results quotes a DNS error: %s", v.AuthResults)
	}
	// p=reject and the aligned check failed temporarily: 451, not 550.
	t3 := newEnv(t)
	t3.dns.TXT("_dmarc.sender.test", "v=DMARC1; p=reject")
	t3.dns.ServFail("sender.test")
	v = t3.check(t, "a@sender.test", message("a@sender.test"))
	if v.Action != Defer || v.Reply == nil || v.Reply.Code != 451 || v.Reason != "dmarc temperror" {
		t.Errorf("p=reject, spf temperror: %s %v %q", v.Action, v.Reply, v.Reason)
	}
}

// Network text cannot break the header.
func TestAuthResultsSanitized(t *testing.T) {
	e := newEnv(t)
	v := e.check(t, "a\"b\r\nX-Evil: 1@sender.test", message("a@sender.test"))
	if strings.Contains(v.AuthResults, "\r\nX-Evil") || strings.Count(v.AuthResults, "\r\n") != 3 {
		t.Errorf("Authentication-Results: %q", v.AuthResults)
	}
}

// A message that is all header (no blank line, no body) still verifies.
func TestDKIMHeaderOnly(t *testing.T) {
	e := newEnv(t)
	msg := []byte("From: bob@sender.test\r\nTo: ann@ours.test\r\nSubject: hi\r\n\r\n")
	signed := e.sign(t, msg, "sender.test", "k", ed25519Key(t))
	for _, m := range [][]byte{
		bytes.TrimSuffix(signed, []byte("\r\n")),     // last line ends in CRLF
		bytes.TrimSuffix(signed, []byte("\r\n\r\n")), // no final line end at all
	} {
		v := e.check(t, "", m)
		if len(v.DKIM) != 1 || v.DKIM[0].Result != Pass {
			t.Errorf("%q: DKIM %+v", m[len(m)-12:], v.DKIM)
		}
	}
}

// Several DMARC records mean no DMARC, without falling back to the
// organisational domain (RFC 7489 §6.6.3 step 3).
func TestDMARCSeveralRecords(t *testing.T) {
	e := newEnv(t)
	e.dns.TXT("_dmarc.news.sender.test", "v=DMARC1; p=reject", "v=DMARC1; p=none")
	e.dns.TXT("_dmarc.sender.test", "v=DMARC1; p=reject")
	v := e.check(t, "", message("a@news.sender.test"))
	if v.DMARC.Result != None || v.Action != Accept || e.dns.Count("_dmarc.sender.test", "TXT") != 0 {
		t.Errorf("several records: %s %s, org asked %d times", v.DMARC.Result, v.Action, e.dns.Count("_dmarc.sender.test", "TXT"))
	}
}

// A header that go-msgauth's verifier would take seconds of CPU over (a
// field folded into many thousands of lines: quadratic in the library) is
// not given to it: its signatures are permerror, at once.
func TestDKIMOversizedHeader(t *testing.T) {
	e := newEnv(t)
	signed := e.sign(t, message("bob@sender.test"), "sender.test", "s1", rsaKey())
	folded := append([]byte("X-Junk: a"+strings.Repeat("\r\n\tb", 50_000)+"\r\n"), signed...)
	start := time.Now()
	v := e.check(t, "bob@sender.test", folded)
	if len(v.DKIM) != 1 || v.DKIM[0].Result != PermError || !strings.Contains(v.DKIM[0].Reason, "folded") {
		t.Fatalf("DKIM = %+v, want one permerror for the folding", v.DKIM)
	}
	t.Logf("checked in %v", time.Since(start))
	// The same signed message unfolded still verifies.
	if v := e.check(t, "bob@sender.test", signed); len(v.DKIM) != 1 || v.DKIM[0].Result != Pass {
		t.Fatalf("plain message: DKIM = %+v", v.DKIM)
	}
}
