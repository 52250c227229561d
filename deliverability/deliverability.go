// Package deliverability explains why a receiving mail server refused or
// deferred our mail when its reply carries a code or text that a large
// receiver documents (Gmail's 5.7.26, Microsoft's 5.7.515 or S3140,
// Yahoo's TSS04, a block list's URL...). Explain maps such a reply to a
// plain-language cause and the fix: what to publish in DNS, whom to ask for
// mitigation. It is used in the queue's log lines, in `postie queue list`
// and in the bounce to our own sender.
//
// The table is matched in order, first match wins, case-insensitively on
// the whole reply line (code, enhanced code and text). A reply matching
// nothing gets no explanation: Explain never guesses.
package deliverability

import "strings"

// Explanation is what a known refusal means and how to fix it.
type Explanation struct {
	Cause string // what the receiver objects to, in plain language
	Fix   string // what the administrator should do
	URL   string // the receiver's or list's own page for it, "" if none is stable
}

// String renders the explanation as one sentence group, for logs, the
// queue listing and DSNs.
func (e Explanation) String() string {
	s := e.Cause + " Fix: " + e.Fix
	if e.URL != "" {
		s += " (" + e.URL + ")"
	}
	return s
}

// rule matches a reply when it contains every string of all and, if any
// is set, at least one of any.
type rule struct {
	code string // an enhanced status code that must appear as a whole token
	all  []string
	any  []string
	exp  Explanation
}

func (r rule) match(lower string) bool {
	if r.code != "" && !hasCode(lower, r.code) {
		return false
	}
	for _, s := range r.all {
		if !strings.Contains(lower, s) {
			return false
		}
	}
	if len(r.any) == 0 {
		return true
	}
	for _, s := range r.any {
		if strings.Contains(lower, s) {
			return true
		}
	}
	return false
}

const (
	gmailGuidelines = "https://support.google.com/mail/answer/81126"
	msSenderSupport = "https://olcsupport.office.com/"
	msDelist        = "https://sender.office.com/"
	yahooSenderHub  = "https://senders.yahooinc.com/"

	fixAuth = "publish an SPF record that includes this server's address, the DKIM key Postie made (`postie dns check` lists both), " +
		"and a DMARC record; make sure the From: domain is one of ours so DKIM aligns."
)

// hasCode reports whether code ("5.7.26") occurs in s as a status code,
// not as part of a longer code or of an address ("5.7.260", "10.5.7.26").
func hasCode(s, code string) bool {
	for i := 0; ; {
		j := strings.Index(s[i:], code)
		if j < 0 {
			return false
		}
		start, end := i+j, i+j+len(code)
		before := start == 0 || !isCodeByte(s[start-1])
		after := end == len(s) || !isDigit(s[end]) && !(s[end] == '.' && end+1 < len(s) && isDigit(s[end+1]))
		if before && after {
			return true
		}
		i = start + 1
	}
}

func isDigit(b byte) bool    { return '0' <= b && b <= '9' }
func isCodeByte(b byte) bool { return isDigit(b) || b == '.' }

// rules is the table, most specific first.
var rules = []rule{
	{code: "5.7.26", exp: Explanation{
		Cause: "Gmail refused the message because it is not authenticated: it passed neither SPF nor DKIM for the sender's domain, or failed that domain's DMARC policy.",
		Fix:   fixAuth, URL: gmailGuidelines}},
	{code: "5.7.27", exp: Explanation{
		Cause: "Gmail refused the message because the sender's domain does not pass SPF for this server's address.",
		Fix:   "add this server's address to the domain's SPF record (`postie dns check` shows the record to publish).", URL: gmailGuidelines}},
	{code: "5.7.28", exp: Explanation{
		Cause: "Gmail saw an unusual rate of unsolicited mail from this server's address and is limiting it.",
		Fix: "send only to recipients who asked for the mail, slow down ([[queue.throttle]] for gmail.com), remove addresses that bounce, " +
			"and watch the domain's reputation in Google Postmaster Tools.", URL: gmailGuidelines}},
	{code: "4.7.28", exp: Explanation{
		Cause: "Gmail saw an unusual rate of unsolicited mail from this server's address and is limiting it.",
		Fix: "send only to recipients who asked for the mail, slow down ([[queue.throttle]] for gmail.com), remove addresses that bounce, " +
			"and watch the domain's reputation in Google Postmaster Tools.", URL: gmailGuidelines}},
	{code: "5.7.25", any: []string{"ptr", "reverse"}, exp: Explanation{
		Cause: "The receiver refused the message because this server's address has no reverse DNS (PTR) record matching its name.",
		Fix:   "ask whoever runs the address (the hosting provider) to set its PTR record to hostname; `postie dns check` verifies it.", URL: gmailGuidelines}},
	{code: "5.7.1", any: []string{"unauthenticated", "not authenticated"}, exp: Explanation{
		Cause: "The receiver refused the message as unauthenticated: it passed neither SPF nor DKIM for the sender's domain.",
		Fix:   fixAuth, URL: gmailGuidelines}},
	{code: "5.7.515", exp: Explanation{
		Cause: "Microsoft (Outlook.com) refused the message because the sending domain does not meet its authentication requirements (SPF, DKIM and DMARC).",
		Fix:   fixAuth + " Microsoft requires all three for senders of volume.", URL: msSenderSupport}},
	{any: []string{"(s3140)", "(s3150)", "(s3114)", "(s3115)"}, exp: Explanation{
		Cause: "Microsoft (Outlook.com, Hotmail) refused the message because this server's address, or its network, is on Microsoft's block list.",
		Fix:   "request mitigation through Outlook.com's sender support form, naming this server's address.", URL: msSenderSupport}},
	{any: []string{"(sc-001)", "(sc-002)", "(sc-003)", "(sc-004)"}, exp: Explanation{
		Cause: "Microsoft (Outlook.com) refused the message for policy reasons: the reputation of this server's address is too low.",
		Fix:   "request mitigation through Outlook.com's sender support form; sign up for Microsoft SNDS to watch the address.", URL: msSenderSupport}},
	{code: "5.7.708", exp: Explanation{
		Cause: "Microsoft 365 does not accept traffic from this server's address (a new address or one with a poor reputation).",
		Fix:   "request delisting of the address in Microsoft's delist portal.", URL: msDelist}},
	{code: "5.7.606", exp: Explanation{
		Cause: "Microsoft refused the message because this server's address is banned.",
		Fix:   "request delisting of the address in Microsoft's delist portal.", URL: msDelist}},
	{any: []string{"[tss04]", "[ts04]"}, exp: Explanation{
		Cause: "Yahoo deferred the message because of unexpected volume or complaints from its users about mail from this server.",
		Fix: "slow down (a [[queue.throttle]] for yahoo.com), send only to recipients who asked for the mail, and honour unsubscribe requests; " +
			"Postie keeps retrying later by itself.", URL: yahooSenderHub}},
	{any: []string{"[tss01]", "[tss02]", "[tss03]", "[ts01]", "[ts02]", "[ts03]"}, exp: Explanation{
		Cause: "Yahoo deferred or refused the message because of the reputation of this server's address.",
		Fix:   "check the address's reputation and authentication (SPF, DKIM, DMARC) and contact Yahoo through its sender hub.", URL: yahooSenderHub}},
	{all: []string{"spamhaus"}, exp: Explanation{
		Cause: "The receiver refused the message because this server's address (or the sender's domain) is listed by Spamhaus.",
		Fix:   "look the address up at Spamhaus, fix what it names (a compromised account, an open relay), then request removal there.",
		URL:   "https://check.spamhaus.org/"}},
	{all: []string{"barracudacentral"}, exp: Explanation{
		Cause: "The receiver refused the message because this server's address is on the Barracuda reputation block list.",
		Fix:   "request removal from the Barracuda list, giving this server's address.",
		URL:   "https://www.barracudacentral.org/rbl/removal-request"}},
	{all: []string{"spamcop.net"}, exp: Explanation{
		Cause: "The receiver refused the message because this server's address is on the SpamCop block list (listings expire by themselves about a day after the last report).",
		Fix:   "find and stop what sent the reported mail; the listing then expires.",
		URL:   "https://www.spamcop.net/bl.shtml"}},
	{any: []string{"blocklist", "blacklist", "block list", "black list", "dnsbl", "listed at", "listed on", "listed by"}, exp: Explanation{
		Cause: "The receiver refused the message because this server's address is on a DNS block list (the reply names it).",
		Fix:   "look the address up at the list the reply names, fix the cause, and request removal there."}},
}

// Explain returns the explanation for a remote server's reply line (as
// "550 5.7.26 text..."), and whether it knows one.
func Explain(reply string) (Explanation, bool) {
	if reply == "" {
		return Explanation{}, false
	}
	lower := strings.ToLower(reply)
	for _, r := range rules {
		if r.match(lower) {
			return r.exp, true
		}
	}
	return Explanation{}, false
}
