package main

import (
	"context"
	"io"

	"postie/envelope"
	"postie/queue"
)

// queueForwarder gives the MDA the queue, as the queue comes: serve builds
// the MDA before the queue (the queue bounces through the MDA), and the
// LDA opens the queue only when a message needs it.
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
