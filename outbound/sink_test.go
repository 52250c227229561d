package outbound

// Test doubles: a fake DNS, a test network that maps remote "ip:port"
// addresses to loopback listeners, and scriptable SMTP sinks built on
// go-smtp's server.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"postie/envelope"
	"postie/internal/testutil"
)

// ---- fake DNS ----

type fakeDNS struct {
	mu        sync.Mutex
	mx        map[string][]*net.MX
	mxErr     map[string]error
	hosts     map[string][]net.IPAddr
	hostErr   map[string]error
	mxLookups int
}

func newFakeDNS() *fakeDNS {
	return &fakeDNS{mx: map[string][]*net.MX{}, mxErr: map[string]error{},
		hosts: map[string][]net.IPAddr{}, hostErr: map[string]error{}}
}

func dnsKey(name string) string { return strings.ToLower(strings.TrimSuffix(name, ".")) }

func notFound(name string) error {
	return &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func (f *fakeDNS) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mxLookups++
	k := dnsKey(name)
	if err := f.mxErr[k]; err != nil {
		return nil, err
	}
	recs, ok := f.mx[k]
	if !ok {
		return nil, notFound(name)
	}
	out := make([]*net.MX, len(recs))
	for i, r := range recs {
		cp := *r
		out[i] = &cp
	}
	return out, nil
}

func (f *fakeDNS) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := dnsKey(host)
	if err := f.hostErr[k]; err != nil {
		return nil, err
	}
	addrs, ok := f.hosts[k]
	if !ok {
		return nil, notFound(host)
	}
	return append([]net.IPAddr(nil), addrs...), nil
}

func (f *fakeDNS) addMX(domain string, pref uint16, host string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mx[dnsKey(domain)] = append(f.mx[dnsKey(domain)], &net.MX{Host: host + ".", Pref: pref})
}

func (f *fakeDNS) addHost(name string, ips ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ip := range ips {
		f.hosts[dnsKey(name)] = append(f.hosts[dnsKey(name)], net.IPAddr{IP: net.ParseIP(ip)})
	}
}

// ---- test network ----

// testNet routes the "ip:port" addresses outbound dials (documentation
// addresses such as 192.0.2.1:25) to loopback listeners. Unknown
// addresses fail: nothing ever leaves the machine.
type testNet struct {
	mu     sync.Mutex
	routes map[string]string
	dials  []string
}

func (n *testNet) route(ip string, port int, target string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.routes == nil {
		n.routes = map[string]string{}
	}
	n.routes[net.JoinHostPort(ip, fmt.Sprint(port))] = target
}

func (n *testNet) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	n.mu.Lock()
	target, ok := n.routes[addr]
	n.mu.Unlock()
	if !ok {
		return nil, &net.OpError{Op: "dial", Net: network, Err: errors.New("test network: no route to " + addr)}
	}
	n.mu.Lock()
	n.dials = append(n.dials, addr)
	n.mu.Unlock()
	var d net.Dialer
	return d.DialContext(ctx, "tcp", target)
}

func (n *testNet) dialed() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.dials...)
}

// closedPort returns a loopback address where nothing listens: dialing it
// is refused.
func closedPort(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// hangingServer accepts connections and never says anything.
func hangingServer(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return ln.Addr().String()
}

// ---- SMTP sink ----

type sinkOpts struct {
	tls         *tls.Config // offer STARTTLS (or implicit TLS)
	implicitTLS bool
	utf8        bool
	maxSize     int64
	user, pass  string // require AUTH PLAIN with these
	requireTLS  bool   // advertise REQUIRETLS (after STARTTLS)
}

type sinkMsg struct {
	from  string
	rcpts []string
	data  string
	tls   bool
	auth  string
	utf8  bool
	size  int64
	// requireTLS: MAIL carried REQUIRETLS.
	requireTLS bool
}

// sink is a scriptable SMTP server: per-recipient replies, MAIL, EHLO
// and DATA errors, hanging recipients; it records connections and messages.
type sink struct {
	addr    string
	opts    sinkOpts
	release chan struct{}

	mu      sync.Mutex
	conns   int
	open    []net.Conn
	rcpt    map[string]*smtp.SMTPError // by lower-case address
	hang    map[string]bool
	drop    map[string]bool // close the connection at this RCPT
	ehloErr *smtp.SMTPError
	mailErr *smtp.SMTPError
	dataErr *smtp.SMTPError
	msgs    []sinkMsg
	helos   []string // the names of every EHLO/HELO, in order
	remotes []string // the client's address at every EHLO/HELO
}

func newSink(t testing.TB, o sinkOpts) *sink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &sink{addr: ln.Addr().String(), opts: o, release: make(chan struct{}),
		rcpt: map[string]*smtp.SMTPError{}, hang: map[string]bool{}, drop: map[string]bool{}}
	srv := smtp.NewServer(s)
	srv.Domain = "sink.test"
	srv.EnableSMTPUTF8 = o.utf8
	srv.EnableREQUIRETLS = o.requireTLS
	srv.MaxMessageBytes = o.maxSize
	srv.ReadTimeout = 10 * time.Second
	srv.ErrorLog = nopLogger{}
	var l net.Listener = &countingListener{Listener: ln, s: s}
	if o.implicitTLS {
		l = tls.NewListener(l, o.tls)
	} else {
		srv.TLSConfig = o.tls
	}
	go srv.Serve(l)
	t.Cleanup(func() {
		close(s.release)
		srv.Close()
	})
	return s
}

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}
func (nopLogger) Println(...any)        {}

type countingListener struct {
	net.Listener
	s *sink
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.s.mu.Lock()
		l.s.conns++
		l.s.open = append(l.s.open, c)
		l.s.mu.Unlock()
	}
	return c, err
}

// dropAll closes every connection the sink accepted, as a server does to
// idle clients.
func (s *sink) dropAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.open {
		c.Close()
	}
	s.open = nil
}

func (s *sink) reply(rcpt string, code int, enh smtp.EnhancedCode, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rcpt[strings.ToLower(rcpt)] = &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: msg}
}

func (s *sink) messages() []sinkMsg {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sinkMsg(nil), s.msgs...)
}

// hellos returns the names the client gave in EHLO/HELO, and from where.
func (s *sink) hellos() (names, remotes []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.helos...), append([]string(nil), s.remotes...)
}

func (s *sink) connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

func (s *sink) NewSession(c *smtp.Conn) (smtp.Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.helos = append(s.helos, c.Hostname())
	s.remotes = append(s.remotes, c.Conn().RemoteAddr().String())
	if s.ehloErr != nil {
		return nil, s.ehloErr
	}
	return &sinkSession{s: s, c: c}, nil
}

type sinkSession struct {
	s     *sink
	c     *smtp.Conn
	auth  string
	from  string
	rcpts []string
	utf8  bool
	size  int64
	rtls  bool
}

func (ss *sinkSession) AuthMechanisms() []string {
	if ss.s.opts.user == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (ss *sinkSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, user, pass string) error {
		if user == ss.s.opts.user && pass == ss.s.opts.pass {
			ss.auth = user
			return nil
		}
		return smtp.ErrAuthFailed
	}), nil
}

func (ss *sinkSession) Mail(from string, opts *smtp.MailOptions) error {
	if ss.s.opts.user != "" && ss.auth == "" {
		return smtp.ErrAuthRequired
	}
	ss.s.mu.Lock()
	err := ss.s.mailErr
	ss.s.mu.Unlock()
	if err != nil {
		return err
	}
	ss.from, ss.utf8, ss.size, ss.rtls = from, opts.UTF8, opts.Size, opts.RequireTLS
	return nil
}

func (ss *sinkSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	ss.s.mu.Lock()
	err, hang, drop := ss.s.rcpt[strings.ToLower(to)], ss.s.hang[strings.ToLower(to)], ss.s.drop[strings.ToLower(to)]
	ss.s.mu.Unlock()
	if drop {
		ss.c.Close()
		return errors.New("dropped")
	}
	if hang {
		<-ss.s.release
		return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "shutting down"}
	}
	if err != nil {
		return err
	}
	ss.rcpts = append(ss.rcpts, to)
	return nil
}

func (ss *sinkSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.s.mu.Lock()
	defer ss.s.mu.Unlock()
	if ss.s.dataErr != nil {
		return ss.s.dataErr
	}
	_, isTLS := ss.c.TLSConnectionState()
	ss.s.msgs = append(ss.s.msgs, sinkMsg{from: ss.from, rcpts: ss.rcpts, data: string(data),
		tls: isTLS, auth: ss.auth, utf8: ss.utf8, size: ss.size, requireTLS: ss.rtls})
	return nil
}

func (ss *sinkSession) Reset() {
	ss.from, ss.rcpts, ss.utf8, ss.size, ss.rtls = "", nil, false, 0, false
}

func (ss *sinkSession) Logout() error { return nil }

// ---- environment ----

type env struct {
	t    testing.TB
	dns  *fakeDNS
	net  *testNet
	logs *testutil.SyncBuffer
}

func newEnv(t testing.TB) *env {
	return &env{t: t, dns: newFakeDNS(), net: &testNet{}, logs: &testutil.SyncBuffer{}}
}

// mx publishes an MX host for domain at ip and routes ip:25 to addr.
func (e *env) mx(domain string, pref uint16, host, ip, addr string) {
	e.dns.addMX(domain, pref, host)
	e.dns.addHost(host, ip)
	e.net.route(ip, 25, addr)
}

func (e *env) client(mod func(*Options)) *Client {
	opts := Options{
		Hostname:       "postie.example.test",
		Resolver:       e.dns,
		Dial:           e.net.Dial,
		ConnectTimeout: 2 * time.Second,
		CommandTimeout: 5 * time.Second,
		Logger:         slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mod != nil {
		mod(&opts)
	}
	c := New(opts)
	e.t.Cleanup(func() { c.Close() })
	return c
}

const testBody = "From: Ann <ann@example.test>\r\n" +
	"To: bob@remote.test\r\n" +
	"Subject: hello\r\n" +
	"Date: Mon, 02 Jan 2006 15:04:05 +0000\r\n" +
	"Message-ID: <1@example.test>\r\n" +
	"\r\n" +
	"Hello Bob,\r\n" +
	".a line with a leading dot\r\n" +
	"Bye.\r\n"

// deliver makes one delivery attempt and demands exactly one result per
// recipient, so that no check ranging over the results can pass on an
// empty slice.
func deliver(t testing.TB, c *Client, from string, rcpts []string, body string) []error {
	t.Helper()
	return deliverCtx(t, context.Background(), c, from, rcpts, body)
}

// deliverCtx is deliver with a context of the test's choosing.
func deliverCtx(t testing.TB, ctx context.Context, c *Client, from string, rcpts []string, body string) []error {
	t.Helper()
	errs := c.Deliver(ctx, &envelope.Transfer{From: from, To: rcpts}, strings.NewReader(body), int64(len(body)))
	if len(errs) != len(rcpts) {
		t.Fatalf("Deliver from %q to %q returned %d results, want one per recipient: %v", from, rcpts, len(errs), errs)
	}
	return errs
}

// A non-ASCII ORCPT of type rfc822 (an alias's SMTPUTF8 address) goes as
// utf-8-addr: go-smtp's client would refuse the command, which would
// break the connection at every attempt.
func TestRcptOptionsNonASCIIORcpt(t *testing.T) {
	o := rcptOptions(envelope.RcptParams{ORcptType: "rfc822", ORcpt: "jörg@example.test"})
	if o.OriginalRecipientType != smtp.DSNAddressTypeUTF8 {
		t.Errorf("type %q, want UTF-8", o.OriginalRecipientType)
	}
	if o := rcptOptions(envelope.RcptParams{ORcpt: "a@example.test"}); o.OriginalRecipientType != smtp.DSNAddressTypeRFC822 {
		t.Errorf("type %q, want RFC822", o.OriginalRecipientType)
	}
	if rcptOptions(envelope.RcptParams{}) != nil {
		t.Error("options for a recipient without parameters")
	}
}
