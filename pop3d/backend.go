package pop3d

import (
	"context"
	"errors"
	"io"
)

// The session engine sees the mail store and the account database only
// through the small interfaces below, so that it can be tested against fakes
// and so that the adapters in store.go are the only code that knows the
// concrete maildir and accounts types.

// mailStore gives a session the INBOX of a user.
type mailStore interface {
	// Inbox returns the INBOX of the user local@domain.
	Inbox(domain, local string) (maildrop, error)
}

// maildrop is one user's INBOX as a POP3 session needs it.
type maildrop interface {
	// Refresh picks up messages delivered or changed since the last call
	// (and moves new/ to cur/).
	Refresh() error
	// Snapshot returns the UIDVALIDITY and the messages present now, sorted
	// by UID, without opening any message file.
	Snapshot() (uidValidity uint32, msgs []entry)
	// Open opens a message's file; errGone if it no longer exists.
	Open(uid uint32) (io.ReadCloser, error)
	// MarkSeen adds \Seen to messages; those no longer there are skipped.
	MarkSeen(uids []uint32, origin any) error
	// Expunge removes messages for good.
	Expunge(uids []uint32, origin any) error
}

// entry is one message of the maildrop snapshot.
type entry struct {
	uid     uint32
	seen    bool
	deleted bool // marked by DELE in this session
	size    int64
}

// errGone is returned by maildrop.Open for a message removed since the
// snapshot (by an IMAP session, for instance).
var errGone = errors.New("pop3d: message no longer exists")

// account is the user a session logged in as.
type account struct {
	address string // the login's canonical address, for logs
	domain  string
	local   string
}

// authenticator checks a login (and throttles failures).
type authenticator interface {
	login(ctx context.Context, remoteIP, username, password string) (account, error)
}

// errBadCredentials is what an authenticator returns for a refused login.
// Any other error is a temporary failure of the account database.
var errBadCredentials = errors.New("pop3d: invalid credentials")
