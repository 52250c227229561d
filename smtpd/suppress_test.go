package smtpd

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

type fakeSuppression map[string]time.Time

func (f fakeSuppression) Suppressed(addr string) (time.Time, bool) {
	t, ok := f[addr]
	return t, ok
}

func TestSubmissionRefusesSuppressed(t *testing.T) {
	sup := fakeSuppression{
		"gone@elsewhere.example": time.Date(2025, 2, 20, 8, 0, 0, 0, time.UTC),
		"bob@example.test":       time.Date(2025, 2, 20, 8, 0, 0, 0, time.UTC),
	}
	f := start(t, RoleSubmission, func(o *Options) { o.Suppression = sup })
	c := login(t, f.addr, "ann@example.test", "secret")
	wantCode(t, "MAIL", c.Mail("ann@example.test", nil), 0, "")
	err := c.Rcpt("gone@elsewhere.example", nil)
	wantCode(t, "suppressed", err, 550, "5.1.1")
	var se *smtp.SMTPError
	if !errors.As(err, &se) || !strings.Contains(se.Message, "2025-02-20") || !strings.Contains(se.Message, "gone@elsewhere.example") {
		t.Errorf("the refusal should name the address and the date of the bounce: %v", err)
	}
	wantCode(t, "not suppressed", c.Rcpt("friend@elsewhere.example", nil), 0, "")
	// Local recipients are the MDA's business, never the list's.
	wantCode(t, "local", c.Rcpt("bob@example.test", nil), 0, "")

	// The MX role never consults the list.
	mx := start(t, RoleMX, func(o *Options) { o.Suppression = sup })
	m := dial(t, mx.addr)
	wantCode(t, "MX MAIL", m.Mail("gone@elsewhere.example", nil), 0, "")
	wantCode(t, "MX RCPT", m.Rcpt("bob@example.test", nil), 0, "")
}
