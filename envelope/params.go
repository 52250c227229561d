package envelope

import (
	"fmt"
	"strings"
)

// Params are the ESMTP parameters of a transaction that travel with the
// message from where it arrives to where it leaves: REQUIRETLS (RFC 8689)
// and the DSN extension's RET and ENVID (RFC 3461). The zero Params is a
// message without any of them.
type Params struct {
	// RequireTLS: the message may only travel over TLS that was verified
	// (MTA-STS or DANE, or a smarthost over verified TLS); RFC 8689.
	RequireTLS bool
	// Ret is RET: RetFull, RetHdrs, or "" (not given: the MTA chooses;
	// ours returns the full message, within a bound).
	Ret string
	// EnvID is ENVID, xtext-decoded (printable ASCII); "" if not given.
	EnvID string
}

// RET values.
const (
	RetFull = "FULL"
	RetHdrs = "HDRS"
)

// Notify is the NOTIFY parameter of one recipient (RFC 3461 §4.1): a set
// of NotifySuccess, NotifyFailure, NotifyDelay, or NotifyNever alone. The
// zero Notify means NOTIFY was not given: the MTA's default, which is
// failure and delay notices.
type Notify uint8

// Notify flags.
const (
	NotifySuccess Notify = 1 << iota
	NotifyFailure
	NotifyDelay
	NotifyNever
)

var notifyNames = []struct {
	n    Notify
	name string
}{{NotifyNever, "NEVER"}, {NotifySuccess, "SUCCESS"}, {NotifyFailure, "FAILURE"}, {NotifyDelay, "DELAY"}}

// Success, Failure and Delay say whether a notice of that kind is wanted;
// without a NOTIFY parameter failures and delays are.
func (n Notify) Success() bool { return n&NotifySuccess != 0 }
func (n Notify) Failure() bool { return n == 0 || n&NotifyFailure != 0 }
func (n Notify) Delay() bool   { return n == 0 || n&NotifyDelay != 0 }

// String is the parameter's value, "SUCCESS,FAILURE"; "" for the zero Notify.
func (n Notify) String() string {
	var parts []string
	for _, v := range notifyNames {
		if n&v.n != 0 {
			parts = append(parts, v.name)
		}
	}
	return strings.Join(parts, ",")
}

// ParseNotify parses a NOTIFY value (case-insensitive): NEVER alone, or
// one or more of SUCCESS, FAILURE and DELAY separated by commas.
func ParseNotify(s string) (Notify, error) {
	if s == "" {
		return 0, nil
	}
	var n Notify
	for _, part := range strings.Split(s, ",") {
		found := false
		for _, v := range notifyNames {
			if strings.EqualFold(part, v.name) {
				n |= v.n
				found = true
			}
		}
		if !found {
			return 0, fmt.Errorf("bad NOTIFY value %q", s)
		}
	}
	if n&NotifyNever != 0 && n != NotifyNever {
		return 0, fmt.Errorf("NOTIFY=NEVER with other values in %q", s)
	}
	return n, nil
}

// MarshalText and UnmarshalText keep Notify readable in state files.
func (n Notify) MarshalText() ([]byte, error) { return []byte(n.String()), nil }

func (n *Notify) UnmarshalText(b []byte) error {
	v, err := ParseNotify(string(b))
	if err != nil {
		return err
	}
	*n = v
	return nil
}

// RcptParams are one recipient's DSN parameters (RFC 3461 §4). The zero
// RcptParams is a recipient without any.
type RcptParams struct {
	Notify Notify
	// ORcptType and ORcpt are ORCPT: the address type ("rfc822" or
	// "utf-8") and the original recipient address, decoded; "" if not
	// given.
	ORcptType string
	ORcpt     string
}

// OriginalRecipient is the value of a DSN's Original-Recipient field,
// "rfc822;bob@example.com", or "" without ORCPT.
func (p RcptParams) OriginalRecipient() string {
	if p.ORcpt == "" {
		return ""
	}
	t := p.ORcptType
	if t == "" {
		t = "rfc822"
	}
	return t + ";" + p.ORcpt
}

// RcptParam returns the parameters of env.To[i]: the zero RcptParams when
// none were recorded.
func (env *Envelope) RcptParam(i int) RcptParams {
	if i < 0 || i >= len(env.RcptParams) {
		return RcptParams{}
	}
	return env.RcptParams[i]
}

// Transfer is what one outbound delivery attempt carries: the envelope
// of a queued message for some of its recipients, with their parameters,
// and what the attempt learns besides each recipient's result.
type Transfer struct {
	From       string       // the envelope sender; "" is the null sender
	To         []string     // the recipients, all in one domain
	Params     Params       // the message's parameters
	RcptParams []RcptParams // parallel to To; nil or short: the zero RcptParams

	// NoDSN is set by the deliverer, parallel to To (allocated by the
	// caller or the deliverer): To[i] was accepted by a host that does
	// not support DSN, so any success notice NOTIFY asked for is the
	// sender's to get from us ("relayed", RFC 3461 §5.2.2).
	NoDSN []bool
}

// RcptParam returns the parameters of t.To[i], zero when none.
func (t *Transfer) RcptParam(i int) RcptParams {
	if i < 0 || i >= len(t.RcptParams) {
		return RcptParams{}
	}
	return t.RcptParams[i]
}

// SetNoDSN records that To[i] went to a host without DSN support.
func (t *Transfer) SetNoDSN(i int) {
	if len(t.NoDSN) != len(t.To) {
		t.NoDSN = make([]bool, len(t.To))
	}
	t.NoDSN[i] = true
}
