package tests

import (
	"bytes"
	"compress/gzip"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"postie/internal/dnstest"
)

// dsnWorld: dsn.test's MX (127.0.0.3) supports DSN, plain.test's
// (127.0.0.4, same port) does not.
type dsnWorld struct {
	dns          *dnstest.Server
	dsn, plain   *sink
	port, config string
}

func newDSNWorld(t *testing.T) *dsnWorld {
	t.Helper()
	w := &dsnWorld{dns: dnstest.New(t)}
	w.dsn = newSink(t, "127.0.0.3:0", func(srv *smtp.Server) { srv.EnableDSN = true })
	_, w.port, _ = net.SplitHostPort(w.dsn.addr)
	w.plain = newSink(t, "127.0.0.4:"+w.port)
	w.dns.MX("dsn.test", 10, "mx.dsn.test")
	w.dns.A("mx.dsn.test", "127.0.0.3")
	w.dns.MX("plain.test", 10, "mx.plain.test")
	w.dns.A("mx.plain.test", "127.0.0.4")
	w.config = fmt.Sprintf("\n[outbound]\nresolver = %q\nport = %s\nconnect_timeout = \"2s\"\n", w.dns.Addr(), w.port)
	return w
}

// rcptArg is one RCPT with its options.
type rcptArg struct {
	to   string
	opts *smtp.RcptOptions
}

// submitWith submits as user over STARTTLS with MAIL and RCPT options.
func submitWith(t testing.TB, in *instance, user string, mo *smtp.MailOptions, rcpts []rcptArg, body string) error {
	t.Helper()
	c, err := smtp.DialStartTLS(in.ports["submission"], &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", user, password(user))); err != nil {
		return err
	}
	if err := c.Mail(user, mo); err != nil {
		return err
	}
	for _, r := range rcpts {
		if err := c.Rcpt(r.to, r.opts); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := io.WriteString(w, body); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

// dsnBlocks takes a DSN apart: the per-message fields, the per-recipient
// blocks, and the returned part's type and content.
type dsnParts struct {
	perMessage string
	rcpts      []string
	origType   string
	orig       string
}

func parseDSNMail(t *testing.T, raw []byte) dsnParts {
	t.Helper()
	e, err := message.Read(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("DSN: %v\n%s", err, raw)
	}
	mr := e.MultipartReader()
	if mr == nil {
		t.Fatalf("DSN is not multipart:\n%s", raw)
	}
	var p dsnParts
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(part.Body)
		switch ct, _, _ := part.Header.ContentType(); ct {
		case "message/delivery-status":
			blocks := strings.Split(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n\n")
			p.perMessage = blocks[0]
			for _, bl := range blocks[1:] {
				if strings.TrimSpace(bl) != "" {
					p.rcpts = append(p.rcpts, bl)
				}
			}
		case "text/rfc822-headers", "message/rfc822":
			p.origType, p.orig = ct, string(b)
		}
	}
	return p
}

// inboxDSNs returns the DSNs in a user's INBOX.
func inboxDSNs(t *testing.T, in *instance, user string) []dsnParts {
	t.Helper()
	var out []dsnParts
	for _, raw := range messages(t, in.maildir("example.test", user)) {
		if bytes.Contains(raw, []byte("report-type=delivery-status")) {
			out = append(out, parseDSNMail(t, raw))
		}
	}
	return out
}

func blockFor(p dsnParts, rcpt string) string {
	for _, b := range p.rcpts {
		if strings.Contains(b, "Final-Recipient: rfc822; "+rcpt) {
			return b
		}
	}
	return ""
}

// NOTIFY=SUCCESS end to end: the parameters reach a next hop that
// supports DSN (which then owes the notices); a next hop without DSN
// gets the message and we send "relayed"; a local copy gets "delivered";
// each notice has ENVID and Original-Recipient.
func TestDSNSuccessNotices(t *testing.T) {
	w := newDSNWorld(t)
	in := newInstance(t, w.config)
	in.addUser("ann@example.test")
	in.addUser("bea@example.test")
	in.start()
	succ := []smtp.DSNNotify{smtp.DSNNotifySuccess, smtp.DSNNotifyFailure}
	err := submitWith(t, in, "ann@example.test", &smtp.MailOptions{Return: smtp.DSNReturnHeaders, EnvelopeID: "env-42"}, []rcptArg{
		{"bob@dsn.test", &smtp.RcptOptions{Notify: succ, OriginalRecipientType: smtp.DSNAddressTypeRFC822, OriginalRecipient: "Bob@dsn.test"}},
		{"carol@plain.test", &smtp.RcptOptions{Notify: succ, OriginalRecipientType: smtp.DSNAddressTypeRFC822, OriginalRecipient: "carol-orig@plain.test"}},
		{"bea@example.test", &smtp.RcptOptions{Notify: []smtp.DSNNotify{smtp.DSNNotifySuccess}}},
	}, "From: ann@example.test\r\nTo: bob@dsn.test\r\nSubject: track me\r\n\r\nbody\r\n")
	if err != nil {
		t.Fatalf("submit: %v\n%s", err, in.log())
	}
	waitFor(t, "both sinks to get the message", 15*time.Second, func() bool {
		return len(w.dsn.messages()) == 1 && len(w.plain.messages()) == 1
	})
	got := w.dsn.messages()[0]
	if got.mail.Return != smtp.DSNReturnHeaders || got.mail.EnvelopeID != "env-42" {
		t.Errorf("MAIL at the DSN sink: RET %q ENVID %q", got.mail.Return, got.mail.EnvelopeID)
	}
	if len(got.ropts) != 1 || fmt.Sprint(got.ropts[0].Notify) != "[SUCCESS FAILURE]" || got.ropts[0].OriginalRecipient != "Bob@dsn.test" {
		t.Errorf("RCPT at the DSN sink: %+v", got.ropts)
	}
	if p := w.plain.messages()[0]; p.mail.EnvelopeID != "" || len(p.ropts) != 1 || p.ropts[0].Notify != nil {
		t.Errorf("parameters sent to a host without DSN: %+v %+v", p.mail, p.ropts)
	}

	var relayed, delivered string
	waitFor(t, "the success notices", 15*time.Second, func() bool {
		for _, d := range inboxDSNs(t, in, "ann") {
			if b := blockFor(d, "carol@plain.test"); b != "" {
				relayed = d.perMessage + "\n" + b
			}
			if b := blockFor(d, "bea@example.test"); b != "" {
				delivered = d.perMessage + "\n" + b
			}
			if blockFor(d, "bob@dsn.test") != "" {
				t.Fatalf("a notice for bob, whose next hop supports DSN:\n%+v", d)
			}
		}
		return relayed != "" && delivered != ""
	})
	for _, want := range []string{"Action: relayed", "Status: 2.0.0", "Original-Recipient: rfc822;carol-orig@plain.test", "Original-Envelope-Id: env-42"} {
		if !strings.Contains(relayed, want) {
			t.Errorf("relayed notice lacks %q:\n%s", want, relayed)
		}
	}
	for _, want := range []string{"Action: delivered", "Status: 2.0.0", "Original-Envelope-Id: env-42"} {
		if !strings.Contains(delivered, want) {
			t.Errorf("delivered notice lacks %q:\n%s", want, delivered)
		}
	}
}

// NOTIFY=NEVER on a failing recipient: no bounce. RET=HDRS: the bounce
// returns the headers only.
func TestDSNNeverAndRetHdrs(t *testing.T) {
	w := newDSNWorld(t)
	w.dsn.refuse(func(to string) error {
		if to == "never@dsn.test" || to == "hdrs@dsn.test" {
			return errRejected
		}
		return nil
	})
	in := newInstance(t, w.config)
	in.addUser("ann@example.test")
	in.start()
	err := submitWith(t, in, "ann@example.test", nil, []rcptArg{
		{"never@dsn.test", &smtp.RcptOptions{Notify: []smtp.DSNNotify{smtp.DSNNotifyNever}}},
	}, "From: ann@example.test\r\nSubject: first\r\n\r\nfirst body\r\n")
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	err = submitWith(t, in, "ann@example.test", &smtp.MailOptions{Return: smtp.DSNReturnHeaders}, []rcptArg{{"hdrs@dsn.test", nil}},
		"From: ann@example.test\r\nSubject: second\r\n\r\nthe secret body text\r\n")
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	var bounce dsnParts
	waitFor(t, "the bounce", 15*time.Second, func() bool {
		for _, d := range inboxDSNs(t, in, "ann") {
			if blockFor(d, "hdrs@dsn.test") != "" {
				bounce = d
				return true
			}
		}
		return false
	})
	if bounce.origType != "text/rfc822-headers" || !strings.Contains(bounce.orig, "Subject: second") || strings.Contains(bounce.orig, "secret body") {
		t.Errorf("RET=HDRS bounce returned %s:\n%s", bounce.origType, bounce.orig)
	}
	// Wholly empty: a bounce for never@ (were one made) would be queued
	// or delivered by then.
	waitFor(t, "an empty queue", 15*time.Second, func() bool {
		out, _, _ := in.run("", "queue", "list")
		return strings.Contains(out, "the queue is empty")
	})
	for _, d := range inboxDSNs(t, in, "ann") {
		if blockFor(d, "never@dsn.test") != "" {
			t.Fatalf("NOTIFY=NEVER was bounced:\n%+v", d)
		}
	}
}

// REQUIRETLS (RFC 8689): refused on a plain session, taken over TLS, kept
// in the queue across a restart, and then, with only a plain next hop,
// bounced with 5.7.30 rather than sent in clear.
func TestRequireTLSKeptAcrossRestart(t *testing.T) {
	w := newDSNWorld(t)
	// DNS trouble first: the message waits in the queue.
	w.dns.ServFail("dsn.test")
	w.dns.ServFail("_mta-sts.dsn.test")
	in := newInstance(t, w.config)
	in.addUser("ann@example.test")
	in.start()

	c, err := smtp.Dial(in.ports["smtp"])
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("REQUIRETLS"); ok {
		t.Error("REQUIRETLS advertised on a plain session")
	}
	c.Close()
	raw, err := net.Dial("tcp", in.ports["smtp"])
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(raw, "EHLO client.test\r\nMAIL FROM:<x@client.test> REQUIRETLS\r\nQUIT\r\n")
	raw.SetReadDeadline(time.Now().Add(10 * time.Second))
	reply, _ := io.ReadAll(raw)
	raw.Close()
	if !strings.Contains(string(reply), "\r\n530 5.7.10") {
		t.Errorf("MAIL REQUIRETLS on a plain session:\n%s", reply)
	}

	err = submitWith(t, in, "ann@example.test", &smtp.MailOptions{RequireTLS: true}, []rcptArg{{"bob@dsn.test", nil}},
		"From: ann@example.test\r\nSubject: sealed\r\n\r\nsealed body\r\n")
	if err != nil {
		t.Fatalf("submit with REQUIRETLS: %v\n%s", err, in.log())
	}
	if err := in.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	states, _ := filepath.Glob(filepath.Join(in.dir, "data", "queue", "*.json"))
	found := false
	for _, f := range states {
		b, _ := os.ReadFile(f)
		found = found || bytes.Contains(b, []byte(`"require_tls": true`))
	}
	if !found {
		t.Fatalf("no queued state file with require_tls among %v", states)
	}
	w.dns.Rcode("dsn.test", 0) // its MX: a sink without STARTTLS
	w.dns.Rcode("_mta-sts.dsn.test", 0)
	in.start()
	var bounce dsnParts
	waitFor(t, "the REQUIRETLS bounce", 20*time.Second, func() bool {
		for _, d := range inboxDSNs(t, in, "ann") {
			if blockFor(d, "bob@dsn.test") != "" {
				bounce = d
				return true
			}
		}
		return false
	})
	if b := blockFor(bounce, "bob@dsn.test"); !strings.Contains(b, "Status: 5.7.30") {
		t.Errorf("REQUIRETLS bounce:\n%s", b)
	}
	if n := len(w.dsn.messages()); n != 0 {
		t.Errorf("the REQUIRETLS message went to a plain sink (%d)", n)
	}
}

// TLS-RPT end to end: a session with a host that lacks STARTTLS is
// recorded; a forced report run mails remote.test's report to the rua of
// its _smtp._tls record, where it parses as JSON with the right counts.
func TestTLSRPTReportArrives(t *testing.T) {
	w := newDSNWorld(t)
	rua := w.plain
	w.dns.TXT("_smtp._tls.dsn.test", "v=TLSRPTv1; rua=mailto:tls-reports@plain.test")
	in := newInstance(t, w.config)
	in.addUser("ann@example.test")
	in.start()
	if err := submitWith(t, in, "ann@example.test", nil, []rcptArg{{"bob@dsn.test", nil}}, "From: ann@example.test\r\nSubject: one\r\n\r\nx\r\n"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the message at the sink", 15*time.Second, func() bool { return len(w.dsn.messages()) == 1 })
	waitFor(t, "a report to be sent", 15*time.Second, func() bool {
		out := in.mustRun("", "tlsrpt", "send", "-today")
		return strings.Contains(out, "1 report(s) sent")
	})
	waitFor(t, "the report at the rua", 15*time.Second, func() bool { return len(rua.messages()) > 0 })
	m := rua.messages()[0]
	if m.to[0] != "tls-reports@plain.test" || m.from != "postmaster@example.test" {
		t.Errorf("report envelope %q -> %v", m.from, m.to)
	}
	e, err := message.Read(bytes.NewReader(m.data))
	if err != nil {
		t.Fatal(err)
	}
	if ct, params, _ := e.Header.ContentType(); ct != "multipart/report" || params["report-type"] != "tlsrpt" {
		t.Errorf("Content-Type %q %v", ct, params)
	}
	if e.Header.Get("TLS-Report-Domain") != "dsn.test" || e.Header.Get("TLS-Report-Submitter") != "mx.example.test" || e.Header.Get("DKIM-Signature") == "" {
		t.Errorf("report header:\n%s", m.data[:min(len(m.data), 2000)])
	}
	var rep struct {
		Policies []struct {
			Policy struct {
				Type   string `json:"policy-type"`
				Domain string `json:"policy-domain"`
			} `json:"policy"`
			Summary struct {
				OK   int `json:"total-successful-session-count"`
				Fail int `json:"total-failure-session-count"`
			} `json:"summary"`
			Details []struct {
				Type  string `json:"result-type"`
				Count int    `json:"failed-session-count"`
			} `json:"failure-details"`
		} `json:"policies"`
	}
	mr := e.MultipartReader()
	for {
		part, err := mr.NextPart()
		if err != nil {
			break
		}
		if ct, _, _ := part.Header.ContentType(); ct == "application/tlsrpt+gzip" {
			zr, err := gzip.NewReader(part.Body)
			if err != nil {
				t.Fatal(err)
			}
			if err := json.NewDecoder(zr).Decode(&rep); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(rep.Policies) != 1 {
		t.Fatalf("report: %+v\n%s", rep, m.data)
	}
	p := rep.Policies[0]
	if p.Policy.Domain != "dsn.test" || p.Policy.Type != "no-policy-found" || p.Summary.OK != 0 || p.Summary.Fail != 1 ||
		len(p.Details) != 1 || p.Details[0].Type != "starttls-not-supported" || p.Details[0].Count != 1 {
		t.Errorf("report policy: %+v", p)
	}
}
