package deliverability

import (
	"strings"
	"testing"
)

func TestExplain(t *testing.T) {
	cases := []struct {
		reply string
		want  string // a word of the cause; "" for no explanation
		url   string
	}{
		{"550 5.7.26 This mail has been blocked because the sender is unauthenticated. Gmail requires all senders to authenticate with either SPF or DKIM.", "not authenticated", gmailGuidelines},
		{"550 5.7.1 [192.0.2.1] Our system has detected that this message is not authenticated", "unauthenticated", gmailGuidelines},
		{"550 5.7.27 The sender's domain does not pass SPF", "SPF", gmailGuidelines},
		{"421 4.7.28 Gmail has detected an unusual rate of unsolicited mail originating from your IP address", "unusual rate", gmailGuidelines},
		{"550 5.7.28 Gmail has detected an unusual rate of unsolicited mail", "unusual rate", gmailGuidelines},
		{"550 5.7.25 The IP address sending this message does not have a PTR record setup", "PTR", gmailGuidelines},
		{"550 5.7.515 Access denied, sending domain example.test does not meet the required authentication level.", "Microsoft", msSenderSupport},
		{"550 5.7.1 Unfortunately, messages from [192.0.2.1] weren't sent. Please contact your Internet service provider since part of their network is on our block list (S3140).", "block list", msSenderSupport},
		{"550 5.7.1 Service unavailable, Client host [192.0.2.1] blocked using Customer Block list (SC-001)", "policy", msSenderSupport},
		{"550 5.7.708 Service unavailable. Access denied, traffic not accepted from this IP.", "Microsoft 365", msDelist},
		{"421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user complaints", "Yahoo", yahooSenderHub},
		{"554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org; https://www.spamhaus.org/query/ip/192.0.2.1", "Spamhaus", "https://check.spamhaus.org/"},
		{"554 Service unavailable; Client host [192.0.2.1] blocked using b.barracudacentral.org", "Barracuda", "https://www.barracudacentral.org/rbl/removal-request"},
		{"550 5.7.1 Your IP 192.0.2.1 is listed at bl.example.org", "block list", ""},
		// Not deliverability refusals, or codes inside other tokens.
		{"550 5.1.1 <bob@example.test>: user unknown", "", ""},
		{"550 5.7.1 relaying denied", "", ""},
		{"451 4.3.0 mx.test[5.7.26.1] said: try again", "", ""},
		{"451 4.3.0 mx.test[10.5.7.26] said: try again", "", ""},
		{"550 5.7.260 something else", "", ""},
		{"550 5.1.1 barracuda.example.test said: no such user", "", ""},
		{"", "", ""},
	}
	for _, c := range cases {
		e, ok := Explain(c.reply)
		if ok != (c.want != "") {
			t.Errorf("Explain(%q) = %v, %v; want an explanation: %v", c.reply, e, ok, c.want != "")
			continue
		}
		if !ok {
			continue
		}
		if !strings.Contains(e.Cause, c.want) || e.URL != c.url || e.Fix == "" {
			t.Errorf("Explain(%q) = %+v; want cause with %q and URL %q", c.reply, e, c.want, c.url)
		}
		if s := e.String(); !strings.Contains(s, e.Fix) || (e.URL != "" && !strings.Contains(s, e.URL)) {
			t.Errorf("String() = %q", s)
		}
	}
}

func FuzzExplain(f *testing.F) {
	f.Add("550 5.7.26 unauthenticated")
	f.Add("5.7.1")
	f.Fuzz(func(t *testing.T, s string) {
		e, ok := Explain(s)
		if ok != (e != Explanation{}) || ok && (e.Cause == "" || e.Fix == "") {
			t.Fatalf("Explain(%q) = %+v, %v", s, e, ok)
		}
		// Matching ignores case (ASCII: Unicode case mapping is not a
		// round trip).
		if isASCII(s) {
			if e2, ok2 := Explain(strings.ToUpper(s)); ok2 != ok || e2 != e {
				t.Fatalf("Explain(%q) differs from Explain of its upper case", s)
			}
		}
	})
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
