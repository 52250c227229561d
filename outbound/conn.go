package outbound

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"postie/envelope"
	"postie/tlsrpt"
)

// session is one open SMTP connection to one remote address.
type session struct {
	c     *smtp.Client
	conn  *watchConn // the TCP connection below any TLS: deadlines and cancellation act here
	addr  string     // "ip:port"
	label string     // "mx1.example.test[192.0.2.1]", for messages
	tls   string     // "TLS 1.3 verified", "TLS 1.3 unverified: ...", or "none"
	// verified: TLS authenticated by DANE, an enforced MTA-STS policy or,
	// for the smarthost, WebPKI; what REQUIRETLS asks for.
	verified bool
	// relaxed: opened without the domain's TLS policy, for a message
	// with "TLS-Required: No"; never kept for other messages.
	relaxed bool
	born    time.Time
	uses    int
}

// quit says goodbye, briefly, and closes the connection.
func (s *session) quit() {
	s.conn.setCap(quitTimeout)
	if err := s.c.Quit(); err != nil {
		s.c.Close()
	}
}

// watchConn wraps the TCP connection handed to go-smtp. It records whether
// STARTTLS was sent and whether the connection itself failed, so that a
// failed smtp.NewClientStartTLS can be told apart: STARTTLS not offered or
// refused (go on in plaintext), a reply to the greeting or EHLO (a host
// failure), or a broken connection. It also caps the deadlines go-smtp sets,
// because NewClientStartTLS talks before we can set Client.CommandTimeout.
//
// It also bounds what the server may send between two of our writes
// (maxUnprompted): go-smtp limits the length of a reply line but not the
// number of lines, so a hostile MX host could otherwise feed one endless
// multi-line reply into memory until the command timeout.
type watchConn struct {
	net.Conn
	mu           sync.Mutex
	cap          time.Duration
	sentStartTLS bool
	ioErr        error
	unprompted   int64 // bytes read since our last write
}

// maxUnprompted bounds the bytes read between two writes: a reply (RFC
// 5321 lines are at most 512 octets; an EHLO reply is a few dozen lines),
// or the server's side of a TLS handshake with its certificate chain.
const maxUnprompted = 1 << 20

// errReplyTooLong is the failure of a connection whose server sends more
// than maxUnprompted without waiting for us.
var errReplyTooLong = errors.New("outbound: the server sent over 1 MiB without waiting for a command")

func (w *watchConn) Read(p []byte) (int, error) {
	w.mu.Lock()
	over := w.unprompted > maxUnprompted
	w.mu.Unlock()
	if over {
		w.noteErr(errReplyTooLong)
		return 0, errReplyTooLong
	}
	n, err := w.Conn.Read(p)
	w.mu.Lock()
	w.unprompted += int64(n)
	w.mu.Unlock()
	if err != nil {
		w.noteErr(err)
	}
	return n, err
}

func (w *watchConn) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.unprompted = 0
	if bytes.HasPrefix(p, []byte("STARTTLS")) {
		w.sentStartTLS = true
	}
	w.mu.Unlock()
	n, err := w.Conn.Write(p)
	if err != nil {
		w.noteErr(err)
	}
	return n, err
}

func (w *watchConn) noteErr(err error) {
	w.mu.Lock()
	if w.ioErr == nil {
		w.ioErr = err
	}
	w.mu.Unlock()
}

func (w *watchConn) state() (sentStartTLS bool, ioErr error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.sentStartTLS, w.ioErr
}

func (w *watchConn) setCap(d time.Duration) {
	w.mu.Lock()
	w.cap = d
	w.mu.Unlock()
}

func (w *watchConn) SetDeadline(t time.Time) error {
	w.mu.Lock()
	c := w.cap
	w.mu.Unlock()
	if c > 0 && !t.IsZero() && time.Until(t) > c {
		t = time.Now().Add(c)
	}
	return w.Conn.SetDeadline(t)
}

// dial opens a TCP connection to addr within ConnectTimeout.
func (c *Client) dial(ctx context.Context, addr string) (*watchConn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.ConnectTimeout)
	defer cancel()
	conn, err := c.opts.Dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &watchConn{Conn: conn}, nil
}

// newSession finishes setting up a client whose greeting is not read yet
// or already read, and says EHLO with our name.
func (c *Client) newSession(sc *smtp.Client, conn *watchConn, addr, label string) (*session, error) {
	sc.CommandTimeout = c.opts.CommandTimeout
	sc.SubmissionTimeout = 2 * c.opts.CommandTimeout
	conn.setCap(0)
	s := &session{c: sc, conn: conn, addr: addr, label: label, born: time.Now()}
	if err := sc.Hello(c.hostname); err != nil {
		sc.Close()
		return nil, err
	}
	return s, nil
}

// tlsResult notes what happened in a TLS handshake, for the logs and
// the reports.
type tlsResult struct {
	mu        sync.Mutex
	handshook bool  // the peer's certificate was seen (VerifyConnection ran)
	verifyErr error // why it does not verify, if so
}

func (r *tlsResult) set(err error) {
	r.mu.Lock()
	r.handshook, r.verifyErr = true, err
	r.mu.Unlock()
}

func (r *tlsResult) done() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.handshook
}

func (r *tlsResult) err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.verifyErr
}

// opportunisticTLS is the TLS configuration for MX hosts without a policy
// that must hold: any certificate is accepted (RFC 7435: an
// unauthenticated channel still beats plaintext), but it is verified
// anyway, against roots (nil: the system's), so the logs and reports say
// whether it was valid for the host name.
func opportunisticTLS(serverName string, roots *x509.CertPool, res *tlsResult) *tls.Config {
	return &tls.Config{
		ServerName:         serverName,
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			res.set(verifyPeer(cs, serverName, roots))
			return nil
		},
	}
}

func verifyPeer(cs tls.ConnectionState, name string, roots *x509.CertPool) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("no certificate")
	}
	opts := x509.VerifyOptions{DNSName: name, Roots: roots, Intermediates: x509.NewCertPool()}
	for _, cert := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(cert)
	}
	_, err := cs.PeerCertificates[0].Verify(opts)
	return err
}

// dialMX connects to one address of an MX host under the host's policy.
// Without a strict policy it uses STARTTLS when the host offers it, and if
// STARTTLS is not offered, is refused or its handshake fails, it
// reconnects in plaintext. A failure is a plain error (network) or an
// *envelope.Error (the host's reply to the greeting or EHLO).
func (c *Client) dialMX(ctx context.Context, dp domainPolicy, hp hostPolicy, t target, ip net.IP) (*session, error) {
	if hp.strict() {
		return c.dialStrict(ctx, dp, hp, t, ip)
	}
	addr := net.JoinHostPort(ip.String(), fmt.Sprint(t.port))
	label := t.label(ip)
	if c.plain.has(addr) {
		s, err := c.dialPlain(ctx, addr, label)
		if err == nil {
			c.reportSession(dp, hp, t, ip, s.conn, tlsrpt.StartTLSNotSupported, "STARTTLS not offered or failing (remembered)")
		}
		return s, err
	}
	conn, err := c.dial(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("outbound: connect to %s: %w", label, err)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	res := &tlsResult{}
	sc, noTLS, err := c.startTLS(conn, label, opportunisticTLS(t.name, c.opts.RootCAs, res))
	if err != nil {
		return nil, err
	}
	if noTLS == nil {
		s, err := c.newSession(sc, conn, addr, label)
		if err == nil {
			s.tls = describeTLS(sc, res)
			c.reportOpportunistic(dp, hp, t, ip, s.conn, res.err())
			c.log.Debug("outbound: connected", "host", label, "tls", s.tls)
			return s, nil
		}
		if res.done() || isTimeout(err) {
			return nil, hostError(label, "EHLO", err)
		}
		c.log.Info("outbound: TLS handshake failed, retrying without TLS", "host", label, "err", err)
		c.reportSession(dp, hp, t, ip, conn, tlsrpt.ValidationFailure, "TLS handshake failed: "+err.Error())
		c.plain.add(addr)
	} else {
		c.log.Debug("outbound: no STARTTLS, continuing without TLS", "host", label, "reason", noTLS)
		c.reportSession(dp, hp, t, ip, conn, tlsrpt.StartTLSNotSupported, noTLS.Error())
		c.plain.add(addr)
	}
	return c.dialPlain(ctx, addr, label)
}

// startTLS says EHLO and STARTTLS on conn with cfg, capping go-smtp's
// deadlines. A broken connection or a reply to the greeting or EHLO fails
// the host (err); STARTTLS not offered or refused is noTLS, for the
// caller's policy to judge (plaintext, or a deferral).
func (c *Client) startTLS(conn *watchConn, label string, cfg *tls.Config) (sc *smtp.Client, noTLS, err error) {
	conn.setCap(c.opts.CommandTimeout)
	sc, err = smtp.NewClientStartTLSWithLocalName(conn, cfg, c.hostname)
	if err == nil {
		return sc, nil, nil
	}
	sent, ioErr := conn.state()
	var se *smtp.SMTPError
	switch {
	case ioErr != nil:
		return nil, nil, fmt.Errorf("outbound: %s: %w", label, err)
	case errors.As(err, &se) && !sent:
		return nil, nil, hostError(label, "greeting or EHLO", err)
	}
	return nil, err, nil
}

// plainMemo remembers for a while the addresses where STARTTLS is not
// offered or fails. Finding out costs a connection (go-smtp's
// NewClientStartTLS closes it), so the next connections there go straight
// to plaintext. An attacker able to strip STARTTLS could do so on every
// connection anyway: opportunistic TLS gives up nothing here.
type plainMemo struct {
	mu    sync.Mutex
	until map[string]time.Time
}

func (m *plainMemo) has(addr string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return time.Now().Before(m.until[addr])
}

func (m *plainMemo) add(addr string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	if len(m.until) >= plainMemoMax {
		for a, t := range m.until {
			if now.After(t) {
				delete(m.until, a)
			}
		}
		if len(m.until) >= plainMemoMax {
			clear(m.until)
		}
	}
	if m.until == nil {
		m.until = make(map[string]time.Time)
	}
	m.until[addr] = now.Add(plainMemoTTL)
}

// dialPlain connects to addr without TLS.
func (c *Client) dialPlain(ctx context.Context, addr, label string) (*session, error) {
	conn, err := c.dial(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("outbound: connect to %s: %w", label, err)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	s, err := c.newSession(smtp.NewClient(conn), conn, addr, label)
	if err != nil {
		return nil, hostError(label, "greeting or EHLO", err)
	}
	s.tls = "none"
	c.log.Debug("outbound: connected", "host", label, "tls", s.tls)
	return s, nil
}

// dialSmarthost connects to the smarthost with mandatory TLS (implicit or
// STARTTLS, verified) and logs in. Every failure is temporary: mail waits
// while the administrator fixes the relay settings.
func (c *Client) dialSmarthost(ctx context.Context, t target, ip net.IP) (*session, error) {
	addr := net.JoinHostPort(ip.String(), fmt.Sprint(t.port))
	label := t.label(ip)
	conn, err := c.dial(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("outbound: connect to smarthost %s: %w", label, err)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	cfg := c.smarthostTLSConfig(t.name)
	var sc *smtp.Client
	if c.opts.SmarthostTLS == "tls" {
		tc := tls.Client(conn, cfg)
		hctx, cancel := context.WithTimeout(ctx, c.opts.CommandTimeout)
		err = tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("outbound: TLS with smarthost %s: %w", label, err)
		}
		sc = smtp.NewClient(tc)
	} else {
		conn.setCap(c.opts.CommandTimeout)
		sc, err = smtp.NewClientStartTLSWithLocalName(conn, cfg, c.hostname)
		if err != nil {
			return nil, fmt.Errorf("outbound: STARTTLS with smarthost %s: %w", label, err)
		}
	}
	s, err := c.newSession(sc, conn, addr, label)
	if err != nil {
		return nil, fmt.Errorf("outbound: smarthost %s: %w", label, err)
	}
	if state, ok := sc.TLSConnectionState(); ok {
		s.tls = tls.VersionName(state.Version) + " verified"
		s.verified = true
	}
	if err := c.smarthostAuth(s); err != nil {
		s.c.Close()
		return nil, err
	}
	return s, nil
}

func (c *Client) smarthostTLSConfig(host string) *tls.Config {
	var cfg *tls.Config
	if c.opts.SmarthostTLSConfig != nil {
		cfg = c.opts.SmarthostTLSConfig.Clone()
	} else {
		cfg = &tls.Config{}
	}
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	if cfg.RootCAs == nil {
		cfg.RootCAs = c.opts.RootCAs
	}
	return cfg
}

// smarthostAuth logs in with AUTH PLAIN when a username is configured. A
// refusal is a configuration error that no retry fixes by itself, but it is
// reported as temporary so that mail waits for the fix instead of bouncing.
func (c *Client) smarthostAuth(s *session) error {
	if c.opts.SmarthostUsername == "" {
		return nil
	}
	if !s.c.SupportsAuth("PLAIN") {
		c.log.Error("outbound: smarthost does not offer AUTH PLAIN; mail is held", "host", s.label)
		return fmt.Errorf("outbound: smarthost %s does not offer AUTH PLAIN", s.label)
	}
	err := s.c.Auth(sasl.NewPlainClient("", c.opts.SmarthostUsername, c.opts.SmarthostPassword))
	if err == nil {
		return nil
	}
	c.log.Error("outbound: smarthost refused our login; mail is held until the credentials are fixed",
		"host", s.label, "user", c.opts.SmarthostUsername, "err", err)
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return &envelope.Error{Code: 454, Enhanced: [3]int{4, 7, 0},
			Message: fmt.Sprintf("smarthost %s refused our login: %d %s", s.label, se.Code, oneLine(se.Message)), Err: err}
	}
	return fmt.Errorf("outbound: AUTH with smarthost %s: %w", s.label, err)
}

// describeTLS summarises the session's TLS for logs.
func describeTLS(sc *smtp.Client, res *tlsResult) string {
	state, ok := sc.TLSConnectionState()
	if !ok {
		return ""
	}
	res.mu.Lock()
	defer res.mu.Unlock()
	if res.verifyErr != nil {
		return tls.VersionName(state.Version) + " unverified: " + res.verifyErr.Error()
	}
	return tls.VersionName(state.Version) + " verified"
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
