package smtpd

import (
	"slices"
	"strings"
	"sync"
	"testing"

	"postie/envelope"
)

// recordingMetrics records the calls of Options.Metrics.
type recordingMetrics struct {
	mu     sync.Mutex
	events []string
}

func (m *recordingMetrics) MessageAccepted(role string) { m.add(role + " accepted") }
func (m *recordingMetrics) Refused(role, stage, reason string) {
	m.add(role + " " + stage + " " + reason)
}

func (m *recordingMetrics) add(e string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.events = append(m.events, e)
}

func (m *recordingMetrics) list() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.events)
}

// TestMetricsOutcomes: each refusal is counted once, at its stage and
// with its reason, and an accepted message once.
func TestMetricsOutcomes(t *testing.T) {
	rec := &recordingMetrics{}
	f := start(t, RoleMX, func(o *Options) { o.Metrics, o.MessagesPerMinutePerIP = rec, 1 })
	f.rcpts.errs = map[string]error{"nobody@example.test": envelope.ErrUnknownUser}
	r := dialRaw(t, f.addr)
	r.cmd(250, "EHLO client.example.net")
	r.cmd(250, "MAIL FROM:<a@remote.example>")
	r.cmd(550, "RCPT TO:<nobody@example.test>")
	r.cmd(554, "RCPT TO:<x@elsewhere.example>")
	r.cmd(501, "RCPT TO:<ann@example.test> ORCPT=rfc822;%s@example.org", strings.Repeat("a", maxORcptLen)) // ours, not go-smtp's
	r.cmd(250, "RCPT TO:<ann@example.test>")
	r.cmd(354, "DATA")
	r.write("Subject: hi\r\n\r\nhello\r\n.\r\n")
	r.expect(250)
	r.cmd(450, "MAIL FROM:<a@remote.example>")
	r.cmd(221, "QUIT")
	want := []string{"mx rcpt unknown_recipient", "mx rcpt relay_denied", "mx rcpt syntax", "mx accepted", "mx mail rate_limit"}
	if got := rec.list(); !slices.Equal(got, want) {
		t.Errorf("metrics events:\n got %q\nwant %q", got, want)
	}
}
