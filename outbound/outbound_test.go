package outbound

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"postie/envelope"
	"postie/internal/testutil"
)

// wantDelivered fails unless every result is nil.
func wantDelivered(t *testing.T, errs []error) {
	t.Helper()
	for i, err := range errs {
		if err != nil {
			t.Errorf("rcpt %d: %v", i, err)
		}
	}
}

// wantPerm checks a permanent *envelope.Error with the enhanced code and
// a message containing each of texts.
func wantPerm(t *testing.T, err error, enh [3]int, texts ...string) {
	t.Helper()
	var e *envelope.Error
	if !errors.As(err, &e) || e.Temporary() || e.Code < 500 {
		t.Fatalf("err = %v, want a permanent *envelope.Error", err)
	}
	if e.Enhanced != enh {
		t.Errorf("enhanced = %v, want %v (%v)", e.Enhanced, enh, err)
	}
	for _, s := range texts {
		if !strings.Contains(e.Message, s) {
			t.Errorf("message %q lacks %q", e.Message, s)
		}
	}
}

// wantTemp checks an error the queue will retry.
func wantTemp(t *testing.T, err error, texts ...string) {
	t.Helper()
	if err == nil || !isTemporary(err) || !envelope.AsError(err).Temporary() {
		t.Fatalf("err = %v, want a temporary error", err)
	}
	for _, s := range texts {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q lacks %q", err, s)
		}
	}
}

func TestDeliverSimple(t *testing.T) {
	e := newEnv(t)
	s := newSink(t, sinkOpts{})
	e.mx("remote.test", 10, "mx1.remote.test", "192.0.2.1", s.addr)
	c := e.client(nil)

	wantDelivered(t, deliver(t, c, "ann@example.test", []string{"bob@remote.test", "Carol@REMOTE.test"}, testBody))
	msgs := s.messages()
	if len(msgs) != 1 {
		t.Fatalf("sink got %d messages", len(msgs))
	}
	m := msgs[0]
	if m.from != "ann@example.test" || strings.Join(m.rcpts, ",") != "bob@remote.test,Carol@REMOTE.test" {
		t.Errorf("envelope = %q %q", m.from, m.rcpts)
	}
	if m.data != testBody {
		t.Errorf("body changed in transit:\n%q\nwant\n%q", m.data, testBody)
	}
	if m.size != int64(len(testBody)) {
		t.Errorf("SIZE=%d, want %d", m.size, len(testBody))
	}
	// Finding out that STARTTLS is not offered costs a connection; the
	// next one, after the idle connection is gone, goes straight to
	// plaintext.
	if n := s.connections(); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
	c.Close()
	wantDelivered(t, deliver(t, c, "ann@example.test", []string{"bob@remote.test"}, testBody))
	if n := s.connections(); n != 3 {
		t.Errorf("%d connections after a second message, want 3", n)
	}
}

func TestNullSender(t *testing.T) {
	e := newEnv(t)
	s := newSink(t, sinkOpts{})
	e.mx("remote.test", 10, "mx1.remote.test", "192.0.2.1", s.addr)
	wantDelivered(t, deliver(t, e.client(nil), "", []string{"bob@remote.test"}, testBody))
	if msgs := s.messages(); len(msgs) != 1 || msgs[0].from != "" {
		t.Fatalf("sink got %+v", msgs)
	}
}

func TestBackupMXTakesOver(t *testing.T) {
	e := newEnv(t)
	backup := newSink(t, sinkOpts{})
	e.mx("remote.test", 10, "mx1.remote.test", "192.0.2.1", closedPort(t))
	e.mx("remote.test", 20, "mx2.remote.test", "192.0.2.2", backup.addr)

	wantDelivered(t, deliver(t, e.client(nil), "ann@example.test", []string{"bob@remote.test"}, testBody))
	if n := len(backup.messages()); n != 1 {
		t.Fatalf("backup got %d messages", n)
	}
	if d := e.net.dialed(); len(d) < 2 || d[0] != "192.0.2.1:25" {
		t.Errorf("dial order %v: primary not tried first", d)
	}
}

func TestEveryMXDown(t *testing.T) {
	e := newEnv(t)
	e.mx("remote.test", 10, "mx1.remote.test", "192.0.2.1", closedPort(t))
	e.mx("remote.test", 20, "mx2.remote.test", "192.0.2.2", closedPort(t))
	e.dns.addHost("mx2.remote.test", "192.0.2.3") // a second address, not routed at all
	errs := deliver(t, e.client(nil), "ann@example.test", []string{"bob@remote.test", "carol@remote.test"}, testBody)
	for _, err := range errs {
		wantTemp(t, err)
	}
	if d := e.net.dialed(); len(d) != 2 {
		t.Errorf("dialed %v, want both routed addresses", d)
	}
}

func TestMixedRecipients(t *testing.T) {
	e := newEnv(t)
	s := newSink(t, sinkOpts{})
	s.reply("bob@remote.test", 550, smtp.EnhancedCode{5, 1, 1}, "no such user here")
	s.reply("carol@remote.test", 452, smtp.EnhancedCode{4, 2, 2}, "mailbox full, later")
	e.mx("remote.test", 10, "mx1.remote.test", "192.0.2.1", s.addr)

	errs := deliver(t, e.client(nil), "ann@example.test", []string{"alice@remote.test", "bob@remote.test", "carol@remote.test"}, testBody)
	if errs[0] != nil {
		t.Errorf("alice: %v", errs[0])
	}
	wantPerm(t, errs[1], [3]int{5, 1, 1}, "mx1.remote.test[192.0.2.1] said", "no such user here", "RCPT TO")
	wantTemp(t, errs[2], "mailbox full")
	var te *envelope.Error
	if !errors.As(errs[2], &te) || te.Code != 452 || te.Enhanced != [3]int{4, 2, 2} {
		t.Errorf("carol: %v, want the remote 452 4.2.2", errs[2])
	}
	var be *envelope.Error
	if errors.As(errs[1], &be); be == nil || be.Remote != "mx1.remote.test" {
		t.Errorf("bob's error names remote %q, want mx1.remote.test (the DSN's Remote-MTA)", be.Remote)
	}
	if msgs := s.messages(); len(msgs) != 1 || len(msgs[0].rcpts) != 1 || msgs[0].rcpts[0] != "alice@remote.test" {
		t.Errorf("sink got %+v", msgs)
	}
}

func TestRcpt5xxIsFinalBut4xxTriesBackup(t *testing.T) {
	e := newEnv(t)
	primary := newSink(t, sinkOpts{})
	primary.reply("bob@remote.test", 550, smtp.EnhancedCode{5, 1, 1}, "unknown")
	primary.reply("carol@remote.test", 451, smtp.EnhancedCode{4, 7, 1}, "greylisted")
	backup := newSink(t, sinkOpts{})
	e.mx("remote.test", 10, "mx1.remote.test", "192.0.2.1", primary.addr)
	e.mx("remote.test", 20, "mx2.remote.test", "192.0.2.2", backup.addr)

	errs := deliver(t, e.client(nil), "ann@example.test", []string{"alice@remote.test", "bob@remote.test", "carol@remote.test"}, testBody)
	if errs[0] != nil || errs[2] != nil {
		t.Errorf("alice: %v, carol: %v", errs[0], errs[2])
	}
	wantPerm(t, errs[1], [3]int{5, 1, 1}, "unknown")
	bm := backup.messages()
	if len(bm) != 1 || strings.Join(bm[0].rcpts, ",") != "carol@remote.test" {
		t.Errorf("backup got %+v, want only carol (bob's 5xx is final)", bm)
	}
}

func TestGreeting4xxAndMail4xxTryNextHost(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(*sink)
	}{
		{"ehlo", func(s *sink) {
			s.ehloErr = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "too busy"}
		}},
		{"mail", func(s *sink) {
			s.mailErr = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			primary := newSink(t, sinkOpts{})
			tc.set(primary)
			backup := newSink(t, sinkOpts{})
			e.mx("remote.test", 10, "mx1.remote.test", "192.0.2.1", primary.addr)
			e.mx("remote.test", 20, "mx2.remote.test", "192.0.2.2", backup.addr)
			wantDelivered(t, deliver(t, e.client(nil), "ann@example.test", []string{"bob@remote.test"}, testBody))
			if len(backup.messages()) != 1 || len(primary.messages()) != 0 {
				t.Errorf("primary %d, backup %d messages", len(primary.messages()), len(backup.messages()))
			}
		})
	}
}

func TestDropMidwayTriesNextHost(t *testing.T) {
	e := newEnv(t)
	primary := newSink(t, sinkOpts{})
	primary.drop["carol@remote.test"] = true
	backup := newSink(t, sinkOpts{})
	e.mx("remote.test", 10, "mx1.remote.test", "192.0.2.1", primary.addr)
	e.mx("remote.test", 20, "mx2.remote.test", "192.0.2.2", backup.addr)
	wantDelivered(t, deliver(t, e.client(nil), "ann@example.test", []string{"bob@remote.test", "carol@remote.test"}, testBody))
	bm := backup.messages()
	if len(primary.messages()) != 0 || len(bm) != 1 || len(bm[0].rcpts) != 2 {
		t.Errorf("primary got %d messages, backup %+v", len(primary.messages()), bm)
	}
}

func TestMail5xxAndData5xx(t *testing.T) {
	e := newEnv(t)
	s := newSink(t, sinkOpts{})
	e.mx("remote.test", 10, "mx1.remote.test", "192.0.2.1", s.addr)
	c := e.client(nil)

	s.mailErr = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "sender refused"}
	for _, err := range deliver(t, c, "ann@example.test", []string{"a@remote.test", "b@remote.test"}, testBody) {
		wantPerm(t, err, [3]int{5, 7, 1}, "sender refused", "MAIL FROM")
	}

	s.mu.Lock()
	s.mailErr = nil
	s.dataErr = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "content rejected"}
	s.mu.Unlock()
	s.reply("b@remote.test", 550, smtp.EnhancedCode{5, 1, 1}, "unknown")
	errs := deliver(t, c, "ann@example.test", []string{"a@remote.test", "b@remote.test"}, testBody)
	wantPerm(t, errs[0], [3]int{5, 6, 0}, "content rejected", "end of DATA")
	wantPerm(t, errs[1], [3]int{5, 1, 1}, "unknown")
}

func TestNullMX(t *testing.T) {
	e := newEnv(t)
	e.dns.mx["nomail.test"] = []*net.MX{{Host: ".", Pref: 0}}
	for _, err := range deliver(t, e.client(nil), "ann@example.test", []string{"bob@nomail.test"}, testBody) {
		wantPerm(t, err, [3]int{5, 1, 10}, "null MX")
	}
	if len(e.net.dialed()) != 0 {
		t.Error("dialed a null-MX domain")
	}
}

func TestImplicitMX(t *testing.T) {
	e := newEnv(t)
	s := newSink(t, sinkOpts{})
	e.dns.addHost("plain.test", "192.0.2.7") // no MX, an A record
	e.net.route("192.0.2.7", 25, s.addr)
	wantDelivered(t, deliver(t, e.client(nil), "ann@example.test", []string{"bob@plain.test"}, testBody))
	if len(s.messages()) != 1 {
		t.Fatal("the A record was not used as implicit MX")
	}
}

func TestNXDomain(t *testing.T) {
	e := newEnv(t)
	for _, err := range deliver(t, e.client(nil), "ann@example.test", []string{"bob@nowhere.test"}, testBody) {
		wantPerm(t, err, [3]int{5, 1, 2}, "nowhere.test", "does not exist")
	}
}

func TestDNSTemporaryFailure(t *testing.T) {
	e := newEnv(t)
	e.dns.mxErr["flaky.test"] = &net.DNSError{Err: "server misbehaving", Name: "flaky.test", IsTemporary: true}
	for _, err := range deliver(t, e.client(nil), "ann@example.test", []string{"bob@flaky.test"}, testBody) {
		wantTemp(t, err, "MX lookup")
	}
	// A temporary failure resolving the MX host itself is temporary too,
	// even when another host answered permanently.
	e.dns.addMX("half.test", 10, "mx1.half.test")
	e.dns.hostErr["mx1.half.test"] = &net.DNSError{Err: "timeout", Name: "mx1.half.test", IsTimeout: true}
	e.dns.addMX("half.test", 20, "mx2.half.test") // no address at all: 5.4.4
	for _, err := range deliver(t, e.client(nil), "ann@example.test", []string{"bob@half.test"}, testBody) {
		wantTemp(t, err, "mx1.half.test")
	}
}

func TestMXWithoutAddressIsSkipped(t *testing.T) {
	e := newEnv(t)
	s := newSink(t, sinkOpts{})
	e.dns.addMX("remote.test", 5, "gone.remote.test")
	e.mx("remote.test", 10, "mx1.remote.test", "192.0.2.1", s.addr)
	wantDelivered(t, deliver(t, e.client(nil), "ann@example.test", []string{"bob@remote.test"}, testBody))

	e2 := newEnv(t)
	e2.dns.addMX("remote.test", 5, "gone.remote.test")
	for _, err := range deliver(t, e2.client(nil), "ann@example.test", []string{"bob@remote.test"}, testBody) {
		wantPerm(t, err, [3]int{5, 4, 4}, "gone.remote.test")
	}
}

func TestOrderMX(t *testing.T) {
	seen := map[string]int{}
	for range 200 {
		mxs := []*net.MX{{Host: "c.", Pref: 20}, {Host: "a.", Pref: 10}, {Host: "b.", Pref: 10}, {Host: "d.", Pref: 30}}
		orderMX(mxs)
		if mxs[2].Host != "c." || mxs[3].Host != "d." {
			t.Fatalf("preference order broken: %v %v %v %v", mxs[0].Host, mxs[1].Host, mxs[2].Host, mxs[3].Host)
		}
		seen[mxs[0].Host]++
	}
	if seen["a."] < 50 || seen["b."] < 50 {
		t.Errorf("equal preferences not shuffled evenly: %v", seen)
	}
}

func TestEqualPreferenceSpreadsLoad(t *testing.T) {
	e := newEnv(t)
	s1, s2 := newSink(t, sinkOpts{}), newSink(t, sinkOpts{})
	e.mx("remote.test", 10, "mx1.remote.test", "192.0.2.1", s1.addr)
	e.mx("remote.test", 10, "mx2.remote.test", "192.0.2.2", s2.addr)
	for range 30 {
		c := e.client(nil) // a fresh client each time: no connection reuse
		wantDelivered(t, deliver(t, c, "ann@example.test", []string{"bob@remote.test"}, testBody))
		c.Close()
	}
	n1, n2 := len(s1.messages()), len(s2.messages())
	if n1+n2 != 30 || n1 == 0 || n2 == 0 {
		t.Errorf("mx1 got %d, mx2 got %d: equal preferences not shuffled", n1, n2)
	}
}

func TestSkipOurselves(t *testing.T) {
	local := func(ip net.IP) bool { return ip.Equal(net.ParseIP("192.0.2.99")) }

	// We are the best MX: delivering would loop.
	e := newEnv(t)
	s := newSink(t, sinkOpts{})
	e.mx("remote.test", 5, "us.example.test", "192.0.2.99", s.addr)
	e.mx("remote.test", 10, "other.remote.test", "192.0.2.1", s.addr)
	for _, err := range deliver(t, e.client(func(o *Options) { o.LocalAddrs = local }), "ann@example.test", []string{"bob@remote.test"}, testBody) {
		wantPerm(t, err, [3]int{5, 4, 6}, "loops back")
	}

	// We are a backup MX: only the better host is tried, never ourselves
	// nor the host below us.
	e = newEnv(t)
	e.mx("remote.test", 5, "primary.remote.test", "192.0.2.1", closedPort(t))
	e.mx("remote.test", 10, "us.example.test", "192.0.2.99", s.addr)
	e.mx("remote.test", 20, "worse.remote.test", "192.0.2.2", s.addr)
	for _, err := range deliver(t, e.client(func(o *Options) { o.LocalAddrs = local }), "ann@example.test", []string{"bob@remote.test"}, testBody) {
		wantTemp(t, err)
	}
	if d := e.net.dialed(); len(d) != 1 || d[0] != "192.0.2.1:25" {
		t.Errorf("dialed %v, want only the better host", d)
	}
	if len(s.messages()) != 0 {
		t.Error("delivered to ourselves or a worse MX")
	}
}

func TestStartTLS(t *testing.T) {
	cert, _ := testutil.Certificate(t, "mx1.remote.test", "relay.test")
	e := newEnv(t)
	s := newSink(t, sinkOpts{tls: &tls.Config{Certificates: []tls.Certificate{cert}}})
	e.mx("remote.test", 10, "mx1.remote.test", "192.0.2.1", s.addr)
	wantDelivered(t, deliver(t, e.client(nil), "ann@example.test", []string{"bob@remote.test"}, testBody))
	msgs := s.messages()
	if len(msgs) != 1 || !msgs[0].tls {
		t.Fatalf("message not received over TLS: %+v", msgs)
	}
	if msgs[0].data != testBody {
		t.Error("body changed over TLS")
	}
	if s.connections() != 1 {
		t.Errorf("%d connections, want 1", s.connections())
	}
	// The self-signed certificate is accepted but logged as unverified.
	if logs := e.logs.String(); !strings.Contains(logs, "unverified") {
		t.Errorf("logs do not say the certificate was unverified:\n%s", logs)
	}
}

func TestStartTLSHandshakeFailureFallsBackToPlaintext(t *testing.T) {
	e := newEnv(t)
	broken := &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		return nil, errors.New("no certificate today")
	}}
	s := newSink(t, sinkOpts{tls: broken})
	e.mx("remote.test", 10, "mx1.remote.test", "192.0.2.1", s.addr)
	wantDelivered(t, deliver(t, e.client(nil), "ann@example.test", []string{"bob@remote.test"}, testBody))
	msgs := s.messages()
	if len(msgs) != 1 || msgs[0].tls {
		t.Fatalf("want one plaintext message, got %+v", msgs)
	}
	if s.connections() != 2 {
		t.Errorf("%d connections, want 2 (TLS attempt, then plaintext)", s.connections())
	}
	if !strings.Contains(e.logs.String(), "TLS handshake failed") {
		t.Error("the fallback was not logged")
	}
}

func TestSMTPUTF8(t *testing.T) {
	e := newEnv(t)
	plain := newSink(t, sinkOpts{})
	e.mx("remote.test", 10, "mx1.remote.test", "192.0.2.1", plain.addr)
	c := e.client(nil)

	// A non-ASCII recipient fails alone; the others go through.
	errs := deliver(t, c, "ann@example.test", []string{"jürgen@remote.test", "bob@remote.test"}, testBody)
	wantPerm(t, errs[0], [3]int{5, 6, 7}, "SMTPUTF8", "jürgen")
	if errs[1] != nil {
		t.Errorf("bob: %v", errs[1])
	}
	// A non-ASCII sender or header fails the whole message.
	for _, err := range deliver(t, c, "zoë@example.test", []string{"bob@remote.test"}, testBody) {
		wantPerm(t, err, [3]int{5, 6, 7}, "SMTPUTF8", "zoë")
	}
	utf8Header := strings.Replace(testBody, "Subject: hello", "Subject: Grüße", 1)
	for _, err := range deliver(t, c, "ann@example.test", []string{"bob@remote.test"}, utf8Header) {
		wantPerm(t, err, [3]int{5, 6, 9}, "non-ASCII header")
	}
	if n := len(plain.messages()); n != 1 {
		t.Errorf("sink got %d messages, want only bob's first", n)
	}

	// A server with SMTPUTF8 gets everything, flagged.
	e2 := newEnv(t)
	intl := newSink(t, sinkOpts{utf8: true})
	e2.mx("remote.test", 10, "mx1.remote.test", "192.0.2.1", intl.addr)
	c2 := e2.client(nil)
	wantDelivered(t, deliver(t, c2, "zoë@example.test", []string{"jürgen@remote.test"}, utf8Header))
	msgs := intl.messages()
	if len(msgs) != 1 || !msgs[0].utf8 || msgs[0].rcpts[0] != "jürgen@remote.test" || msgs[0].data != utf8Header {
		t.Errorf("SMTPUTF8 server got %+v", msgs)
	}
}

func TestSizeLimit(t *testing.T) {
	e := newEnv(t)
	s := newSink(t, sinkOpts{maxSize: 64})
	e.mx("remote.test", 10, "mx1.remote.test", "192.0.2.1", s.addr)
	for _, err := range deliver(t, e.client(nil), "ann@example.test", []string{"bob@remote.test"}, testBody) {
		wantPerm(t, err, [3]int{5, 3, 4}, "exceeds the limit of 64 bytes")
	}
	if len(s.messages()) != 0 {
		t.Error("message sent despite SIZE")
	}
}

func TestConnectionReuse(t *testing.T) {
	cert, _ := testutil.Certificate(t, "mx1.remote.test", "relay.test")
	e := newEnv(t)
	s := newSink(t, sinkOpts{tls: &tls.Config{Certificates: []tls.Certificate{cert}}})
	e.mx("remote.test", 10, "mx1.remote.test", "192.0.2.1", s.addr)
	c := e.client(nil)
	for i := range 3 {
		body := strings.Replace(testBody, "hello", "hello "+string(rune('A'+i)), 1)
		wantDelivered(t, deliver(t, c, "ann@example.test", []string{"bob@remote.test"}, body))
	}
	if msgs := s.messages(); len(msgs) != 3 || !msgs[2].tls || !strings.Contains(msgs[2].data, "hello C") {
		t.Fatalf("sink got %+v", msgs)
	}
	if n := s.connections(); n != 1 {
		t.Errorf("%d connections for 3 messages, want 1", n)
	}
	// Another domain does not share the connection.
	e.mx("other.test", 10, "mx1.other.test", "192.0.2.2", s.addr)
	wantDelivered(t, deliver(t, c, "ann@example.test", []string{"x@other.test"}, testBody))
	if n := s.connections(); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
}

func TestReuseDroppedConnection(t *testing.T) {
	cert, _ := testutil.Certificate(t, "mx1.remote.test", "relay.test")
	e := newEnv(t)
	s := newSink(t, sinkOpts{tls: &tls.Config{Certificates: []tls.Certificate{cert}}})
	e.mx("remote.test", 10, "mx1.remote.test", "192.0.2.1", s.addr)
	c := e.client(nil)
	wantDelivered(t, deliver(t, c, "ann@example.test", []string{"bob@remote.test"}, testBody))
	s.dropAll() // the server drops the idle connection
	wantDelivered(t, deliver(t, c, "ann@example.test", []string{"bob@remote.test"}, testBody))
	if n, m := s.connections(), len(s.messages()); n != 2 || m != 2 {
		t.Errorf("%d connections, %d messages; want 2, 2", n, m)
	}
	if !strings.Contains(e.logs.String(), "idle connection is gone") {
		t.Error("the dead pooled connection was not noticed")
	}
}

func TestHangingServerTimesOut(t *testing.T) {
	e := newEnv(t)
	e.mx("remote.test", 10, "mx1.remote.test", "192.0.2.1", hangingServer(t))
	c := e.client(func(o *Options) { o.CommandTimeout = 300 * time.Millisecond })
	start := time.Now()
	errs := deliver(t, c, "ann@example.test", []string{"bob@remote.test"}, testBody)
	wantTemp(t, errs[0], "timeout")
	// One greeting timeout, no second (plaintext) try: well under 3 s.
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestHangingRcptTimesOutAndContextCancels(t *testing.T) {
	e := newEnv(t)
	s := newSink(t, sinkOpts{})
	s.hang["slow@remote.test"] = true
	e.mx("remote.test", 10, "mx1.remote.test", "192.0.2.1", s.addr)

	c := e.client(func(o *Options) { o.CommandTimeout = 300 * time.Millisecond })
	errs := deliver(t, c, "ann@example.test", []string{"slow@remote.test"}, testBody)
	wantTemp(t, errs[0], "timeout")

	c2 := e.client(func(o *Options) { o.CommandTimeout = time.Minute })
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	errs = deliverCtx(t, ctx, c2, "ann@example.test", []string{"slow@remote.test"}, testBody)
	wantTemp(t, errs[0], "interrupted")
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("cancellation took %v", d)
	}
}

func TestAddressLiteral(t *testing.T) {
	e := newEnv(t)
	s := newSink(t, sinkOpts{})
	e.net.route("192.0.2.9", 25, s.addr)
	wantDelivered(t, deliver(t, e.client(nil), "ann@example.test", []string{"bob@[192.0.2.9]"}, testBody))
	if len(s.messages()) != 1 || e.dns.mxLookups != 0 {
		t.Errorf("messages %d, MX lookups %d", len(s.messages()), e.dns.mxLookups)
	}
}

func TestBadEnvelope(t *testing.T) {
	e := newEnv(t)
	c := e.client(nil)
	if errs := deliver(t, c, "ann@example.test", nil, testBody); len(errs) != 0 {
		t.Errorf("no recipients: %v", errs)
	}
	errs := deliver(t, c, "ann@example.test", []string{"bob@remote.test\r\nRSET"}, testBody)
	wantPerm(t, errs[0], [3]int{5, 1, 3})
	errs = deliver(t, c, "ann@example.test", []string{"bob@a.test", "carol@b.test"}, testBody)
	wantTemp(t, errs[0], "different domains")
}

func TestHostErrorMapping(t *testing.T) {
	for _, tc := range []struct {
		in   *smtp.SMTPError
		code int
		enh  [3]int
	}{
		{&smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "x"}, 550, [3]int{5, 1, 1}},
		{&smtp.SMTPError{Code: 550, Message: "no enhanced code"}, 550, [3]int{5, 0, 0}},
		{&smtp.SMTPError{Code: 451, EnhancedCode: smtp.NoEnhancedCode, Message: "x"}, 451, [3]int{4, 0, 0}},
		{&smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "inconsistent"}, 450, [3]int{4, 0, 0}},
		{&smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1000, 1}, Message: "subject over 3 digits"}, 550, [3]int{5, 0, 0}},
		{&smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 99999999999}, Message: "detail over 3 digits"}, 550, [3]int{5, 0, 0}},
		{&smtp.SMTPError{Code: 250, Message: "odd"}, 451, [3]int{4, 5, 0}},
	} {
		err := hostError("mx[192.0.2.1]", "RCPT TO", tc.in)
		var e *envelope.Error
		if !errors.As(err, &e) || e.Code != tc.code || e.Enhanced != tc.enh {
			t.Errorf("hostError(%v) = %v, want %d %v", tc.in, err, tc.code, tc.enh)
		}
	}
	if got := oneLine("line one\nline two\r\x00"); got != "line one line two" {
		t.Errorf("oneLine = %q", got)
	}
}

func TestPreferred(t *testing.T) {
	perm := envelope.Errorf(550, 5, 4, 4, "no address")
	temp := envelope.Errorf(451, 4, 7, 1, "greylisted")
	netErr := errors.New("connection refused")
	for _, tc := range []struct{ old, next, want error }{
		{perm, netErr, netErr}, // a host that may come back beats a permanent verdict
		{netErr, perm, netErr},
		{temp, netErr, temp}, // a reply says more than a network error
		{netErr, temp, temp},
		{perm, perm, perm},
	} {
		if got := preferred(tc.old, tc.next); got != tc.want {
			t.Errorf("preferred(%v, %v) = %v", tc.old, tc.next, got)
		}
	}
}

// An internationalised domain is looked up in DNS by its A-label.
func TestIDNDomainLookedUpAsALabel(t *testing.T) {
	e := newEnv(t)
	s := newSink(t, sinkOpts{utf8: true})
	e.mx("xn--bcher-kva.test", 10, "mx.xn--bcher-kva.test", "192.0.2.9", s.addr)
	wantDelivered(t, deliver(t, e.client(nil), "ann@example.test", []string{"leser@bücher.test"}, testBody))
	if msgs := s.messages(); len(msgs) != 1 || msgs[0].rcpts[0] != "leser@bücher.test" {
		t.Fatalf("sink got %+v", msgs)
	}
}
