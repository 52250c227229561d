package outbound

import (
	"context"
	"errors"
	"fmt"

	"postie/envelope"
)

// delivery is the state of one Deliver call: which recipients are settled
// and the best explanation so far for those that are not.
type delivery struct {
	t       *envelope.Transfer // the envelope and its parameters; NoDSN is filled in
	msg     *message
	results []error
	settled []bool
	tried   []bool // an outcome was recorded, even if not final
}

func newDelivery(t *envelope.Transfer) *delivery {
	return &delivery{
		t:       t,
		results: make([]error, len(t.To)),
		settled: make([]bool, len(t.To)),
		tried:   make([]bool, len(t.To)),
	}
}

// pending lists the recipients still without a final outcome.
func (d *delivery) pending() []int {
	var out []int
	for i, s := range d.settled {
		if !s {
			out = append(out, i)
		}
	}
	return out
}

func (d *delivery) done() bool {
	for _, s := range d.settled {
		if !s {
			return false
		}
	}
	return true
}

// settle gives recipient i its final outcome for this attempt.
func (d *delivery) settle(i int, err error) {
	d.results[i] = err
	d.settled[i] = true
	d.tried[i] = true
}

func (d *delivery) settleAll(err error) {
	for _, i := range d.pending() {
		d.settle(i, err)
	}
}

// deferRcpt records a non-final failure for recipient i: the next host
// may still take it.
func (d *delivery) deferRcpt(i int, err error) {
	if d.tried[i] {
		err = preferred(d.results[i], err)
	}
	d.results[i] = err
	d.tried[i] = true
}

// hostFailed records a failure of a whole host for every pending recipient.
func (d *delivery) hostFailed(err error) {
	for _, i := range d.pending() {
		d.deferRcpt(i, err)
	}
}

// finish turns the recorded outcomes into Deliver's result.
func (d *delivery) finish(ctx context.Context) []error {
	for _, i := range d.pending() {
		switch {
		case ctx.Err() != nil && (!d.tried[i] || isTemporary(d.results[i])):
			d.results[i] = fmt.Errorf("outbound: delivery interrupted: %w", context.Cause(ctx))
		case !d.tried[i]:
			d.results[i] = errors.New("outbound: no mail server could be tried")
		}
	}
	return d.results
}

// preferred picks which of two failures of the same recipient at two hosts
// to report. A temporary failure wins over a permanent one, because a later
// attempt may succeed at the host that failed temporarily; among equals a
// remote reply says more than a network error, and otherwise the latest
// wins.
func preferred(old, next error) error {
	ot, nt := isTemporary(old), isTemporary(next)
	if ot != nt {
		if nt {
			return next
		}
		return old
	}
	var oe, ne *envelope.Error
	if errors.As(old, &oe) && !errors.As(next, &ne) {
		return old
	}
	return next
}
