package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"postie/accounts"
	"postie/config"
	"postie/envelope"
)

// exitUnavailable is sysexits' EX_UNAVAILABLE, for permanent failures other
// than an unknown user.
const exitUnavailable = 69

// cmdDeliver is the LDA: one message on stdin, delivered to each RCPT.
// Exit 0 when every recipient has it, 75 when any failure is temporary
// (the caller retries), 67 when a recipient is unknown.
func cmdDeliver(e *env, args []string) error {
	fs, cfgPath := newFlags(e, "deliver")
	from := fs.String("f", "", "envelope `sender` (empty: the null sender <>)")
	rcpts, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(rcpts) == 0 {
		return usageError{"deliver needs at least one recipient"}
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return exitError{exitTempFail, err}
	}
	if *from != "" {
		if err := envelope.Validate(*from); err != nil {
			return usageError{fmt.Sprintf("bad sender: %v", err)}
		}
	}
	log := newLogger(e, cfg)
	db, err := accounts.Open(cfg.AccountsFile(), cfg.Domains, log)
	if err != nil {
		return exitError{exitTempFail, err}
	}
	// The queue is opened only when a recipient resolves to a remote
	// address: most LDA calls never need it. While a server owns the spool,
	// queue.Open gives an enqueue-only handle and tells the server.
	m, done := oneShotRouter(cfg, db, log)
	defer done()
	env := &envelope.Envelope{ID: newID(), From: *from, To: rcpts, Protocol: "LOCAL", Received: time.Now()}
	errs := m.Deliver(context.Background(), env, e.stdin)
	return deliverOutcome(e, rcpts, errs)
}

func deliverOutcome(e *env, rcpts []string, errs []error) error {
	code := exitOK
	for i, err := range errs {
		if err == nil {
			continue
		}
		fmt.Fprintf(e.stderr, "postie deliver: %s: %v\n", rcpts[i], err)
		de := envelope.AsError(err)
		switch {
		case de.Temporary() || errors.Is(err, envelope.ErrQuotaExceeded):
			code = exitTempFail
		case errors.Is(err, envelope.ErrUnknownUser) || errors.Is(err, envelope.ErrRelayDenied):
			if code != exitTempFail {
				code = exitNoUser
			}
		default:
			if code == exitOK {
				code = exitUnavailable
			}
		}
	}
	if code == exitOK {
		return nil
	}
	return exitError{code, errors.New("not delivered to every recipient")}
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func cmdCheckConfig(e *env, args []string) error {
	fs, cfgPath := newFlags(e, "check-config")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{"check-config takes no arguments"}
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	if err := checkLoaded(cfg).report(e); err != nil {
		return fmt.Errorf("%s: %w", cfg.Path, err)
	}
	fmt.Fprintf(e.stdout, "%s: ok (hostname %s, domains %v, data in %s)\n", cfg.Path, cfg.Hostname, cfg.Domains, cfg.DataDir)
	return nil
}
