package rspamd

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"

	"postie/internal/textsafe"
)

// rspamd's actions (the "action" of a /checkv2 reply).
const (
	ActionNoAction       = "no action"
	ActionGreylist       = "greylist"
	ActionAddHeader      = "add header"
	ActionRewriteSubject = "rewrite subject"
	ActionSoftReject     = "soft reject"
	ActionReject         = "reject"
)

// HeaderName is the name of the header field whose value is
// Result.Header, as rspamd's milter_headers module names it.
const HeaderName = "X-Spamd-Result"

// Result is rspamd's verdict on one message.
type Result struct {
	// Action is rspamd's action, one of the Action constants (an action
	// this package does not know makes every helper below false).
	Action string
	// Score is the message's score; Required the score of the reject
	// action.
	Score, Required float64
	// Symbols are the rules that matched, largest |score| first.
	Symbols []Symbol
	// Subject is the rewritten subject rspamd proposes with the
	// "rewrite subject" action, else "".
	Subject string
	// Header is an X-Spamd-Result header value recording the verdict, in
	// the format of rspamd's milter_headers module:
	// "default: False [1.20 / 15.00];\r\n\tSYM(1.00)[opt,opt];\r\n\t...".
	// It is folded after each ';' with CRLF TAB, carries no other
	// control characters, has no trailing CRLF, and is at most
	// maxHeader bytes (the smallest-scored symbols are dropped first).
	Header string
}

// Symbol is one rspamd rule that matched.
type Symbol struct {
	Name    string
	Score   float64
	Options []string
}

// Reject reports whether rspamd says to refuse the message for good
// (SMTP 550).
func (r Result) Reject() bool { return r.Action == ActionReject }

// SoftReject reports whether rspamd says to refuse the message for now
// (SMTP 451): its "soft reject" action, and also "greylist", which rspamd's
// own milter answers with a temporary failure too.
func (r Result) SoftReject() bool {
	return r.Action == ActionSoftReject || r.Action == ActionGreylist
}

// Junk reports whether rspamd says to deliver the message marked as spam
// ("add header" or "rewrite subject"): into the Junk folder.
func (r Result) Junk() bool {
	return r.Action == ActionAddHeader || r.Action == ActionRewriteSubject
}

// The bounds on Header.
const (
	maxHeader    = 4000 // the whole value
	maxSymbolLen = 900  // one symbol with its options: one folded line under 998
	maxOptionLen = 100  // one option
)

// reply is the part of a /checkv2 reply this package reads.
type reply struct {
	Action   *string  `json:"action"`
	Score    *float64 `json:"score"`
	Required float64  `json:"required_score"`
	Subject  string   `json:"subject"`
	Symbols  map[string]struct {
		Name    string   `json:"name"`
		Score   float64  `json:"score"`
		Options []string `json:"options"`
	} `json:"symbols"`
}

// parseResult decodes a /checkv2 reply.
func parseResult(body []byte) (Result, error) {
	var rep reply
	if err := json.Unmarshal(body, &rep); err != nil {
		return Result{}, fmt.Errorf("bad reply: %w", err)
	}
	if rep.Action == nil || rep.Score == nil {
		return Result{}, errors.New("bad reply: no action or score")
	}
	res := Result{Action: *rep.Action, Score: *rep.Score, Required: rep.Required, Subject: rep.Subject}
	for key, s := range rep.Symbols {
		name := s.Name
		if name == "" {
			name = key
		}
		res.Symbols = append(res.Symbols, Symbol{Name: name, Score: s.Score, Options: s.Options})
	}
	sort.Slice(res.Symbols, func(i, j int) bool {
		a, b := res.Symbols[i], res.Symbols[j]
		if math.Abs(a.Score) != math.Abs(b.Score) {
			return math.Abs(a.Score) > math.Abs(b.Score)
		}
		return a.Name < b.Name
	})
	res.Header = formatHeader(res)
	return res, nil
}

// formatHeader builds Result.Header.
func formatHeader(r Result) string {
	spam := "False"
	if r.Reject() {
		spam = "True"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "default: %s [%s / %s]", spam, score(r.Score), score(r.Required))
	for i, s := range r.Symbols {
		item := formatSymbol(s)
		if b.Len()+len(";\r\n\t")+len(item) > maxHeader-len(";\r\n\t...") {
			fmt.Fprintf(&b, ";\r\n\t... %d more", len(r.Symbols)-i)
			break
		}
		b.WriteString(";\r\n\t")
		b.WriteString(item)
	}
	return b.String()
}

// formatSymbol formats one symbol as "NAME(score)[opt,opt]", dropping the
// options that do not fit maxSymbolLen.
func formatSymbol(s Symbol) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s(%s)[", sanitize(s.Name, maxOptionLen), score(s.Score))
	for i, o := range s.Options {
		o = sanitize(o, maxOptionLen)
		if b.Len()+len(o)+len(",...]") > maxSymbolLen {
			b.WriteString(",...")
			break
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(o)
	}
	b.WriteByte(']')
	return b.String()
}

// score formats a score as rspamd does ("%.2f"), keeping absurd ones
// short.
func score(x float64) string {
	if math.Abs(x) >= 1e9 {
		return fmt.Sprintf("%.3g", x)
	}
	return fmt.Sprintf("%.2f", x)
}

// sanitize makes text from rspamd safe in a header or a log line.
func sanitize(s string, n int) string { return textsafe.Clean(s, n, "") }
