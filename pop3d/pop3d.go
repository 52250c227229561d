// Package pop3d serves users' INBOXes over POP3: RFC 1939 with the CAPA,
// RESP-CODES and PIPELINING extensions (RFC 2449), STLS (RFC 2595) and SASL
// PLAIN (RFC 5034), over the maildir store.
//
// A session sees the INBOX as it was at login and has it to itself (a
// second POP3 login gets [IN-USE]); DELE takes effect only at QUIT;
// retrieved messages become \Seen for IMAP; UIDL is built from the IMAP
// UIDVALIDITY and UID, so it survives restarts and matches IMAP. The
// protocol engine (session.go, auth.go, transaction.go) sees the store and
// the account database only through the small interfaces of backend.go;
// this file adapts *maildir.Store and Authenticator to them.
package pop3d

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"postie/accounts"
	"postie/maildir"
	"postie/netconn"
)

// Authenticator checks a login; accounts.Authenticator (the shared,
// throttled login) is one. A refused login is accounts.ErrAuthFailed; any
// other error is taken as a temporary failure.
type Authenticator interface {
	Login(ctx context.Context, remoteIP, service, username, password string) (*accounts.User, error)
}

// Options configures a Server.
type Options struct {
	Store *maildir.Store
	Auth  Authenticator
	// TLSConfig enables STLS on Serve and is required by ServeTLS.
	TLSConfig *tls.Config
	// Hostname is named in the greeting.
	Hostname string
	// MaxConnections and MaxConnectionsPerIP limit concurrent sessions, in
	// all and per client address (IPv6: per /64); zero means
	// DefaultMaxConnections and DefaultMaxConnectionsPerIP, a negative
	// value no limit.
	MaxConnections, MaxConnectionsPerIP int
	// IdleTimeout bounds each read and write; zero means
	// DefaultIdleTimeout.
	IdleTimeout time.Duration
	// Deadlines bound a command once begun and the TLS handshake (POP3S
	// and STLS); zero fields take netconn's defaults (see netconn.Conn).
	Deadlines netconn.Deadlines
	// Logger gets one line per login, logout and failure; nil means
	// slog.Default().
	Logger *slog.Logger
}

// New returns a server over the store; it serves nothing until Serve or
// ServeTLS is called.
func New(opts Options) *Server {
	return newServer(serverConfig{
		store:       storeAdapter{opts.Store},
		auth:        authAdapter{opts.Auth},
		tlsConfig:   opts.TLSConfig,
		hostname:    opts.Hostname,
		maxConns:    opts.MaxConnections,
		maxPerIP:    opts.MaxConnectionsPerIP,
		idleTimeout: opts.IdleTimeout,
		deadlines:   opts.Deadlines,
		log:         opts.Logger,
	})
}

// authAdapter turns an Authenticator into the engine's authenticator.
type authAdapter struct{ a Authenticator }

func (a authAdapter) login(ctx context.Context, remoteIP, username, password string) (account, error) {
	u, err := a.a.Login(ctx, remoteIP, "pop3", username, password)
	if err != nil {
		if errors.Is(err, accounts.ErrAuthFailed) {
			return account{}, errBadCredentials
		}
		return account{}, err
	}
	return account{address: u.Address, domain: u.Domain, local: u.Local}, nil
}

// storeAdapter serves INBOXes from a *maildir.Store.
type storeAdapter struct{ s *maildir.Store }

func (a storeAdapter) Inbox(domain, local string) (maildrop, error) {
	u, err := a.s.User(domain, local)
	if err != nil {
		return nil, fmt.Errorf("pop3d: open user %s@%s: %w", local, domain, err)
	}
	m, err := u.Mailbox("INBOX")
	if err != nil {
		return nil, fmt.Errorf("pop3d: open INBOX of %s@%s: %w", local, domain, err)
	}
	return mailboxAdapter{m}, nil
}

type mailboxAdapter struct{ m *maildir.Mailbox }

func (a mailboxAdapter) Refresh() error { return a.m.Refresh() }

// Snapshot copies what POP3 needs (UID, size, \Seen) under the mailbox's
// read lock; no message file is opened or stat'ed.
func (a mailboxAdapter) Snapshot() (uidValidity uint32, msgs []entry) {
	uidValidity = a.m.UIDValidity()
	a.m.View(func(ms []maildir.Message) {
		msgs = make([]entry, len(ms))
		for i, m := range ms {
			msgs[i] = entry{uid: m.UID, size: m.Size, seen: m.Flags&maildir.FlagSeen != 0}
		}
	})
	return uidValidity, msgs
}

func (a mailboxAdapter) Open(uid uint32) (io.ReadCloser, error) {
	f, err := a.m.Open(uid)
	if errors.Is(err, maildir.ErrNoSuchMessage) {
		return nil, errGone
	}
	if err != nil {
		return nil, err
	}
	return f, nil
}

func (a mailboxAdapter) MarkSeen(uids []uint32, origin any) error {
	_, err := a.m.SetFlags(uids, maildir.FlagsAdd, maildir.FlagSeen, origin)
	return err
}

// Expunge removes the messages; those already gone (expunged by an IMAP
// session meanwhile) are simply not there to remove.
func (a mailboxAdapter) Expunge(uids []uint32, origin any) error {
	_, err := a.m.Expunge(uids, origin)
	return err
}
