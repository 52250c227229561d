package outbound

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	msgdkim "github.com/emersion/go-msgauth/dkim"

	"postie/dkim"
	"postie/internal/testutil"
)

// smarthostEnv starts a relay sink requiring AUTH PLAIN and a client
// pointed at it as relay.test.
func smarthostEnv(t *testing.T, mode string, pass string) (*env, *sink, *Client) {
	cert, roots := testutil.Certificate(t, "mx1.remote.test", "relay.test")
	e := newEnv(t)
	o := sinkOpts{tls: &tls.Config{Certificates: []tls.Certificate{cert}}, user: "relayuser", pass: "s3cret"}
	port := 587
	if mode == "tls" {
		o.implicitTLS, port = true, 465
	}
	s := newSink(t, o)
	e.dns.addHost("relay.test", "192.0.2.50")
	e.net.route("192.0.2.50", port, s.addr)
	c := e.client(func(opts *Options) {
		opts.Smarthost = fmt.Sprintf("relay.test:%d", port)
		opts.SmarthostTLS = mode
		opts.SmarthostUsername = "relayuser"
		opts.SmarthostPassword = pass
		opts.SmarthostTLSConfig = &tls.Config{RootCAs: roots}
	})
	return e, s, c
}

func TestSmarthost(t *testing.T) {
	for _, mode := range []string{"tls", "starttls"} {
		t.Run(mode, func(t *testing.T) {
			e, s, c := smarthostEnv(t, mode, "s3cret")
			wantDelivered(t, deliver(t, c, "ann@example.test", []string{"bob@remote.test"}, testBody))
			wantDelivered(t, deliver(t, c, "ann@example.test", []string{"x@elsewhere.test"}, testBody))
			msgs := s.messages()
			if len(msgs) != 2 {
				t.Fatalf("relay got %d messages", len(msgs))
			}
			for _, m := range msgs {
				if !m.tls || m.auth != "relayuser" || m.data != testBody {
					t.Errorf("relay got tls=%v auth=%q", m.tls, m.auth)
				}
			}
			if e.dns.mxLookups != 0 {
				t.Errorf("%d MX lookups with a smarthost", e.dns.mxLookups)
			}
			if n := s.connections(); n != 1 {
				t.Errorf("%d connections, want 1 shared by both domains", n)
			}
		})
	}
}

func TestSmarthostBadPasswordIsTemporary(t *testing.T) {
	e, s, c := smarthostEnv(t, "starttls", "wrong")
	errs := deliver(t, c, "ann@example.test", []string{"bob@remote.test"}, testBody)
	wantTemp(t, errs[0], "refused our login", "535")
	if len(s.messages()) != 0 {
		t.Error("relayed without login")
	}
	if !strings.Contains(e.logs.String(), "level=ERROR") {
		t.Error("the refused login was not logged as an error")
	}
}

func TestSmarthostRequiresTLS(t *testing.T) {
	e := newEnv(t)
	s := newSink(t, sinkOpts{}) // no STARTTLS offered
	e.dns.addHost("relay.test", "192.0.2.50")
	e.net.route("192.0.2.50", 587, s.addr)
	c := e.client(func(o *Options) { o.Smarthost = "relay.test:587" })
	wantTemp(t, deliver(t, c, "ann@example.test", []string{"bob@remote.test"}, testBody)[0], "STARTTLS")
	if len(s.messages()) != 0 {
		t.Error("relayed in plaintext")
	}

	// A certificate we cannot verify is refused too.
	cert, _ := testutil.Certificate(t, "mx1.remote.test", "relay.test")
	s2 := newSink(t, sinkOpts{tls: &tls.Config{Certificates: []tls.Certificate{cert}}})
	e.net.route("192.0.2.50", 587, s2.addr)
	c2 := e.client(func(o *Options) { o.Smarthost = "relay.test:587" }) // system roots
	wantTemp(t, deliver(t, c2, "ann@example.test", []string{"bob@remote.test"}, testBody)[0])
	if len(s2.messages()) != 0 {
		t.Error("relayed to an unverified smarthost")
	}
}

func TestDKIMSigned(t *testing.T) {
	dir := t.TempDir()
	txtName, txtValue, err := dkim.KeyGen(dir, "example.test", "postie")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := dkim.LoadSigner(dir, "postie", []string{"example.test"})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	s := newSink(t, sinkOpts{})
	e.mx("remote.test", 10, "mx1.remote.test", "192.0.2.1", s.addr)
	c := e.client(func(o *Options) { o.Signer = signer })

	wantDelivered(t, deliver(t, c, "bounces@example.test", []string{"bob@remote.test"}, testBody))
	msgs := s.messages()
	if len(msgs) != 1 {
		t.Fatal("not delivered")
	}
	m := msgs[0]
	if !strings.HasPrefix(m.data, "DKIM-Signature:") || !strings.HasSuffix(m.data, testBody) {
		t.Fatalf("not signed as expected:\n%s", m.data)
	}
	if m.size != int64(len(m.data)) {
		t.Errorf("SIZE=%d but %d bytes sent", m.size, len(m.data))
	}
	lookup := func(name string) ([]string, error) {
		if name == txtName {
			return []string{txtValue}, nil
		}
		return nil, fmt.Errorf("no TXT record for %s", name)
	}
	vs, err := msgdkim.VerifyWithOptions(bytes.NewReader([]byte(m.data)), &msgdkim.VerifyOptions{LookupTXT: lookup})
	if err != nil || len(vs) != 1 {
		t.Fatalf("verify: %v, %d signatures", err, len(vs))
	}
	if vs[0].Err != nil || vs[0].Domain != "example.test" {
		t.Errorf("verification: domain %q, err %v", vs[0].Domain, vs[0].Err)
	}

	// Mail from a domain we hold no key for goes out unsigned.
	other := strings.ReplaceAll(testBody, "ann@example.test", "zed@other.test")
	wantDelivered(t, deliver(t, c, "zed@other.test", []string{"bob@remote.test"}, other))
	if msgs := s.messages(); len(msgs) != 2 || msgs[1].data != other {
		t.Error("foreign mail was altered")
	}
}

func TestDKIMUnsignableStillSent(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := dkim.KeyGen(dir, "example.test", "postie"); err != nil {
		t.Fatal(err)
	}
	signer, err := dkim.LoadSigner(dir, "postie", []string{"example.test"})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	s := newSink(t, sinkOpts{})
	e.mx("remote.test", 10, "mx1.remote.test", "192.0.2.1", s.addr)
	c := e.client(func(o *Options) { o.Signer = signer })
	headerOnly := "From: ann@example.test\r\nSubject: no body, no blank line\r\n"
	wantDelivered(t, deliver(t, c, "ann@example.test", []string{"bob@remote.test"}, headerOnly))
	if msgs := s.messages(); len(msgs) != 1 || msgs[0].data != headerOnly {
		t.Errorf("sink got %+v", msgs)
	}
	if !strings.Contains(e.logs.String(), "sending unsigned") {
		t.Error("the signing failure was not logged")
	}
}

func TestScanHeader(t *testing.T) {
	for _, tc := range []struct {
		in     string
		domain string
		eight  bool
	}{
		{testBody, "example.test", false},
		{"from: \"Ann, A.\" <Ann@Example.TEST>,\r\n  b@other.test\r\n\r\nbody ü", "example.test", false},
		{"Subject: Grüße\r\nFrom: a@x.test\r\n\r\n", "x.test", true},
		{"From: not an address\r\n\r\n", "", false},
		{"X: y\nFrom:\n\tfolded@fold.test\n\nbody", "fold.test", false},
		{"From: a@first.test\r\nFrom: b@second.test\r\n\r\n", "first.test", false},
		{"From: a@x.test\r\nX-Long: " + strings.Repeat("ü", 10000) + "\r\n\r\n", "x.test", true},
		{"", "", false},
	} {
		info, err := scanHeader(strings.NewReader(tc.in))
		if err != nil || info.fromDomain != tc.domain || info.eightBit != tc.eight {
			t.Errorf("scanHeader(%.40q) = %+v, %v; want %q, %v", tc.in, info, err, tc.domain, tc.eight)
		}
	}
}

// TestScanHeaderTLSRequired: the first TLS-Required field counts, in any
// case, folded or not, and only the value "No" (RFC 8689 section 5).
func TestScanHeaderTLSRequired(t *testing.T) {
	for in, want := range map[string]bool{
		"TLS-Required: No\r\n\r\nbody":                  true,
		"From: a@b.test\r\ntls-required:no\r\n\r\n":     true,
		"TLS-Required:\r\n  No \r\nSubject: x\r\n\r\n":  true,
		"TLS-Required: No thanks\r\n\r\n":               false,
		"TLS-Required: Yes\r\nTLS-Required: No\r\n\r\n": false,
		"X-TLS-Required: No\r\n\r\n":                    false,
		"Subject: x\r\n\r\nTLS-Required: No\r\n":        false, // in the body
	} {
		if info, err := scanHeader(strings.NewReader(in)); err != nil || info.tlsRequiredNo != want {
			t.Errorf("scanHeader(%q).tlsRequiredNo = %v, %v; want %v", in, info.tlsRequiredNo, err, want)
		}
	}
}

func FuzzScanHeader(f *testing.F) {
	f.Add([]byte(testBody))
	f.Add([]byte("From: =?utf-8?q?x?= <a@b.test>\r\n\r\n"))
	f.Add([]byte("From:\r\n \r\n\tx@y\r\n\r\n"))
	f.Add([]byte("\xff\xfe: \x80\r\n"))
	f.Add([]byte("TLS-Required:\r\n No\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		info, err := scanHeader(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		if info.eightBit && isASCII(string(data)) {
			t.Fatal("8-bit reported for ASCII input")
		}
		if info.fromDomain != strings.ToLower(info.fromDomain) {
			t.Fatalf("domain %q not lower-cased", info.fromDomain)
		}
	})
}

func BenchmarkDeliverReused(b *testing.B) {
	cert, _ := testutil.Certificate(b, "mx1.remote.test", "relay.test")
	e := newEnv(b)
	s := newSink(b, sinkOpts{tls: &tls.Config{Certificates: []tls.Certificate{cert}}})
	e.mx("remote.test", 10, "mx1.remote.test", "192.0.2.1", s.addr)
	c := e.client(func(o *Options) { o.Logger = slog.New(slog.DiscardHandler) })
	body := testBody + strings.Repeat(strings.Repeat("x", 76)+"\r\n", 128) // ~10 KB
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if err := deliver(b, c, "ann@example.test", []string{"bob@remote.test"}, body)[0]; err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(s.connections()), "conns")
}
