// Package tlsrpt implements SMTP TLS Reporting (RFC 8460) for mail we
// send: it records the outcome of each outbound TLS session per policy
// domain, and once a day builds the aggregate JSON report (gzip,
// multipart/report; report-type=tlsrpt) for each domain whose
// _smtp._tls TXT record names a rua, and hands it to be mailed.
//
// Result is the contract between the delivery code (package outbound,
// which knows what happened on the wire) and the recorder: outbound
// reports one Result per TLS attempt through a small interface of its own.
package tlsrpt

// PolicyType is the kind of policy that applied to a session (RFC 8460
// section 4.4, "policy-type").
type PolicyType string

// Policy types.
const (
	PolicySTS       PolicyType = "sts"             // an MTA-STS policy
	PolicyTLSA      PolicyType = "tlsa"            // DANE TLSA records
	PolicyNoneFound PolicyType = "no-policy-found" // neither: opportunistic TLS
)

// ResultType is a failure's "result-type" (RFC 8460 section 4.3); the
// empty ResultType is a success.
type ResultType string

// Result types.
const (
	Success                 ResultType = ""
	StartTLSNotSupported    ResultType = "starttls-not-supported"
	CertificateHostMismatch ResultType = "certificate-host-mismatch"
	CertificateExpired      ResultType = "certificate-expired"
	CertificateNotTrusted   ResultType = "certificate-not-trusted"
	ValidationFailure       ResultType = "validation-failure"
	TLSAInvalid             ResultType = "tlsa-invalid"
	DNSSECInvalid           ResultType = "dnssec-invalid"
	DANERequired            ResultType = "dane-required"
	STSPolicyFetchError     ResultType = "sts-policy-fetch-error"
	STSPolicyInvalid        ResultType = "sts-policy-invalid"
	STSWebPKIInvalid        ResultType = "sts-webpki-invalid"
)

// Result is the outcome of one attempt to set up TLS with one MX host of
// a policy domain (the recipient domain).
type Result struct {
	PolicyDomain string     // the recipient domain, lower case
	PolicyType   PolicyType // which policy applied
	// PolicyStrings are the policy as published: the lines of the
	// MTA-STS policy, or the TLSA records in presentation form.
	PolicyStrings []string
	MXHost        string     // the MX host name tried (for "receiving-mx-hostname")
	SendingIP     string     // our source address, if known
	ReceivingIP   string     // the address connected to, if any
	Type          ResultType // Success or the failure
	// Detail is a short free-text reason ("failure-reason-code" in the report).
	Detail string
}
