package main

import (
	"context"
	"io"
	"log/slog"
	"os"

	"postie/accounts"
	"postie/config"
	"postie/envelope"
	"postie/maildir"
	"postie/mda"
	"postie/queue"
)

// oneShotRouter is the router of a command that delivers and exits
// (deliver, tlsrpt send): the mail store, and the queue opened only if a
// message needs it. Call done when finished; it closes the queue.
func oneShotRouter(cfg *config.Config, db *accounts.DB, log *slog.Logger) (m *mda.Router, done func()) {
	var q *queue.Queue
	fwd := queueForwarder(func() (*queue.Queue, error) {
		if q == nil {
			var err error
			if q, err = queue.Open(queue.Options{Dir: cfg.QueueDir(), Hostname: cfg.Hostname, Logger: log}); err != nil {
				return nil, err
			}
		}
		return q, nil
	})
	m = mda.New(mda.Options{
		Hostname: cfg.Hostname, Directory: db,
		Store:     maildir.NewStore(cfg.MailDir(), maildir.StoreOptions{Hostname: cfg.Hostname, Logger: log}),
		Forwarder: fwd, Postmaster: cfg.Postmaster, TmpDir: os.TempDir(), Logger: log,
	})
	return m, func() {
		if q != nil {
			q.Close()
		}
	}
}

// queueForwarder gives the router (mda) a queue opened only when a message
// needs it: the LDA's, as most of its calls deliver locally. serve opens
// its queue first and hands it to the router as it is.
type queueForwarder func() (*queue.Queue, error)

func (f queueForwarder) Enqueue(ctx context.Context, env *envelope.Envelope, body io.Reader) (string, error) {
	q, err := f()
	if err != nil {
		return "", err
	}
	return q.Enqueue(ctx, env, body)
}

func (f queueForwarder) EnqueueFailed(ctx context.Context, env *envelope.Envelope, body io.Reader, failed []error) (string, error) {
	q, err := f()
	if err != nil {
		return "", err
	}
	return q.EnqueueFailed(ctx, env, body, failed)
}
