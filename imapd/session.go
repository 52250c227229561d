package imapd

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"postie/accounts"
	"postie/maildir"
)

// session is one IMAP connection: go-imap calls its methods one command at a time (IDLE runs in a
// goroutine of its own while the connection waits for DONE).
type session struct {
	srv  *Server
	conn *imapserver.Conn
	ip   string

	user *accounts.User
	mail *maildir.User
	sel  *selection

	// go-imap may end the connection (and call Close) while Idle still runs in its goroutine.
	idleMu sync.Mutex
	idling sync.WaitGroup
	closed bool

	logged atomic.Int64 // lines this connection has logged at warning level and above (logf)

	notifyMu sync.Mutex
	notify   *notifyState // NOTIFY SET (notify.go); nil: none
}

// selection is the selected mailbox of a session.
type selection struct {
	entry     *mailboxEntry
	mbox      *maildir.Mailbox
	st        *imapserver.SessionTracker
	readOnly  bool
	searchRes imap.UIDSet     // SEARCHRES ($), as UIDs (RFC 5182)
	updates   []*updateSearch // live searches (CONTEXT=SEARCH, searchupdate.go)
	recent    recentState     // \Recent (recent.go)
}

var (
	_ imapserver.SessionIMAP4rev2      = (*session)(nil)
	_ imapserver.SessionAppendLimit    = (*session)(nil)
	_ imapserver.SessionUnauthenticate = (*session)(nil)
)

func (s *Server) newSession(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
	sess := &session{srv: s, conn: c, ip: remoteIP(c.NetConn().RemoteAddr())}
	s.mu.Lock()
	closed := s.closed
	if !closed {
		s.sessions[sess] = struct{}{}
	}
	s.mu.Unlock()
	if closed {
		return nil, nil, &imap.Error{Type: imap.StatusResponseTypeBye, Text: "Server shutting down"}
	}
	return sess, nil, nil
}

// Close ends the session (the connection is gone).
func (s *session) Close() error {
	s.idleMu.Lock()
	s.closed = true
	s.idleMu.Unlock()
	s.idling.Wait()
	s.unselect()
	s.srv.mu.Lock()
	delete(s.srv.sessions, s)
	s.srv.mu.Unlock()
	return nil
}

// Login checks the password with the shared, throttled Authenticator (LOGIN and AUTHENTICATE PLAIN
// both end here). The answer never tells whether the user exists.
func (s *session) Login(username, password string) error {
	ctx, cancel := context.WithTimeout(s.srv.ctx, loginTimeout)
	defer cancel()
	u, err := s.srv.opts.Auth.Login(ctx, s.ip, "imap", username, password)
	if err != nil {
		if errors.Is(err, accounts.ErrAuthFailed) {
			return imapserver.ErrAuthFailed
		}
		level := slog.LevelWarn
		if errors.Is(err, accounts.ErrThrottled) {
			level = slog.LevelDebug // the throttle logs its refusals itself, boundedly
		}
		s.logf(level, "imap login", "remote", s.ip, "err", err)
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable, Text: "Authentication unavailable, try again later"}
	}
	mu, err := s.srv.opts.Store.User(u.Domain, u.Local)
	if err != nil {
		s.logf(slog.LevelError, "imap login: open mail store", "user", u.Address, "err", err)
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable, Text: "Mail store unavailable"}
	}
	mu.SetQuota(u.Quota)
	s.user, s.mail = u, mu
	s.srv.authenticated(s.conn) // shed last when the server is full
	s.srv.trim.loggedIn()
	s.srv.log.Info("imap login", "user", u.Address, "remote", s.ip)
	return nil
}

// Unauthenticate returns to the not-authenticated state (RFC 8437).
func (s *session) Unauthenticate() error {
	s.unselect()
	s.user, s.mail = nil, nil
	return nil
}

func (s *session) Namespace() (*imap.NamespaceData, error) {
	return &imap.NamespaceData{Personal: []imap.NamespaceDescriptor{{Prefix: "", Delim: delim}}}, nil
}

// AppendLimit is advertised as APPENDLIMIT=n (RFC 7889); go-imap refuses larger literals itself.
func (s *session) AppendLimit() uint32 {
	return uint32(min(s.srv.opts.AppendLimit, math.MaxUint32))
}

// Poll reports changes to the selected mailbox after every command: the mailbox is re-read (cheaply,
// at most every 200 ms) so mail that other processes delivered shows up.
func (s *session) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	return s.notifyPoll(w, allowExpunge) // notify.go
}

func (s *session) poll(sel *selection, w *imapserver.UpdateWriter, allowExpunge bool) error {
	e := sel.entry
	if err := e.refresh(pollRefreshGap); err != nil && !errors.Is(err, maildir.ErrNoSuchMailbox) {
		s.logf(slog.LevelWarn, "imap: refresh", "mailbox", e.name, "err", err)
	}
	e.sync()
	return s.pollUpdates(sel, w, allowExpunge) // RECENT follows from the tracker's hook (recent.go)
}

// Idle waits for changes. While anyone idles on a mailbox, it is re-read every second.
func (s *session) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	s.idleMu.Lock()
	if s.closed {
		s.idleMu.Unlock()
		return nil
	}
	s.idling.Add(1)
	sel := s.sel
	s.idleMu.Unlock()
	defer s.idling.Done()
	defer s.notifyDuringIdle(w)() // notify.go
	if sel == nil {
		<-stop
		return nil
	}
	e := sel.entry
	e.startIdle()
	defer e.stopIdle()
	// Changes that came between the last poll and now would otherwise wait for the next one.
	if err := s.poll(sel, w, true); err != nil {
		return err
	}
	return sel.st.Idle(w, stop)
}

// maxLogLines bounds what one connection writes to the log at warning level and above: a client
// whose every command fails (a broken store, a message file gone short) must not be able to fill the
// disk. After the bound one line says that the rest is left out.
const maxLogLines = 20

// logf logs for this connection within maxLogLines.
func (s *session) logf(level slog.Level, msg string, args ...any) {
	if level < slog.LevelWarn { // not counted: debug lines must not use up the bound
		s.srv.log.Log(context.Background(), level, msg, args...)
		return
	}
	switch n := s.logged.Add(1); {
	case n <= maxLogLines:
		s.srv.log.Log(context.Background(), level, msg, args...)
	case n == maxLogLines+1:
		s.srv.log.Warn("imap: further log lines of this connection left out", "remote", s.ip, "limit", maxLogLines)
	}
}

// busy marks a command that changes mail, which Shutdown lets finish.
func (s *session) busy() (done func()) {
	s.srv.busy.Add(1)
	return func() { s.srv.busy.Add(-1) }
}

// Error answers. RFC 5530 response codes tell clients what went wrong without details.
var (
	errNoSuchMailbox = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNonExistent, Text: "No such mailbox"}
	errTryCreate     = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate, Text: "No such mailbox"}
	errReadOnly      = &imap.Error{Type: imap.StatusResponseTypeNo, Code: "READ-ONLY", Text: "Mailbox is read-only"}
	errServerBug     = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeServerBug, Text: "Internal server error"}
)

// mailError turns a store error into an IMAP answer; errors without a meaning for the client are
// logged and answered as a server bug.
func (s *session) mailError(op string, err error) error {
	var code imap.ResponseCode
	text := ""
	switch {
	case errors.Is(err, maildir.ErrNoSuchMailbox):
		return errNoSuchMailbox
	case errors.Is(err, maildir.ErrMailboxExists):
		code, text = imap.ResponseCodeAlreadyExists, "Mailbox already exists"
	case errors.Is(err, maildir.ErrInvalidName):
		code, text = imap.ResponseCodeCannot, "Invalid mailbox name"
	case errors.Is(err, maildir.ErrHasChildren):
		code, text = imap.ResponseCodeHasChildren, "Mailbox has children"
	case errors.Is(err, maildir.ErrInboxDelete):
		code, text = imap.ResponseCodeCannot, "INBOX cannot be deleted"
	case errors.Is(err, maildir.ErrQuotaExceeded):
		code, text = imap.ResponseCodeOverQuota, "Quota exceeded"
	case errors.Is(err, maildir.ErrTooManyKeywords):
		code, text = imap.ResponseCodeLimit, "Too many keywords in this mailbox"
	case errors.Is(err, maildir.ErrInvalidFlag):
		return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Invalid flag"}
	case errors.Is(err, maildir.ErrInvalidSpecialUse):
		code, text = "USEATTR", "Unsupported special-use attribute"
	case errors.Is(err, maildir.ErrNoSuchMessage):
		code, text = "EXPUNGEISSUED", "Message was expunged"
	default:
		user := ""
		if s.user != nil {
			user = s.user.Address
		}
		s.logf(slog.LevelError, "imap "+op, "user", user, "err", err)
		return errServerBug
	}
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: code, Text: text}
}
