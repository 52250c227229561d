// Package smtpd is Postie's SMTP front-end: go-smtp backends and listeners
// for the MX role (port 25: mail for our own domains only, never a relay)
// and the submission role (587 with STARTTLS, 465 with implicit TLS:
// authenticated users sending anywhere). It speaks the protocol and
// enforces policy (relaying, sender binding, connection, size and rate
// limits); storing mail is someone else's job, reached through the small
// Recipients, Delivery and Auth interfaces declared here. On the MX role a
// client outside the trusted networks is "outside": Checks looks it up
// (reverse DNS, block lists, SPF), and its mail is marked
// envelope.Envelope.Inbound for the trust checks made after DATA.
package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"postie/accounts"
	"postie/envelope"
	"postie/netconn"
)

// Role selects what a Server is for.
type Role int

const (
	// RoleMX receives mail from other MTAs for our domains (port 25). It
	// offers no AUTH and relays nothing.
	RoleMX Role = iota + 1
	// RoleSubmission takes mail from our users (RFC 6409: ports 587 and
	// 465). AUTH is required before MAIL, and the sender must be the login's.
	RoleSubmission
)

func (r Role) String() string {
	switch r {
	case RoleMX:
		return "mx"
	case RoleSubmission:
		return "submission"
	}
	return fmt.Sprintf("Role(%d)", int(r))
}

// Recipients answers RCPT TO.
type Recipients interface {
	IsLocalDomain(domain string) bool
	// CheckRecipient returns nil or an *envelope.Error: 550 5.1.1 unknown,
	// 552 5.2.2 over quota, 4xx temporary. Other errors count as temporary.
	CheckRecipient(ctx context.Context, rcpt string) error
}

// Delivery takes a message once its envelope is complete.
type Delivery interface {
	// Deliver stores the message for every env.To durably before
	// returning; one error per env.To (nil = accepted). It must read body
	// to its end; a read error means the message is incomplete and must
	// not be stored.
	Deliver(ctx context.Context, env *envelope.Envelope, body io.Reader) []error
}

// Checks are the MX role's checks of clients from outside (not in
// Options.TrustedNetworks). Every method is bounded in time by the
// implementation and may be called from several goroutines.
type Checks interface {
	// ClientName returns the client's forward-confirmed reverse DNS name,
	// "" when it has none. It is asked once per session, when the session
	// starts, and awaited at DATA (for the Received: field).
	ClientName(ctx context.Context, ip netip.Addr) string
	// Blocked returns the refusal for a client on a DNS block list (an
	// *envelope.Error, 554 5.7.1), nil when it is not listed. It is asked
	// when the session starts and awaited at the first RCPT.
	Blocked(ctx context.Context, ip netip.Addr) error
	// StartMail begins the work that the envelope so far allows (SPF) at
	// MAIL FROM and returns it for envelope.Envelope.Early.
	StartMail(ctx context.Context, ip netip.Addr, helo, from string) any
}

// Auth checks submission logins and what they may send as.
type Auth interface {
	// Login returns accounts.ErrAuthFailed for bad credentials; any other
	// error is taken as a temporary failure (454).
	Login(ctx context.Context, remoteIP, service, username, password string) (*accounts.User, error)
	CanSendAs(u *accounts.User, addr string) bool
}

// Options configures a Server. Zero values mean "no limit" unless said.
type Options struct {
	Role      Role
	Hostname  string      // banner and Message-ID domain; "" = "localhost"
	TLSConfig *tls.Config // nil: no STARTTLS, and ServeTLS fails

	MaxMessageBytes     int64         // SIZE; over it: 552 5.3.4
	MaxRecipients       int           // per message; over it: 452 4.5.3
	MaxConnections      int           // in total; at it an idle connection is shed, else 421 4.7.0 and close
	MaxConnectionsPerIP int           // per client address (IPv6: per /64); over it: 421 4.7.0
	IdleTimeout         time.Duration // per read and per write; 0 = 5 minutes (RFC 5321 §4.5.3.2)
	// Deadlines bound a command, a DATA and a transaction once begun, and
	// the TLS handshake of ServeTLS and STARTTLS; zero fields take
	// netconn's defaults (see netconn.Conn).
	Deadlines netconn.Deadlines

	// MessagesPerMinutePerIP limits the MX role (450 4.7.1 at MAIL).
	MessagesPerMinutePerIP int
	// MaxMessagesPerHour is the submission role's per-user default (450
	// 4.7.1 at MAIL); a user's own MaxMessagesPerHour overrides it when > 0.
	MaxMessagesPerHour int

	// Postmaster is the mailbox that RCPT TO:<Postmaster>, which has no
	// domain (RFC 5321 §4.1.1.3), stands for; "" = postmaster@Hostname.
	// (Added for issue 9 item 7; used in session.go.)
	Postmaster string
	// TrustedNetworks are exempt from MessagesPerMinutePerIP and from
	// Checks; on the MX role everyone else is outside, and their mail is
	// marked envelope.Envelope.Inbound for the router's checks. nil: none.
	TrustedNetworks []netip.Prefix
	// Checks looks up clients from outside on the MX role: their reverse
	// DNS, block lists (refused at RCPT, except for postmaster), SPF
	// started at MAIL FROM. nil: none.
	Checks Checks

	Recipients Recipients // required
	Delivery   Delivery   // required
	Auth       Auth       // required for RoleSubmission
	// Suppression refuses relayed recipients that hard-bounced, on the
	// submission role only (see checkSuppressed). nil: none.
	Suppression Suppression
	// Metrics counts messages accepted and refusals; nil: none counted.
	Metrics Metrics

	Logger *slog.Logger     // nil: slog.Default()
	Now    func() time.Time // nil: time.Now
}

// ErrServerClosed is returned by Serve and ServeTLS once Shutdown has been
// called, and by a second Shutdown. It is go-smtp's own value, so either
// name matches with errors.Is.
var ErrServerClosed = smtp.ErrServerClosed

const defaultIdleTimeout = 5 * time.Minute

// Server is an SMTP server for one role. Serve and ServeTLS may be called
// several times, on different listeners; limits are shared among them.
type Server struct {
	opts Options
	log  *slog.Logger
	smtp *smtp.Server

	ctx    context.Context // for calls out (Deliver, Login...); cancelled by a forced close
	cancel context.CancelFunc

	// The tracker accepts, admits (shedding idle connections at the cap),
	// times and drains connections; go-smtp takes them from queue.
	tracker    *netconn.Tracker
	queue      *netconn.Queue
	mu         sync.Mutex
	closing    bool
	engineOn   bool
	engineDone sync.WaitGroup

	ipRate   *window // MX: messages per minute per client address
	userRate *window // submission: messages per hour per user
}

// NewServer builds a Server. It panics on a wiring mistake (unknown Role,
// missing Recipients, Delivery, or Auth for submission), never later.
func NewServer(opts Options) *Server {
	switch {
	case opts.Role != RoleMX && opts.Role != RoleSubmission:
		panic(fmt.Sprintf("smtpd: NewServer: unknown role %v", opts.Role))
	case opts.Recipients == nil || opts.Delivery == nil:
		panic("smtpd: NewServer: Recipients and Delivery are required")
	case opts.Role == RoleSubmission && opts.Auth == nil:
		panic("smtpd: NewServer: the submission role needs Auth")
	}
	if opts.Hostname == "" {
		opts.Hostname = "localhost"
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = defaultIdleTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{
		opts:     opts,
		log:      opts.Logger,
		queue:    netconn.NewQueue(),
		ipRate:   newWindow(time.Minute),
		userRate: newWindow(time.Hour),
	}
	refusal := "421 4.7.0 " + opts.Hostname + " too many connections, try again later\r\n"
	s.tracker = netconn.NewTracker(netconn.Options{
		MaxConnections: opts.MaxConnections, MaxConnectionsPerIP: opts.MaxConnectionsPerIP,
		IdleTimeout: opts.IdleTimeout, Deadlines: opts.Deadlines,
		Refusal: func(error) string { return refusal },
		Logger:  s.log.With("role", opts.Role.String()),
	})
	s.ctx, s.cancel = context.WithCancel(context.Background())

	ss := smtp.NewServer(smtp.BackendFunc(s.newSession))
	ss.Domain = opts.Hostname
	ss.TLSConfig = opts.TLSConfig
	ss.MaxMessageBytes = opts.MaxMessageBytes
	ss.MaxRecipients = opts.MaxRecipients
	ss.EnableSMTPUTF8 = true
	// DSN (RFC 3461) on both roles; REQUIRETLS (RFC 8689) is advertised
	// only on TLS sessions, and mailParams refuses it elsewhere.
	ss.EnableDSN, ss.EnableREQUIRETLS = true, true
	// Submission allows AUTH on loopback plaintext too; the session decides
	// (authAllowed), go-smtp would only know "TLS or anything".
	ss.AllowInsecureAuth = opts.Role == RoleSubmission
	// go-smtp's ReadTimeout is one deadline per command that is not
	// refreshed during DATA; the tracker's connections time every read and
	// write instead, by command and by transaction.
	ss.ReadTimeout, ss.WriteTimeout = 0, 0
	// RFC 5321 allows 1000 octets a line, but real mail (HTML without line
	// breaks) carries far longer ones, and go-smtp's 2000 also bounds DATA
	// lines; Postfix takes them too. 64 KiB keeps a line's buffer bounded.
	ss.MaxLineLength = maxLineLength
	ss.ErrorLog = errorLog{s.log}
	// The handshake after STARTTLS gets the tracker's handshake deadline,
	// as on the implicit-TLS port, not the (much longer) idle timeout.
	ss.TLSHandshake = s.startTLS
	ss.MaxRcptErrors = maxRcptErrors
	s.smtp = ss
	return s
}

// maxRcptErrors is how many refused RCPT commands a connection may have
// before it is closed with 421: address probing costs a reconnect every 20
// guesses, as with Postfix's smtpd_hard_error_limit.
const maxRcptErrors = 20

// maxLineLength bounds one command or DATA line.
const maxLineLength = 64 << 10

// Serve accepts plaintext connections on ln (STARTTLS is offered when
// Options.TLSConfig is set). It returns ErrServerClosed after Shutdown.
func (s *Server) Serve(ln net.Listener) error { return s.serve(ln, false) }

// ServeTLS accepts implicit-TLS connections (RFC 8314) on the raw listener
// ln. Limits and timeouts apply below TLS, and the handshake is done
// (within the handshake deadline) before go-smtp sees the *tls.Conn.
func (s *Server) ServeTLS(ln net.Listener) error {
	if s.opts.TLSConfig == nil {
		return errors.New("smtpd: ServeTLS: Options.TLSConfig is nil")
	}
	return s.serve(ln, true)
}

func (s *Server) serve(ln net.Listener, implicitTLS bool) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	if !s.engineOn {
		// Under mu, so that it happens before Shutdown waits for it.
		s.engineOn = true
		s.engineDone.Add(1)
		go func() { defer s.engineDone.Done(); s.smtp.Serve(s.queue) }()
	}
	s.mu.Unlock()
	var tlsConfig *tls.Config
	if implicitTLS {
		tlsConfig = s.opts.TLSConfig
	}
	err := s.tracker.Serve(ln, tlsConfig, func(_ *netconn.Conn, nc net.Conn) {
		if !s.queue.Push(nc) {
			nc.Close()
		}
	})
	if errors.Is(err, netconn.ErrClosed) {
		ln.Close()
		return ErrServerClosed
	}
	return fmt.Errorf("smtpd: serve %s: %w", ln.Addr(), err)
}

// Shutdown stops accepting, closes idle connections (with a 421), lets
// transactions in flight finish and then closes their connections. When
// ctx ends first, every connection is closed at once, calls out (a
// Deliver in progress) are cancelled, and ctx's error is returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.closing = true
	s.mu.Unlock()
	err := s.tracker.Shutdown(ctx)
	s.cancel()
	s.queue.Close()
	s.smtp.Close() // ends go-smtp's Serve on the queue, and whatever it still holds
	s.engineDone.Wait()
	return err
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// activeConns reports how many connections are open (for tests).
func (s *Server) activeConns() int {
	return s.tracker.Len()
}

// errorLog routes go-smtp's internal log to slog. It reports recovered
// panics and connection errors (which are routine: resets, timeouts).
type errorLog struct{ log *slog.Logger }

func (l errorLog) Printf(format string, v ...any) { l.print(fmt.Sprintf(format, v...)) }
func (l errorLog) Println(v ...any)               { l.print(strings.TrimSuffix(fmt.Sprintln(v...), "\n")) }

func (l errorLog) print(msg string) {
	if isBDATCloseRace(msg) {
		l.log.Warn("smtp: go-smtp BDAT goroutine started on a closed connection (recovered, harmless)")
		return
	}
	if isAfterClosePanic(msg) {
		// One per command a client pipelined after QUIT: no stack, and
		// not at a level that production logs (issue 9: bounded logs).
		l.log.Debug("smtp: go-smtp command after its session closed (recovered, harmless)")
		return
	}
	if strings.Contains(msg, "panic") {
		l.log.Error("smtp: recovered panic", "detail", msg)
		return
	}
	l.log.Debug("smtp: connection error", "detail", msg)
}

// isBDATCloseRace recognises a go-smtp v0.25.1 bug that a client can set
// off by hanging up right after a BDAT command: the goroutine that runs
// Data calls c.Session() after Close has cleared it, and the nil Session
// panics. go-smtp recovers it; the connection was closing anyway.
func isBDATCloseRace(msg string) bool {
	return strings.Contains(msg, "nil pointer dereference") &&
		strings.Contains(msg, "go-smtp.(*Conn).handleBdat.func1()") &&
		!strings.Contains(msg, "postie/")
}

// isAfterClosePanic recognises another go-smtp bug of the same kind:
// commands that a client pipelines after QUIT are still read from
// go-smtp's buffer once Close has cleared the session, and MAIL, RCPT,
// DATA and BDAT dereference the nil Session. go-smtp recovers each one;
// the connection is closed. (Added for issue 9 item 7.)
func isAfterClosePanic(msg string) bool {
	if !strings.Contains(msg, "nil pointer dereference") || strings.Contains(msg, "postie/") {
		return false
	}
	for _, h := range []string{"handleMail(", "handleRcpt(", "handleData(", "handleBdat("} {
		if strings.Contains(msg, "go-smtp.(*Conn)."+h) {
			return true
		}
	}
	return false
}
