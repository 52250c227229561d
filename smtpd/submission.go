package smtpd

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/mail"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-message/textproto"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"postie/accounts"
	"postie/envelope"
)

const (
	// maxAuthFailures on one connection before it is closed (Auth.Login
	// throttles across connections too).
	maxAuthFailures = 3
	// maxHeaderBytes bounds the header read into memory in submission DATA.
	maxHeaderBytes = 1 << 20
)

// Suppression is the list of recipients that hard-bounced recently
// (package suppress, wired by cmd/postie).
type Suppression interface {
	// Suppressed returns when addr hard-bounced, if mail to it is refused now.
	Suppressed(addr string) (since time.Time, ok bool)
}

// checkSuppressed refuses, on the submission role, a remote recipient that
// hard-bounced recently, with 550 5.1.1 and the date of the bounce:
// mailing dead addresses again costs the sender's reputation at the big
// receivers. The MX role never asks.
func (s *session) checkSuppressed(addr string) *smtp.SMTPError {
	sup := s.srv.opts.Suppression
	if sup == nil || s.srv.opts.Role != RoleSubmission {
		return nil
	}
	since, ok := sup.Suppressed(addr)
	if !ok {
		return nil
	}
	return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: fmt.Sprintf(
		"<%s> bounced as nonexistent on %s; mail to it is suppressed (postmaster: postie suppress del)",
		addr, since.UTC().Format(time.DateOnly))}
}

// authSession is the submission role's session: the common one plus AUTH
// (RFC 4954), PLAIN and LOGIN.
type authSession struct{ *session }

// authAllowed: passwords travel only over TLS or on the loopback
// interface (DESIGN: plaintext auth is refused elsewhere).
func (a *authSession) authAllowed() bool { return a.tlsDesc != "" || a.loopback }

// AuthMechanisms is what EHLO advertises: nothing before STARTTLS on a
// non-loopback connection, so clients know to upgrade first.
func (a *authSession) AuthMechanisms() []string {
	if !a.authAllowed() {
		return nil
	}
	return []string{sasl.Plain, loginMech}
}

// Auth starts a SASL exchange.
func (a *authSession) Auth(mech string) (sasl.Server, error) {
	if a.cutShort() {
		return nil, errCutShort
	}
	if !a.authAllowed() {
		return nil, errTLSRequired
	}
	a.mu.Lock()
	inTx, hungUp := a.inTx, a.hungUp
	a.mu.Unlock()
	switch {
	case hungUp:
		return nil, errClosing
	case inTx:
		return nil, errAuthInTx
	}
	switch mech {
	case sasl.Plain:
		return strictSASL{sasl.NewPlainServer(func(identity, username, password string) error {
			if identity != "" && identity != username {
				return a.failed(username) // no proxy authorisation
			}
			return a.login(username, password)
		})}, nil
	case loginMech:
		return newLoginServer(a.login), nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// strictSASL answers a malformed client response (PLAIN without its two
// NULs, a response after the end) with 501 5.5.2: go-smtp turns go-sasl's
// plain errors into 454 4.7.0, a temporary failure that invites a retry.
// Replies of our own (535, 454, 421) pass unchanged.
type strictSASL struct{ sasl.Server }

func (s strictSASL) Next(response []byte) ([]byte, bool, error) {
	challenge, done, err := s.Server.Next(response)
	if _, ours := err.(*smtp.SMTPError); err != nil && !ours {
		err = errAuthSyntax
	}
	return challenge, done, err
}

// login checks a password through Auth (which throttles) and binds the
// session to the user. The password is never logged.
func (a *authSession) login(username, password string) error {
	u, err := a.srv.opts.Auth.Login(a.srv.ctx, a.ip.String(), "submission", username, password)
	switch {
	case err == nil && u != nil:
		a.mu.Lock()
		a.user = u
		a.mu.Unlock()
		if a.tc != nil {
			a.tc.authenticated() // shed last when the server is full
		}
		a.log.Info("authenticated", "user", u.Address, "tls", a.tlsDesc)
		return nil
	case err == nil || !errors.Is(err, accounts.ErrAuthFailed):
		level := slog.LevelWarn
		if errors.Is(err, accounts.ErrThrottled) {
			level = slog.LevelDebug // the throttle logs its refusals itself, boundedly
		}
		a.logBounded(level, "authentication error", "username", logSafe(username, 128), "err", err)
		return errAuthTemp
	}
	return a.failed(username)
}

// failed counts a refused login; the last one allowed closes the
// connection.
func (a *authSession) failed(username string) error {
	a.authFailures++
	a.logRefusal("authentication failed", "username", logSafe(username, 128), "failures", a.authFailures)
	if a.authFailures >= maxAuthFailures {
		if a.tc != nil {
			a.tc.kill() // go-smtp writes our 421, then sees EOF and closes
		}
		return errAuthTooMany
	}
	return errAuthFailed
}

// prepareMessage reads the header of a submitted message, checks that
// From: is the login's (RFC 6409 §8.1 lets an MSA refuse), and returns the
// message to deliver: Message-ID and Date added when missing (RFC 6409
// §8.2, §8.3), then the header as read, then the rest of the stream, which
// is not buffered.
func (s *session) prepareMessage(in *trackReader, env *envelope.Envelope, user *accounts.User) (io.Reader, *smtp.SMTPError) {
	capped := &capReader{r: in, left: maxHeaderBytes}
	br := bufio.NewReader(capped)
	h, err := textproto.ReadHeader(br)
	switch {
	case in.err != nil:
		return nil, readFailure(in.err)
	case err != nil && capped.hit:
		return nil, errHeaderTooLarge
	case err != nil:
		return nil, errHeaderBad
	}
	// The rest is what br holds plus the stream itself, uncapped. br is
	// left behind: it may keep the cap's error for its next read.
	rest, _ := br.Peek(br.Buffered())
	rest = bytes.Clone(rest)
	capped.left = -1

	froms := h.Values("From")
	if len(froms) != 1 {
		return nil, errFromCount
	}
	list, err := newAddressParser().ParseList(froms[0])
	if err != nil || len(list) != 1 {
		return nil, errFromCount
	}
	from, err := envelope.Normalize(list[0].Address)
	if err != nil || !s.srv.opts.Auth.CanSendAs(user, from) {
		s.logRefusal("From: refused", "id", env.ID, "user", user.Address, "header_from", logSafe(list[0].Address, maxLoggedAddr))
		return nil, errFromNotYours
	}

	var head bytes.Buffer
	if !h.Has("Message-Id") {
		head.WriteString("Message-ID: <" + rand.Text() + "@" + s.srv.opts.Hostname + ">\r\n")
	}
	if !h.Has("Date") {
		head.WriteString("Date: " + env.Received.Format(time.RFC1123Z) + "\r\n")
	}
	if err := textproto.WriteHeader(&head, h); err != nil {
		return nil, errHeaderBad
	}
	return io.MultiReader(&head, bytes.NewReader(rest), capped), nil
}

// newAddressParser reads From: addresses. Any charset in an encoded-word
// display name is taken as is: only the address matters here, and
// refusing a name in windows-1252 would refuse the user's mail.
func newAddressParser() *mail.AddressParser {
	return &mail.AddressParser{WordDecoder: &mime.WordDecoder{
		CharsetReader: func(_ string, r io.Reader) (io.Reader, error) { return r, nil },
	}}
}

// capReader reads at most left bytes (left < 0: no limit) and then
// reports hit. It bounds the header held in memory.
type capReader struct {
	r    io.Reader
	left int64
	hit  bool
}

var errCapped = errors.New("smtpd: header too large")

func (c *capReader) Read(b []byte) (int, error) {
	if c.left < 0 {
		return c.r.Read(b)
	}
	if c.left == 0 {
		c.hit = true
		return 0, errCapped
	}
	if int64(len(b)) > c.left {
		b = b[:c.left]
	}
	n, err := c.r.Read(b)
	c.left -= int64(n)
	return n, err
}

// logSafe makes a network-supplied string fit for the log: at most n
// bytes of it, with control characters and invalid UTF-8 written as Go
// escapes (slog's handlers let DEL and C1 controls through as they are).
func logSafe(s string, n int) string {
	if len(s) > n {
		s = s[:n] + "..."
	}
	if utf8.ValidString(s) && !hasControl(s) {
		return s
	}
	q := strconv.QuoteToGraphic(s)
	return q[1 : len(q)-1]
}
