package smtp

import (
	"bufio"
	"crypto/tls"
	"net"
	"strings"
	"testing"
)

// TestNewClientStartTLSWithLocalName: the EHLO before STARTTLS names the
// caller's host, not "localhost".
func TestNewClientStartTLSWithLocalName(t *testing.T) {
	ln := newLocalListener(t)
	defer ln.Close()
	hellos := make(chan string, 4)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		send := smtpSender{c}.send
		send("220 127.0.0.1 ESMTP ready")
		s := bufio.NewScanner(c)
		for s.Scan() {
			line := s.Text()
			switch {
			case strings.HasPrefix(line, "EHLO "):
				hellos <- strings.TrimPrefix(line, "EHLO ")
				send("250-127.0.0.1 hello")
				send("250 STARTTLS")
			case line == "STARTTLS":
				send("220 go ahead")
				keypair, err := tls.X509KeyPair(localhostCert, localhostKey)
				if err != nil {
					t.Error(err)
					return
				}
				tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{keypair}})
				defer tc.Close()
				s = bufio.NewScanner(tc)
				send = smtpSender{tc}.send
			case line == "QUIT":
				send("221 bye")
				return
			default:
				send("500 unexpected")
			}
		}
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{ServerName: "example.com"}
	testHookStartTLS(cfg) // trust the test certificate
	c, err := NewClientStartTLSWithLocalName(conn, cfg, "mx.sender.example")
	if err != nil {
		t.Fatalf("NewClientStartTLSWithLocalName: %v", err)
	}
	if err := c.Hello("mx.sender.example"); err != nil {
		t.Fatalf("Hello after STARTTLS: %v", err)
	}
	if _, ok := c.TLSConnectionState(); !ok {
		t.Fatal("no TLS after STARTTLS")
	}
	c.Quit()
	for i, when := range []string{"before", "after"} {
		if got := <-hellos; got != "mx.sender.example" {
			t.Errorf("EHLO %s STARTTLS (#%d) named %q, want mx.sender.example", when, i, got)
		}
	}
}

func TestNewClientStartTLSWithLocalNameRejectsBadName(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	if _, err := NewClientStartTLSWithLocalName(a, nil, "evil\r\nMAIL FROM:<x>"); err == nil {
		t.Fatal("a name with CRLF was accepted")
	}
}
