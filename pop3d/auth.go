package pop3d

import (
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"strings"

	"github.com/emersion/go-sasl"

	"postie/accounts"
)

// cmdCapa lists the capabilities (RFC 2449 §5). USER and SASL are listed
// only where a password may be sent, so that a client goes for STLS first.
func (c *session) cmdCapa(arg string) error {
	if arg != "" {
		c.fail("", "CAPA takes no argument")
		return nil
	}
	c.reply("+OK capability list follows")
	c.reply("TOP")
	c.reply("UIDL")
	c.reply("RESP-CODES")
	c.reply("AUTH-RESP-CODE")
	c.reply("PIPELINING")
	if c.state == stateAuthorization {
		if c.plaintextAllowed() {
			c.reply("USER")
			c.reply("SASL PLAIN")
		}
		if c.srv.tlsConfig != nil && !c.tls {
			c.reply("STLS")
		}
	}
	c.reply("IMPLEMENTATION Postie")
	c.reply(".")
	return nil
}

func (c *session) cmdUser(arg string) error {
	if !c.plaintextAllowed() {
		c.fail("AUTH", "plaintext authentication disallowed on non-secure connection; use STLS")
		return nil
	}
	if arg == "" {
		c.fail("", "USER needs a name")
		return nil
	}
	c.user = arg
	c.okf("send PASS")
	return nil
}

// cmdPass completes USER. RFC 1939 §7 lets the password contain spaces: it
// is the whole rest of the line.
func (c *session) cmdPass(ctx context.Context, arg string) error {
	if c.user == "" {
		c.fail("", "USER first")
		return nil
	}
	user := c.user
	c.user = ""
	c.login(ctx, "USER", user, arg)
	return nil
}

// cmdAuth runs AUTH PLAIN (RFC 5034, RFC 4616), with or without an initial
// response. AUTH alone lists the mechanisms, as most clients expect.
func (c *session) cmdAuth(ctx context.Context, arg string) error {
	mech, ir, hasIR := strings.Cut(arg, " ")
	if mech == "" {
		c.reply("+OK mechanisms follow")
		if c.plaintextAllowed() {
			c.reply("PLAIN")
		}
		c.reply(".")
		return nil
	}
	if !strings.EqualFold(mech, "PLAIN") {
		c.fail("", "unsupported authentication mechanism")
		return nil
	}
	if !c.plaintextAllowed() {
		c.fail("AUTH", "plaintext authentication disallowed on non-secure connection; use STLS")
		return nil
	}
	c.user = ""
	if !hasIR {
		// An empty challenge, then the response on a line of its own.
		c.reply("+ ")
		if err := c.bw.Flush(); err != nil {
			return err
		}
		line, err := c.readLine(maxSASLLine)
		if err == errLineTooLong {
			c.fail("", "authentication response too long")
			return nil
		}
		if err != nil {
			return err
		}
		if line == "*" {
			c.fail("", "authentication canceled")
			return nil
		}
		ir = line
	}
	if ir == "=" { // RFC 5034 §4: "=" is an empty initial response
		ir = ""
	}
	resp, err := base64.StdEncoding.DecodeString(ir)
	if err != nil {
		c.fail("", "invalid base64 in authentication response")
		return nil
	}
	// go-sasl parses the message, as for submission; the login itself
	// happens after, so its throttle and replies stay ours.
	var authzid, authcid, password string
	plain := sasl.NewPlainServer(func(identity, username, pw string) error {
		authzid, authcid, password = identity, username, pw
		return nil
	})
	if _, _, err := plain.Next(resp); err != nil || authcid == "" {
		c.fail("", "malformed PLAIN response")
		return nil
	}
	if authzid != "" && authzid != authcid {
		c.fail("AUTH", "invalid credentials")
		return nil
	}
	c.login(ctx, "AUTH PLAIN", authcid, password)
	return nil
}

func (c *session) cmdStls(ctx context.Context, arg string) error {
	switch {
	case arg != "":
		c.fail("", "STLS takes no argument")
		return nil
	case c.tls:
		c.fail("", "already under TLS")
		return nil
	case c.srv.tlsConfig == nil:
		c.fail("", "STLS not available")
		return nil
	}
	c.reply("+OK begin TLS negotiation")
	if err := c.bw.Flush(); err != nil {
		return err
	}
	if err := c.startTLS(ctx); err != nil {
		return err
	}
	// Nothing learned before TLS carries over (RFC 2595 §4).
	c.user = ""
	return nil
}

// login checks the credentials, takes the mailbox lock and snapshots the
// maildrop; on success the session enters the TRANSACTION state. Every
// refusal of the credentials reads the same, so that a client cannot tell
// an unknown user from a wrong password; the authenticator throttles.
func (c *session) login(ctx context.Context, method, username, password string) {
	acct, err := c.srv.auth.login(ctx, c.remoteIP.String(), username, password)
	if err != nil {
		if errors.Is(err, errBadCredentials) {
			c.log.Info("pop3: login failed", "user", logName(username), "method", method)
			c.fail("AUTH", "invalid credentials")
		} else {
			level := slog.LevelWarn
			if errors.Is(err, accounts.ErrThrottled) {
				level = slog.LevelDebug // the throttle logs its refusals itself, boundedly
			}
			c.log.Log(ctx, level, "pop3: login error", "user", logName(username), "err", err)
			c.fail("SYS/TEMP", "authentication temporarily unavailable")
		}
		return
	}
	log := c.log.With("user", acct.address)
	unlock, ok := c.srv.lockMailbox(mailboxKey(acct))
	if !ok {
		log.Info("pop3: maildrop in use")
		c.fail("IN-USE", "mailbox is already open in another POP3 session")
		return
	}
	c.unlock = unlock // held from here, released even if openMaildrop panics
	if err := c.openMaildrop(acct); err != nil {
		c.closeMaildrop()
		log.Error("pop3: cannot open maildrop", "err", err)
		c.fail("SYS/TEMP", "unable to open maildrop")
		return
	}
	c.log = log
	c.state = stateTransaction
	c.tc.SetAuthenticated() // shed last when the server is full
	c.log.Info("pop3: login", "method", method, "tls", c.tls, "messages", len(c.msgs))
	c.okf("maildrop has %d messages (%d octets)", c.live, c.liveSize)
}

// logName bounds a user name from the network before it is logged.
func logName(s string) string {
	const max = 128
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
