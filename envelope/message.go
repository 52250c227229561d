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
}
