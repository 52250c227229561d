package tests

import (
	"io"
	"net"
	"sync"
	"testing"

	"github.com/emersion/go-smtp"
)

// sink is an SMTP server on loopback standing in for a remote MX. rcptReply
// decides per recipient: nil accepts, an *smtp.SMTPError refuses. It
// records each message's envelope with its MAIL and RCPT parameters
// (RFC 3461 DSN, when the server advertises it).
type sink struct {
	addr string
	srv  *smtp.Server

	mu        sync.Mutex
	received  []sunk
	helo      []string // the name of every HELO/EHLO, in order
	remotes   []string // the address each of those came from
	rcptReply func(rcpt string) error
}

type sunk struct {
	from  string
	mail  smtp.MailOptions
	to    []string
	ropts []smtp.RcptOptions // one per to
	tls   bool               // DATA came over TLS
	data  []byte
}

// newSink listens on host:port (port "0" for any); each of configure
// adjusts the server before it serves (srv.EnableDSN...).
func newSink(t testing.TB, hostport string, configure ...func(srv *smtp.Server)) *sink {
	t.Helper()
	s := &sink{}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		s.mu.Lock()
		s.helo = append(s.helo, c.Hostname())
		s.remotes = append(s.remotes, c.Conn().RemoteAddr().String())
		s.mu.Unlock()
		return &sinkSession{s: s, c: c}, nil
	}))
	s.srv.Domain = "sink.remote.test"
	s.srv.AllowInsecureAuth = true
	for _, f := range configure {
		f(s.srv)
	}
	ln, err := net.Listen("tcp", hostport)
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	go s.srv.Serve(ln)
	t.Cleanup(func() { s.srv.Close() })
	return s
}

func (s *sink) messages() []sunk {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sunk(nil), s.received...)
}

// refuse sets rcptReply.
func (s *sink) refuse(reply func(rcpt string) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rcptReply = reply
}

// greetings returns the HELO/EHLO names and the addresses they came from.
func (s *sink) greetings() (helo, remotes []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.helo...), append([]string(nil), s.remotes...)
}

type sinkSession struct {
	s   *sink
	c   *smtp.Conn
	cur sunk
}

func (ss *sinkSession) Reset()        { ss.cur = sunk{} }
func (ss *sinkSession) Logout() error { return nil }
func (ss *sinkSession) Mail(from string, o *smtp.MailOptions) error {
	ss.cur = sunk{from: from}
	if o != nil {
		ss.cur.mail = *o
	}
	return nil
}
func (ss *sinkSession) Rcpt(to string, o *smtp.RcptOptions) error {
	ss.s.mu.Lock()
	reply := ss.s.rcptReply
	ss.s.mu.Unlock()
	if reply != nil {
		if err := reply(to); err != nil {
			return err
		}
	}
	if o == nil {
		o = &smtp.RcptOptions{}
	}
	ss.cur.to = append(ss.cur.to, to)
	ss.cur.ropts = append(ss.cur.ropts, *o)
	return nil
}
func (ss *sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.cur.data = b
	_, ss.cur.tls = ss.c.TLSConnectionState()
	ss.s.mu.Lock()
	ss.s.received = append(ss.s.received, ss.cur)
	ss.s.mu.Unlock()
	return nil
}

var errRejected = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such mailbox here"}
