package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"postie/config"
	"postie/imapd"
	"postie/junk"
	"postie/maildir"
	"postie/rspamd"
)

// learner is rspamd's learning, as the trainer uses it (*rspamd.Client).
type learner interface {
	Learn(ctx context.Context, spam bool, msg io.Reader) error
}

// trainer is imapd's Trainer: what a user tells over IMAP (moves into and
// out of Junk, $Junk and $NotJunk) trains the user's junk filter and, when
// [spam] rspamd_controller_url is set, rspamd's statistics.
type trainer struct {
	junk   *junk.Filter // nil: the junk filter is off
	rspamd learner      // nil: no rspamd controller
}

// newTrainer returns the Trainer for `postie serve`, or nil when there is
// nothing to train. A controller URL rspamd cannot use is logged and left
// out: learning is a convenience, not a reason to refuse to start.
func newTrainer(cfg *config.Config, filter *junk.Filter, log *slog.Logger) imapd.Trainer {
	t := &trainer{junk: filter}
	if u := cfg.Spam.RspamdControllerURL; u != "" {
		base := cfg.Spam.RspamdURL
		if base == "" {
			base = u // only the controller is used for learning
		}
		rc, err := rspamd.New(rspamd.Options{
			URL: base, ControllerURL: u, Password: cfg.Spam.RspamdPassword,
			Timeout: cfg.Spam.RspamdTimeout, Logger: log,
		})
		if err != nil {
			log.Error("rspamd learning off", "err", err)
		} else {
			t.rspamd = rc
		}
	}
	if t.junk == nil && t.rspamd == nil {
		return nil
	}
	return t
}

// Train gives msgs to the junk filter in one update of the user's file,
// then to rspamd one by one; the first rspamd failure ends rspamd's part
// (a down rspamd costs one timeout per batch, not one per message).
func (t *trainer) Train(ctx context.Context, mail *maildir.User, spam bool, msgs ...*io.SectionReader) error {
	var errs []error
	if t.junk != nil {
		rs := make([]io.Reader, len(msgs))
		for i, m := range msgs {
			rs[i] = io.NewSectionReader(m, 0, m.Size())
		}
		if err := t.junk.Train(junk.UserFile(mail.Dir()), spam, rs...); err != nil {
			errs = append(errs, err)
		}
	}
	if t.rspamd != nil {
		for i, m := range msgs {
			if err := t.rspamd.Learn(ctx, spam, io.NewSectionReader(m, 0, m.Size())); err != nil {
				errs = append(errs, fmt.Errorf("rspamd learn (%d of %d messages skipped): %w", len(msgs)-i, len(msgs), err))
				break
			}
		}
	}
	return errors.Join(errs...)
}
