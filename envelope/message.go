package envelope

import "time"

// Envelope is one message's SMTP envelope plus the trace facts a
// Received: header needs. It travels from the protocol front-ends (smtpd,
// `postie deliver`, the queue's bounces) to the MDA and the queue.
type Envelope struct {
	ID   string   // our identifier for this transaction, for logs and Received "id"
	From string   // envelope sender; "" is the null sender <>
	To   []string // envelope recipients, as given (each validated)

	// Trace, for the Received: header. All optional.
	RemoteAddr string    // the client's IP address
	Helo       string    // its HELO/EHLO argument
	Protocol   string    // "ESMTP", "ESMTPS", "ESMTPSA", "LOCAL"...
	TLS        string    // e.g. "TLS1.3 TLS_AES_128_GCM_SHA256", empty without TLS
	AuthUser   string    // the authenticated login, for submission
	Received   time.Time // when we took the message; zero means now

	// Inbound marks mail from outside: taken by the MX role from a client
	// not in the trusted networks. The router runs the trust checks (SPF,
	// DKIM, DMARC) and the junk filter on it, and only on it.
	Inbound bool
	// ClientName is the client's forward-confirmed reverse DNS name, for
	// the Received: header; "" when it has none (or was not looked up:
	// Inbound false).
	ClientName string
	// Early is work the front-end started for this message before DATA
	// (the SPF check begun at MAIL FROM) for the router's checks to pick
	// up; nil when there is none. Opaque here: its producer and consumer
	// (package mda's Checks) agree on its type.
	Early any

	// Params are the message's ESMTP parameters (REQUIRETLS, RET,
	// ENVID), and RcptParams each recipient's (NOTIFY, ORCPT), parallel
	// to To; nil when none were given (see RcptParam).
	Params     Params
	RcptParams []RcptParams
}
