package tests

// Issue 10: the inbound trust checks of the running server. A loopback DNS
// server (internal/dnstest) is the server's [outbound] resolver; clients
// dial from 127.0.0.2–254 to stand in for servers outside the trusted
// networks (whose default is 127.0.0.1/32 and ::1/128 only).

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-smtp"

	"postie/internal/dnstest"
)

// setSMTPKeys adds keys to the [smtp] table of in's config (the harness
// writes the table; TOML cannot reopen it from the extra text).
func setSMTPKeys(t testing.TB, in *instance, keys string) {
	t.Helper()
	b, err := os.ReadFile(in.config)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(b), "[smtp]\n", "[smtp]\n"+keys+"\n", 1)
	if err := os.WriteFile(in.config, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// newTrustInstance is an instance whose DNS is the returned server.
func newTrustInstance(t testing.TB, smtpKeys, extra string) (*instance, *dnstest.Server) {
	t.Helper()
	dns := dnstest.New(t)
	in := newInstance(t, fmt.Sprintf("\n[outbound]\nresolver = %q\n%s", dns.Addr(), extra))
	setSMTPKeys(t, in, "check_timeout = \"5s\"\n"+smtpKeys)
	return in, dns
}

// dialFrom opens an SMTP client from the local address ip (127.0.0.x)
// and says EHLO helo.
func dialFrom(ip, addr, helo string) (*smtp.Client, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 10 * time.Second}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	c := smtp.NewClient(nc)
	if err := c.Hello(helo); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// sendFrom makes one transaction from the local address ip.
func sendFrom(ip, addr, from string, to []string, body string) error {
	c, err := dialFrom(ip, addr, "mail.sender.test")
	if err != nil {
		return err
	}
	defer c.Close()
	return transact(c, from, to, body)
}

// testMessage is a message with From: from, marked with a Subject naming
// the case, so that findMessage can pick it out.
func testMessage(from, subject string, extra ...string) string {
	var b strings.Builder
	for _, h := range extra {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("From: " + from + "\r\nTo: ann@example.test\r\nSubject: " + subject + "\r\n" +
		"Date: Mon, 01 Jun 2026 10:00:00 +0000\r\nMessage-ID: <" + subject + "@sender.test>\r\n\r\n" +
		"Hello Ann,\r\nthe figures are attached.\r\n")
	return b.String()
}

// findMessage returns the stored copy whose Subject is subject, and the
// folder it is in ("INBOX" or "Junk"); "" when there is none.
func findMessage(t *testing.T, in *instance, user, subject string) (string, string) {
	t.Helper()
	root := in.maildir("example.test", user)
	folder, found := "", ""
	for name, dir := range map[string]string{"INBOX": root, "Junk": filepath.Join(root, ".Junk")} {
		for _, b := range messages(t, dir) {
			if bytes.Contains(b, []byte("\r\nSubject: "+subject+"\r\n")) {
				if found != "" {
					t.Fatalf("%q is stored twice", subject)
				}
				folder, found = name, string(b)
			}
		}
	}
	return found, folder
}

// authResults returns the Authentication-Results fields of msg's header,
// unfolded.
func authResults(msg string) []string {
	hdr, _, _ := strings.Cut(msg, "\r\n\r\n")
	hdr = strings.ReplaceAll(hdr, "\r\n\t", " ")
	var out []string
	for _, l := range strings.Split(hdr, "\r\n") {
		if strings.HasPrefix(strings.ToLower(l), "authentication-results:") {
			out = append(out, l)
		}
	}
	return out
}

const outsideIP = "127.0.0.10" // mail.sender.test, forward-confirmed

// trustDNS publishes the world the checks see.
func trustDNS(dns *dnstest.Server) {
	dns.PTR(outsideIP, "mail.sender.test")
	dns.A("mail.sender.test", outsideIP)
	dns.TXT("pass.test", "v=spf1 ip4:127.0.0.0/24 -all")
	dns.TXT("fail.test", "v=spf1 ip4:192.0.2.0/24 -all")
	dns.TXT("soft.test", "v=spf1 ip4:192.0.2.0/24 ~all")
	dns.A("none.test", "192.0.2.1") // exists, no SPF record
	dns.ServFail("temp.test")
	dns.TXT("rej.test", "v=spf1 -all")
	dns.TXT("_dmarc.rej.test", "v=DMARC1; p=reject")
	dns.TXT("quar.test", "v=spf1 -all")
	dns.TXT("_dmarc.quar.test", "v=DMARC1; p=quarantine")
	dns.TXT("dkim.test", "v=spf1 -all")
	dns.TXT("_dmarc.dkim.test", "v=DMARC1; p=reject")
	dns.TXT("dkimnone.test", "v=spf1 -all")
	dns.TXT("_dmarc.dkimnone.test", "v=DMARC1; p=none")
	// The block list names 127.0.0.66 and, to show that trust wins,
	// 127.0.0.1.
	for _, ip := range []string{"66.0.0.127", "1.0.0.127"} {
		dns.A(ip+".bl.test", "127.0.0.2")
		dns.TXT(ip+".bl.test", "listed for testing")
	}
}

// dkimSign signs msg for domain with a fresh Ed25519 key published in dns.
func dkimSign(t *testing.T, dns *dnstest.Server, msg, domain string) string {
	t.Helper()
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dns.TXT("s1._domainkey."+domain, "v=DKIM1; k=ed25519; p="+base64.StdEncoding.EncodeToString(pub))
	var out bytes.Buffer
	if err := dkim.Sign(&out, strings.NewReader(msg), &dkim.SignOptions{Domain: domain, Selector: "s1", Signer: key}); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

func TestIssue10InboundChecks(t *testing.T) {
	in, dns := newTrustInstance(t, `dnsbl = ["bl.test"]`, "")
	trustDNS(dns)
	in.addUser("ann@example.test")
	in.start()
	addr := in.ports["smtp"]
	rcpt := []string{"ann@example.test"}

	spfCases := []struct {
		domain, want, folder string
	}{
		{"pass.test", "spf=pass smtp.mailfrom=bob@pass.test", "INBOX"},
		{"fail.test", "spf=fail smtp.mailfrom=bob@fail.test", "Junk"},
		{"soft.test", "spf=softfail smtp.mailfrom=bob@soft.test", "INBOX"},
		{"none.test", "spf=none smtp.mailfrom=bob@none.test", "INBOX"},
		{"temp.test", "spf=temperror", "INBOX"},
	}
	for _, c := range spfCases {
		subject := "spf-" + c.domain
		if err := sendFrom(outsideIP, addr, "bob@"+c.domain, rcpt, testMessage("Bob <bob@"+c.domain+">", subject)); err != nil {
			t.Errorf("%s: %v", subject, err)
			continue
		}
		msg, folder := findMessage(t, in, "ann", subject)
		ar := authResults(msg)
		if len(ar) != 1 || !strings.HasPrefix(ar[0], "Authentication-Results: mx.example.test;") || !strings.Contains(ar[0], c.want) {
			t.Errorf("%s: Authentication-Results %q, want one of ours with %q", subject, ar, c.want)
		}
		if folder != c.folder {
			t.Errorf("%s: filed in %q, want %s", subject, folder, c.folder)
		}
	}
	// A DNS failure is recorded without naming our DNS server's address
	// (Go's resolver names the server of resolv.conf, "lookup x on a:53").
	if msg, _ := findMessage(t, in, "ann", "spf-temp.test"); strings.Contains(msg, "lookup temp.test") || strings.Contains(msg, ":53") {
		t.Errorf("the temperror copy names the resolver:\n%s", msg)
	}
	// The SPF fail without a DMARC policy went to Junk, saying why.
	if msg, _ := findMessage(t, in, "ann", "spf-fail.test"); !strings.Contains(msg, "X-Spam-Flag: YES\r\n") || !strings.Contains(msg, "X-Spam-Reason: spf fail\r\n") || !strings.Contains(msg, "X-Spam-Score: 1.000\r\n") {
		t.Errorf("SPF fail copy lacks its X-Spam fields:\n%s", msg)
	}
	// Received: names the forward-confirmed client; every copy from
	// outside has a score and a reason.
	if msg, _ := findMessage(t, in, "ann", "spf-pass.test"); !strings.Contains(msg, "Received: from mail.sender.test (mail.sender.test [127.0.0.10])") ||
		!regexp.MustCompile(`X-Spam-Score: [01]\.\d{3}\r\n`).MatchString(msg) || !strings.Contains(msg, "X-Spam-Reason: ") || strings.Contains(msg, "X-Spam-Flag") {
		t.Errorf("SPF pass copy: Received or X-Spam fields wrong:\n%s", msg)
	}
	// A client without reverse DNS is "unknown".
	if err := sendFrom("127.0.0.11", addr, "bob@pass.test", rcpt, testMessage("bob@pass.test", "no-ptr")); err != nil {
		t.Fatal(err)
	}
	if msg, _ := findMessage(t, in, "ann", "no-ptr"); !strings.Contains(msg, "Received: from mail.sender.test (unknown [127.0.0.11])") {
		t.Errorf("client without reverse DNS:\n%s", msg)
	}

	t.Run("dkim", func(t *testing.T) {
		// SPF fails for dkim.test (-all) and DMARC says reject: only the
		// signature lets the message in.
		signed := dkimSign(t, dns, testMessage("Dee <dee@dkim.test>", "dkim-ok"), "dkim.test")
		if err := sendFrom(outsideIP, addr, "dee@dkim.test", rcpt, signed); err != nil {
			t.Fatalf("signed message: %v", err)
		}
		msg, folder := findMessage(t, in, "ann", "dkim-ok")
		if ar := authResults(msg); len(ar) != 1 || !strings.Contains(ar[0], "dkim=pass") || !strings.Contains(ar[0], "header.d=dkim.test") || !strings.Contains(ar[0], "dmarc=pass") || folder != "INBOX" {
			t.Errorf("signed message in %s with %q", folder, ar)
		}
		// The same signature over a changed body fails, and DMARC's
		// reject policy then refuses the message.
		bad := strings.Replace(signed, "figures are attached", "figures are ATTACHED", 1)
		if got := replyCode(sendFrom(outsideIP, addr, "dee@dkim.test", rcpt, bad)); got != "550 5.7.1" {
			t.Errorf("changed body: %s, want 550 5.7.1", got)
		}
		// Under p=none a changed message is taken, and dkim=fail shows.
		// (The server keeps DNS answers for a minute: another domain.)
		signed = dkimSign(t, dns, testMessage("Dee <dee@dkimnone.test>", "dkim-bad"), "dkimnone.test")
		bad = strings.Replace(signed, "figures are attached", "figures are ATTACHED", 1)
		if err := sendFrom(outsideIP, addr, "dee@dkimnone.test", rcpt, bad); err != nil {
			t.Fatalf("changed body under p=none: %v", err)
		}
		msg, folder = findMessage(t, in, "ann", "dkim-bad")
		if ar := authResults(msg); len(ar) != 1 || !strings.Contains(ar[0], "dkim=fail") || !strings.Contains(ar[0], "dmarc=fail") {
			t.Errorf("changed body: %q, want dkim=fail", ar)
		}
		if folder != "Junk" {
			t.Errorf("changed body under p=none (SPF fail, DMARC fail) in %q, want Junk", folder)
		}
	})

	t.Run("dmarc", func(t *testing.T) {
		if got := replyCode(sendFrom(outsideIP, addr, "x@rej.test", rcpt, testMessage("x@rej.test", "dmarc-reject"))); got != "550 5.7.1" {
			t.Errorf("DMARC reject: %s, want 550 5.7.1", got)
		}
		if msg, folder := findMessage(t, in, "ann", "dmarc-reject"); msg != "" {
			t.Errorf("a refused message is stored in %s", folder)
		}
		if err := sendFrom(outsideIP, addr, "x@quar.test", rcpt, testMessage("x@quar.test", "dmarc-quarantine")); err != nil {
			t.Fatalf("DMARC quarantine: %v", err)
		}
		msg, folder := findMessage(t, in, "ann", "dmarc-quarantine")
		if folder != "Junk" || !strings.Contains(msg, "X-Spam-Flag: YES\r\n") || !strings.Contains(msg, "X-Spam-Reason: dmarc quarantine\r\n") {
			t.Errorf("DMARC quarantine: in %q:\n%s", folder, msg)
		}
	})

	t.Run("own domain forged", func(t *testing.T) {
		// SPF passes for the envelope, but From: is ours and nothing
		// aligns with it: no DMARC record is needed to refuse it.
		err := sendFrom(outsideIP, addr, "bob@pass.test", rcpt, testMessage("The Boss <boss@example.test>", "forged-boss"))
		if got := replyCode(err); got != "550 5.7.1" {
			t.Errorf("forged From: our domain: %s, want 550 5.7.1", got)
		}
		if msg, _ := findMessage(t, in, "ann", "forged-boss"); msg != "" {
			t.Error("a forgery of our domain is stored")
		}
		// The same from a trusted client (our own host) is taken.
		if err := send(addr, "bob@pass.test", rcpt, testMessage("The Boss <boss@example.test>", "trusted-boss")); err != nil {
			t.Errorf("from the trusted network: %v", err)
		}
	})

	t.Run("forged Authentication-Results", func(t *testing.T) {
		msg := testMessage("bob@none.test", "forged-ar",
			"Authentication-Results: mx.example.test; spf=pass smtp.mailfrom=x@none.test; dkim=pass; dmarc=pass",
			"Authentication-Results: MX.Example.Test.;\r\n\tdmarc=pass header.from=none.test",
			"Authentication-Results: other.example.net; spf=pass smtp.mailfrom=bob@none.test",
			"X-Spam-Flag: NO",
			"X-Spam-Reason: known sender")
		if err := sendFrom(outsideIP, addr, "bob@none.test", rcpt, msg); err != nil {
			t.Fatal(err)
		}
		got, _ := findMessage(t, in, "ann", "forged-ar")
		ar := authResults(got)
		if len(ar) != 2 || !strings.Contains(ar[0], "spf=none") || !strings.HasPrefix(ar[1], "Authentication-Results: other.example.net;") {
			t.Errorf("want our one field and the other server's, got %q", ar)
		}
		// The verdict fields are ours alone: the sender's copies are gone.
		if n := strings.Count(got, "X-Spam-Reason:"); n != 1 || strings.Contains(got, "X-Spam-Flag: NO") || strings.Contains(got, "known sender") {
			t.Errorf("forged verdict fields kept (%d X-Spam-Reason):\n%s", n, got)
		}
	})

	t.Run("dnsbl", func(t *testing.T) {
		c, err := dialFrom("127.0.0.66", addr, "listed.example")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Mail("x@pass.test", nil); err != nil {
			t.Fatal(err)
		}
		err = c.Rcpt("ann@example.test", nil)
		if got := replyCode(err); got != "554 5.7.1" || !strings.Contains(err.Error(), "bl.test") || !strings.Contains(err.Error(), "listed for testing") {
			t.Errorf("listed client at RCPT: %v, want 554 5.7.1 naming bl.test and its reason", err)
		}
		// The postmaster still hears from a listed client.
		if err := c.Rcpt("postmaster@example.test", nil); err != nil {
			t.Errorf("listed client to postmaster: %v", err)
		}
		// 127.0.0.1 is listed too, but trusted.
		if err := send(addr, "x@pass.test", rcpt, testMessage("x@pass.test", "trusted-listed")); err != nil {
			t.Errorf("trusted client on the list: %v", err)
		}
	})
}

func TestIssue10TrustedNotRateLimited(t *testing.T) {
	in, _ := newTrustInstance(t, "", "")
	b, _ := os.ReadFile(in.config)
	os.WriteFile(in.config, bytes.Replace(b, []byte("messages_per_minute_per_ip = 0"), []byte("messages_per_minute_per_ip = 2"), 1), 0o600)
	in.addUser("ann@example.test")
	in.start()
	addr := in.ports["smtp"]
	for i := range 5 {
		if err := send(addr, "app@example.test", []string{"ann@example.test"}, "Subject: burst\r\n\r\nx\r\n"); err != nil {
			t.Fatalf("message %d from 127.0.0.1: %v", i+1, err)
		}
	}
	var last error
	for range 3 {
		last = sendFrom("127.0.0.20", addr, "x@none.test", []string{"ann@example.test"}, testMessage("x@none.test", "rate"))
	}
	if got := replyCode(last); got != "450 4.7.1" {
		t.Errorf("third message a minute from outside: %s, want 450 4.7.1", got)
	}
}
