package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"

	"postie/envelope"
	"postie/queue"
	"postie/smtpd"
)

// lateBounces keeps a recipient that fails during DATA, after RCPT had
// accepted it (a mailbox that filled up meanwhile), from being lost behind
// the single 250 SMTP gives once other recipients have the message: the
// failure is recorded in the queue, which bounces it to the sender.
type lateBounces struct {
	next  smtpd.Delivery
	queue *queue.Queue
	log   *slog.Logger
}

// headerKeep is how much of a message is kept to quote its header in a
// bounce; the queue quotes at most this much too.
const headerKeep = 64 << 10

func (l *lateBounces) Deliver(ctx context.Context, env *envelope.Envelope, body io.Reader) []error {
	head := &prefixBuffer{max: headerKeep}
	errs := l.next.Deliver(ctx, env, io.TeeReader(body, head))
	var failedTo []string
	var failed []error
	for i, err := range errs {
		if err != nil {
			failedTo = append(failedTo, env.To[i])
			failed = append(failed, err)
		}
	}
	if len(failed) == 0 || len(failed) == len(errs) || env.From == "" {
		return errs // all or nothing: the SMTP reply itself tells the client
	}
	bounce := *env
	bounce.To = failedTo
	id, err := l.queue.EnqueueFailed(ctx, &bounce, bytes.NewReader(head.Bytes()), failed)
	if err != nil {
		l.log.Error("recording a late failure for a bounce", "id", env.ID, "to", failedTo, "err", err)
		return errs
	}
	l.log.Info("late failure will be bounced", "id", env.ID, "queue_id", id, "to", failedTo)
	return make([]error, len(errs))
}

// prefixBuffer keeps the first max bytes written to it.
type prefixBuffer struct {
	bytes.Buffer
	max int
}

func (p *prefixBuffer) Write(b []byte) (int, error) {
	if room := p.max - p.Len(); room > 0 {
		p.Buffer.Write(b[:min(room, len(b))])
	}
	return len(b), nil
}
