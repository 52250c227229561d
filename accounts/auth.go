package accounts

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"golang.org/x/crypto/argon2"

	"postie/envelope"
)

// ErrAuthFailed is the one answer to a failed login, whether the user is
// unknown or the password wrong: the two must look alike to a client.
var ErrAuthFailed = errors.New("accounts: authentication failed")

// Authenticate checks a login: address is the full address (any case; a
// +tag is refused), password the clear-text password. Unknown users are
// checked against a dummy hash, so both failures cost the same time.
func (db *DB) Authenticate(address, password string) (*User, error) {
	return db.authenticate(context.Background(), address, password)
}

func (db *DB) authenticate(ctx context.Context, address, password string) (*User, error) {
	s := db.current()
	var rec *userRec
	key := envelope.Key(address)
	local, _ := envelope.Split(key)
	if envelope.Validate(address) == nil && !strings.Contains(local, "+") {
		rec = s.users[key]
	}
	var hash string
	if rec != nil {
		hash = rec.hash
	} else {
		hash = db.dummy()
	}
	select {
	case db.authSem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	ok := CheckPassword(hash, password)
	<-db.authSem
	if !ok || rec == nil || password == "" {
		return nil, ErrAuthFailed
	}
	return rec.user, nil
}

// dummy returns the hash unknown users are checked against: the parameters
// of new hashes, so the check costs what a real one does, and a zero key no
// password derives (and a match would be refused anyway).
func (db *DB) dummy() string {
	p := db.params
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.memory, p.time, p.threads,
		b64.EncodeToString(make([]byte, p.saltLen)), b64.EncodeToString(make([]byte, p.keyLen)))
}

// Authenticator is the throttled, logged login shared by IMAP, POP3 and
// submission. Throttle and Logger may be nil (no throttling, no logs).
type Authenticator struct {
	DB       *DB
	Throttle *Throttle
	Logger   *slog.Logger
}

// maxLoggedName bounds the user name written to logs: it comes from the
// network.
const maxLoggedName = 128

// Login waits for the throttle (see Throttle) to let remoteIP try
// username, authenticates, records the outcome and logs a failure with
// service, remote IP and user name (never the password). A failed login
// returns ErrAuthFailed; a login the throttle refuses without checking the
// password returns ErrThrottled (logged at most once a minute per address);
// ctx ending first returns ctx.Err().
func (a *Authenticator) Login(ctx context.Context, remoteIP, service, username, password string) (*User, error) {
	var att *attempt
	if a.Throttle != nil {
		var err error
		if att, err = a.Throttle.acquire(ctx, remoteIP, username); err != nil {
			if errors.Is(err, ErrThrottled) && att.logRefusals > 0 && a.Logger != nil {
				a.Logger.Warn("login refused: too many failures", "service", service, "remote", remoteIP,
					"username", loggedName(username), "refusals", att.logRefusals)
			}
			return nil, err
		}
	}
	u, err := a.DB.authenticate(ctx, username, password)
	switch {
	case err == nil:
		att.finish(attemptOK)
	case errors.Is(err, ErrAuthFailed):
		att.finish(attemptFailed)
	default:
		att.finish(attemptAborted) // cancelled before a password was tried: nothing to count
		return nil, err
	}
	if err != nil && a.Logger != nil {
		a.Logger.Warn("login failed", "service", service, "remote", remoteIP, "username", loggedName(username))
	}
	return u, err
}

// loggedName bounds a user name from the network for the log.
func loggedName(name string) string {
	if len(name) > maxLoggedName {
		return name[:maxLoggedName] + "..."
	}
	return name
}
