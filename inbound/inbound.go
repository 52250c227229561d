// Package inbound decides how far mail arriving from outside can be
// trusted: SPF (RFC 7208), DKIM (RFC 6376), DMARC (RFC 7489), the
// Authentication-Results header that records them (RFC 8601), what the
// verdicts mean for the message, forward-confirmed reverse DNS for the
// Received: line, and DNSBL listings (RFC 5782).
//
// The contract. A Checker is built once with our hostname (the authserv-id)
// and our domains, and is safe for concurrent use. Check takes the facts of
// one SMTP transaction (client IP, HELO name, MAIL FROM) and the message
// (header and body, as received) and returns a Verdict: each method's
// result, the Authentication-Results value to prepend to every stored copy,
// and an Action:
//
//   - Reject (550 5.7.1, Verdict.Reply): DMARC fails and the domain asks
//     p=reject (after pct); or the From: domain is one of ours and the
//     message does not pass DMARC alignment, record or no record (unless
//     Options.AllowUnalignedOwnDomain).
//   - Defer (451 4.4.3, Verdict.Reply): one of those two refusals would
//     apply but a temporary DNS error kept a check from passing, so the
//     sender is asked to retry instead of the mail being lost or refused
//     for our resolver's trouble.
//   - Junk: DMARC fails with p=quarantine (or p=reject sampled out by pct);
//     or the message has zero or several From: domains (DMARC fail; refused
//     instead if one of them is ours or asks p=reject); or SPF fails and
//     DMARC neither passes nor has a policy of its own.
//   - Accept: anything else, including every other temporary error (it is
//     recorded as temperror in the header).
//
// Verdict.Reason is a short phrase for X-Spam-Reason ("dmarc quarantine",
// "spf fail", ...), empty when the checks found nothing to say.
// Check never fails: DNS trouble becomes temperror, malformed input
// permerror or fail. Which clients are checked at all (trusted networks,
// authenticated submission) is the caller's business.
//
// Check reads the message as received; the stored copy is then built as
// Verdict.Header() + StripForged(ReadHeader(msg)) + the body:
// StripForged removes forged Authentication-Results fields claiming
// our authserv-id (RFC 8601 §5), leaving every other byte as it was. ReverseDNS does the forward-confirmed PTR lookup; DNSBL
// checks client addresses against block lists with a bounded cache.
//
// All DNS goes through a Resolver (a *net.Resolver satisfies it); every
// lookup takes the caller's context, which bounds the time spent.
package inbound

import (
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"time"

	"postie/envelope"
)

// Resolver is the DNS the checks use. *net.Resolver implements it; errors
// should be *net.DNSError (IsNotFound, IsTemporary), as net's are, since
// the SPF and DKIM libraries look at them unwrapped.
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
	LookupAddr(ctx context.Context, addr string) ([]string, error)
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Result is one method's outcome, spelled as in Authentication-Results.
type Result string

// Results (RFC 8601 §2.7; SPF's in RFC 7208 §8).
const (
	None      Result = "none"
	Pass      Result = "pass"
	Fail      Result = "fail"
	SoftFail  Result = "softfail"
	Neutral   Result = "neutral"
	TempError Result = "temperror"
	PermError Result = "permerror"
)

// Action is what to do with the message.
type Action int

// Actions, from mildest to strictest.
const (
	Accept Action = iota // deliver as usual (the junk filter may still decide)
	Junk                 // deliver into the recipients' Junk folders
	Defer                // refuse with 451 (Verdict.Reply): try again later
	Reject               // refuse with 550 5.7.1 (Verdict.Reply)
)

func (a Action) String() string {
	switch a {
	case Accept:
		return "accept"
	case Junk:
		return "junk"
	case Defer:
		return "defer"
	case Reject:
		return "reject"
	}
	return "unknown"
}

// Options configure a Checker. Only Hostname is required.
type Options struct {
	// Hostname is our authserv-id: the name in the Authentication-Results
	// fields we write and strip.
	Hostname string
	// Domains are the domains we host. Mail from outside with one of them
	// in From: must pass DMARC alignment (SPF or DKIM), or it is refused.
	Domains []string
	// AllowUnalignedOwnDomain turns that refusal off, for organisations
	// whose own domain is legitimately sent from elsewhere without DKIM.
	// The zero value (false) keeps the protection on.
	AllowUnalignedOwnDomain bool
	// MaxDKIMSignatures bounds the signatures verified per message (each
	// costs a DNS lookup); the rest are ignored. Zero means 5.
	MaxDKIMSignatures int
	// Timeout bounds one Check, on top of the caller's context. Zero
	// means 30 seconds (RFC 7208 §4.6.4 asks at least 20 for SPF).
	Timeout time.Duration
	// Percent decides DMARC pct sampling (RFC 7489 §6.6.4): a message is
	// subject to the policy when Percent() < pct. It must return a value
	// in [0, 100). Nil means uniformly random; tests fix it.
	Percent func() int
	// Logger receives one debug line per Check. Nil means slog.Default().
	Logger *slog.Logger
}

// Checker runs the checks. It holds no per-message state.
type Checker struct {
	r       Resolver
	o       Options
	host    string
	domains map[string]bool
}

// New returns a Checker that resolves through r.
func New(r Resolver, o Options) *Checker {
	if o.MaxDKIMSignatures <= 0 {
		o.MaxDKIMSignatures = 5
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.Percent == nil {
		o.Percent = func() int { return rand.IntN(100) }
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	c := &Checker{r: r, o: o, host: o.Hostname, domains: map[string]bool{}}
	for _, d := range o.Domains {
		c.domains[envelope.CanonDomain(d)] = true
	}
	return c
}

// Input is what the SMTP transaction knows of the message's origin.
type Input struct {
	IP       netip.Addr // the client's address
	Helo     string     // its HELO/EHLO argument
	MailFrom string     // the reverse-path; "" for <>
	// SPF, when set, is a result computed earlier (Checker.SPF, started
	// at MAIL FROM); Check then does not evaluate SPF again.
	SPF *SPFResult
}

// Verdict is the outcome of Check.
type Verdict struct {
	SPF   SPFResult
	DKIM  []DKIMResult // one per signature verified, in header order
	DMARC DMARCResult

	// AuthResults is the Authentication-Results field value (folded,
	// without the field name and the final CRLF); Header gives the field.
	AuthResults string

	Action Action
	// Reply is the SMTP reply for Reject and Defer, nil otherwise.
	Reply *envelope.Error
	// Reason says why the Action is not Accept, for X-Spam-Reason:
	// "dmarc reject", "dmarc quarantine", "own domain unauthenticated",
	// "spf fail", "dmarc temperror"; empty for a plain Accept.
	Reason string
}

// Header is the Authentication-Results field to prepend, with CRLF.
func (v *Verdict) Header() string {
	return "Authentication-Results: " + v.AuthResults + "\r\n"
}

// Verified reports whether the From: address can be believed: its domain
// passed SPF or DKIM in DMARC alignment, whether or not the domain
// publishes a DMARC record. The junk filter's sender reputation wants it.
func (v *Verdict) Verified() bool { return v.DMARC.SPFAligned || v.DMARC.DKIMAligned }

// Check runs SPF, DKIM and DMARC for one message and decides the Action.
// msg is the message as received (header section, blank line, body), of
// size bytes; CRLF or LF line ends.
func (c *Checker) Check(ctx context.Context, in Input, msg io.ReaderAt, size int64) *Verdict {
	ctx, cancel := context.WithTimeout(ctx, c.o.Timeout)
	defer cancel()
	start := time.Now()
	v := &Verdict{}
	if in.SPF != nil {
		v.SPF = *in.SPF
	} else {
		v.SPF = c.SPF(ctx, in.IP, in.Helo, in.MailFrom)
	}
	hdr, err := ReadHeader(msg, size)
	if err != nil {
		c.o.Logger.Debug("inbound: reading header", "err", err)
	}
	fields := splitFields(hdr)
	v.DKIM = c.dkim(ctx, fields, msg, size)
	v.DMARC = c.dmarc(ctx, fromDomains(fields), v.SPF, v.DKIM)
	v.AuthResults = c.formatAuthResults(v)
	c.decide(v)
	c.o.Logger.Debug("inbound: checked", "remote", in.IP.String(), "spf", string(v.SPF.Result),
		"dkim", len(v.DKIM), "dmarc", string(v.DMARC.Result), "action", v.Action.String(),
		"reason", v.Reason, "duration", time.Since(start))
	return v
}

// isOwn reports whether d is one of our domains.
func (c *Checker) isOwn(d string) bool { return c.domains[strings.ToLower(d)] }
