package imapd

import (
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
)

func TestLoginAndCapabilities(t *testing.T) {
	ts := newTestServer(t)
	c := ts.dial(nil)
	caps, err := c.Capability().Wait()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []imap.Cap{imap.CapIMAP4rev1, imap.CapIMAP4rev2, imap.CapIdle, imap.CapMove, imap.CapUIDPlus,
		imap.CapNamespace, imap.CapSpecialUse, imap.CapCreateSpecialUse, imap.CapLiteralPlus, imap.CapUnselect,
		imap.CapESearch, imap.CapSearchRes, imap.CapStatusSize, imap.CapChildren, imap.CapListStatus, imap.CapListExtended} {
		if !caps.Has(want) {
			t.Errorf("capability %s missing (have %v)", want, caps)
		}
	}
	if _, ok := caps[imap.Cap("APPENDLIMIT=67108864")]; !ok {
		t.Errorf("APPENDLIMIT=67108864 missing: %v", caps)
	}
	if ts.auth.services[0] != "imap" || ts.auth.ips[0] != "127.0.0.1" {
		t.Errorf("auth called with %v %v", ts.auth.services, ts.auth.ips)
	}
	ns, err := c.Namespace().Wait()
	if err != nil || len(ns.Personal) != 1 || ns.Personal[0].Delim != '/' {
		t.Errorf("namespace %+v %v", ns, err)
	}

	// Wrong password and unknown user get the same answer.
	var texts []string
	for _, u := range []struct{ user, pass string }{{testUser, "wrong"}, {"nobody@example.test", "x"}} {
		c2, err := imapclient.DialInsecure(ts.addr, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = c2.Login(u.user, u.pass).Wait()
		if imapCode(err) != imap.ResponseCodeAuthenticationFailed {
			t.Errorf("login %s: %v", u.user, err)
		}
		texts = append(texts, err.Error())
		c2.Close()
	}
	if texts[0] != texts[1] {
		t.Errorf("failed logins differ: %q vs %q", texts[0], texts[1])
	}

	// AUTHENTICATE PLAIN.
	c3, err := imapclient.DialInsecure(ts.addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if err := c3.Authenticate(sasl.NewPlainClient("", testUser, testPass)); err != nil {
		t.Fatalf("AUTHENTICATE PLAIN: %v", err)
	}
	if _, err := c3.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
}

func TestImplicitTLS(t *testing.T) {
	ts := newTestServer(t)
	c, err := imapclient.DialTLS(ts.tlsAddr, &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(testUser, testPass).Wait(); err != nil {
		t.Fatalf("login over TLS: %v", err)
	}
	if _, err := c.List("", "*", nil).Collect(); err != nil {
		t.Fatal(err)
	}
}

// A plaintext connection from elsewhere than loopback may not log in before STARTTLS.
func TestPlaintextAuthNeedsTLSOffLoopback(t *testing.T) {
	ts := newTestServer(t)
	newRemote := func() net.Conn {
		client, server := net.Pipe()
		ts.srv.dispatch(remoteAddrConn{server, &net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 4242}}, false)
		return client
	}
	c := imapclient.New(newRemote(), nil)
	defer c.Close()
	if err := c.WaitGreeting(); err != nil {
		t.Fatal(err)
	}
	if caps := c.Caps(); !caps.Has(imap.CapLoginDisabled) || !caps.Has(imap.CapStartTLS) {
		t.Errorf("greeting caps %v: want LOGINDISABLED and STARTTLS", caps)
	}
	err := c.Login(testUser, testPass).Wait()
	if imapCode(err) != imap.ResponseCodePrivacyRequired {
		t.Errorf("plaintext login from a remote address: %v", err)
	}
	if len(ts.auth.services) != 0 {
		t.Error("the password reached the authenticator")
	}
	c2, err := imapclient.NewStartTLS(newRemote(), &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}})
	if err != nil {
		t.Fatalf("STARTTLS: %v", err)
	}
	defer c2.Close()
	if err := c2.Login(testUser, testPass).Wait(); err != nil {
		t.Fatalf("login after STARTTLS: %v", err)
	}
	if ts.auth.ips[0] != "192.0.2.7" {
		t.Errorf("remote IP given to Auth: %q", ts.auth.ips[0])
	}
}

type remoteAddrConn struct {
	net.Conn
	addr net.Addr
}

func (c remoteAddrConn) RemoteAddr() net.Addr { return c.addr }

func TestConnectionLimits(t *testing.T) {
	ts := newTestServer(t, func(o *Options) { o.MaxConnectionsPerIP = 2 })
	var conns []net.Conn
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		buf := make([]byte, 256)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.Read(buf); err != nil || !strings.HasPrefix(string(buf[:n]), "* OK") {
			t.Fatalf("greeting %d: %q %v", i, buf[:n], err)
		}
		conns = append(conns, c)
	}
	c, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 256)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _ := c.Read(buf)
	if !strings.HasPrefix(string(buf[:n]), "* BYE") {
		t.Errorf("third connection got %q, want BYE", buf[:n])
	}
	c.Close()
	// A slot comes back when a connection closes.
	conns[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _ := c.Read(buf)
		c.Close()
		if strings.HasPrefix(string(buf[:n]), "* OK") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("slot never came back")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
