package tlsrpt

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Report is the aggregate report of RFC 8460 section 4, for one policy
// domain and one UTC day.
type Report struct {
	OrganizationName string         `json:"organization-name"`
	DateRange        DateRange      `json:"date-range"`
	ContactInfo      string         `json:"contact-info"`
	ReportID         string         `json:"report-id"`
	Policies         []PolicyReport `json:"policies"`
}

// DateRange is the report's "date-range".
type DateRange struct {
	Start time.Time `json:"start-datetime"`
	End   time.Time `json:"end-datetime"`
}

// PolicyReport is one entry of "policies": a policy that applied and the
// sessions made under it.
type PolicyReport struct {
	Policy         PolicyDesc      `json:"policy"`
	Summary        Summary         `json:"summary"`
	FailureDetails []FailureDetail `json:"failure-details,omitempty"`
}

// PolicyDesc is "policy" (RFC 8460 §4.4).
type PolicyDesc struct {
	Type   PolicyType `json:"policy-type"`
	String []string   `json:"policy-string,omitempty"`
	Domain string     `json:"policy-domain"`
	MXHost []string   `json:"mx-host,omitempty"`
}

// Summary is "summary".
type Summary struct {
	Successful int64 `json:"total-successful-session-count"`
	Failed     int64 `json:"total-failure-session-count"`
}

// FailureDetail is one entry of "failure-details" (RFC 8460 §4.3).
type FailureDetail struct {
	ResultType          ResultType `json:"result-type"`
	SendingMTAIP        string     `json:"sending-mta-ip,omitempty"`
	ReceivingMXHostname string     `json:"receiving-mx-hostname,omitempty"`
	ReceivingIP         string     `json:"receiving-ip,omitempty"`
	FailedSessionCount  int64      `json:"failed-session-count"`
	FailureReasonCode   string     `json:"failure-reason-code,omitempty"`
}

// maxDetail bounds a failure-reason-code, which is free text from the
// delivery code (an error message).
const maxDetail = 200

// aggregate builds the report for one policy domain and one day (start:
// the day's midnight UTC) from the sums stored for its policies.
func aggregate(day time.Time, policies []PolicyReport, org, contact, reportID string) *Report {
	return &Report{
		OrganizationName: org, ContactInfo: contact, ReportID: reportID,
		DateRange: DateRange{Start: day, End: day.Add(24*time.Hour - time.Second)},
		Policies:  policies,
	}
}

// describePolicy is a Result's "policy": for MTA-STS the mx patterns come
// from the policy's own "mx:" lines; for DANE and no policy the MX host
// the sessions went to.
func describePolicy(r Result) PolicyDesc {
	d := PolicyDesc{Type: r.PolicyType, Domain: r.PolicyDomain}
	if r.PolicyType == "" {
		d.Type = PolicyNoneFound
	}
	if d.Type != PolicyNoneFound {
		d.String = slices.Clone(r.PolicyStrings)
	}
	if d.Type == PolicySTS {
		for _, line := range r.PolicyStrings {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "mx" {
				d.MXHost = append(d.MXHost, strings.TrimSpace(v))
			}
		}
	} else if r.MXHost != "" {
		d.MXHost = []string{r.MXHost}
	}
	return d
}

func clip(s string, n int) string {
	s = strings.ToValidUTF8(s, "?")
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// gzipJSON is the report as sent: JSON, gzip-compressed (RFC 8460 §5.1).
func (rep *Report) gzipJSON() ([]byte, error) {
	data, err := json.Marshal(rep)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write(data); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
