package smtpd

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"postie/suppress"
)

func TestSubmissionRefusesSuppressed(t *testing.T) {
	// The real list, as the queue fills it after a hard bounce on 20 February.
	bounced := time.Date(2025, 2, 20, 8, 0, 0, 0, time.UTC)
	now := bounced
	sup, err := suppress.Open(suppress.Options{Path: filepath.Join(t.TempDir(), "suppress.json"), For: 30 * 24 * time.Hour,
		Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"gone@elsewhere.example", "bob@example.test"} {
		if err := sup.Add(a, "550 5.1.1 user unknown"); err != nil {
			t.Fatal(err)
		}
	}
	now = testNow // 2025-03-04: still within the 30 days
	f := start(t, RoleSubmission, func(o *Options) { o.Suppression = sup })
	c := login(t, f.addr, "ann@example.test", "secret")
	wantCode(t, "MAIL", c.Mail("ann@example.test", nil), 0, "")
	err = c.Rcpt("gone@elsewhere.example", nil)
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

	// After SuppressFor the address may be tried again.
	now = bounced.Add(30 * 24 * time.Hour)
	c2 := login(t, f.addr, "ann@example.test", "secret")
	wantCode(t, "MAIL", c2.Mail("ann@example.test", nil), 0, "")
	wantCode(t, "expired", c2.Rcpt("gone@elsewhere.example", nil), 0, "")
}
