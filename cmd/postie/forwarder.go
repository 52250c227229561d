package main

import (
	"context"
	"io"

	"postie/envelope"
	"postie/queue"
)

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
