package outbound

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"postie/envelope"
)

// outcome is the state a transaction leaves its connection in.
type outcome int

const (
	broken    outcome = iota // unusable: close without QUIT
	clean                    // the server is waiting for a command: QUIT
	delivered                // clean after an accepted message: may be reused
)

// transact runs one mail transaction on s for d's pending recipients and
// records their outcomes.
func (c *Client) transact(d *delivery, s *session) outcome {
	m := d.msg
	todo, utf8, err := plan(d, s)
	if err != nil {
		d.hostFailed(err)
		return clean
	}
	if len(todo) == 0 {
		return clean
	}
	if err := s.c.Mail(d.t.From, mailOptions(d, m, utf8)); err != nil {
		e := hostError(s.label, "MAIL FROM", err)
		if !isReply(err) {
			d.hostFailed(e)
			return broken
		}
		// A 5xx to MAIL rejects the message itself: final for all.
		if isTemporary(e) {
			d.hostFailed(e)
		} else {
			d.settleAll(e)
		}
		return clean
	}
	var accepted []int
	for _, i := range todo {
		err := s.c.Rcpt(d.t.To[i], rcptOptions(d.t.RcptParam(i)))
		switch {
		case err == nil:
			accepted = append(accepted, i)
		case isReply(err):
			c.apply(d, []int{i}, hostError(s.label, "RCPT TO", err))
		default:
			d.hostFailed(hostError(s.label, "RCPT TO", err))
			return broken
		}
	}
	if len(accepted) == 0 {
		return clean
	}
	return c.sendData(d, s, accepted)
}

// sendData sends the message to the accepted recipients and applies the
// server's verdict to them.
func (c *Client) sendData(d *delivery, s *session, accepted []int) outcome {
	m := d.msg
	w, err := s.c.Data()
	if err != nil {
		c.apply(d, accepted, hostError(s.label, "DATA", err))
		if isReply(err) {
			return clean
		}
		return broken
	}
	// go-smtp sets no deadline while the message streams: allow
	// CommandTimeout plus time for the size at a slow but honest rate.
	budget := c.opts.CommandTimeout + time.Duration(m.size/minTransferRate)*time.Second
	s.conn.SetDeadline(time.Now().Add(budget))
	if _, err := io.Copy(w, m.reader()); err != nil {
		// The final dot was not sent: the message is certainly not delivered.
		c.apply(d, accepted, fmt.Errorf("outbound: sending message to %s: %w", s.label, err))
		return broken
	}
	_, err = w.CloseWithResponse()
	switch {
	case err == nil:
		hasDSN, _ := s.c.Extension("DSN")
		for _, i := range accepted {
			d.settle(i, nil)
			if !hasDSN {
				d.t.SetNoDSN(i)
			}
		}
		c.log.Info("outbound: delivered", "host", s.label, "tls", s.tls, "rcpts", len(accepted), "size", m.size)
		return delivered
	case isReply(err):
		c.apply(d, accepted, hostError(s.label, "end of DATA", err))
		return clean
	default:
		// No reply after the final dot: the server may have taken the
		// message (RFC 1047). Retrying elsewhere now would risk a
		// duplicate; the queue retries later.
		e := fmt.Errorf("outbound: no reply from %s after the message was sent: %w", s.label, err)
		for _, i := range accepted {
			d.settle(i, e)
		}
		return broken
	}
}

// apply records err for recipients: final if permanent, retried at the
// next host otherwise.
func (c *Client) apply(d *delivery, idx []int, err error) {
	for _, i := range idx {
		if isTemporary(err) {
			d.deferRcpt(i, err)
		} else {
			d.settle(i, err)
		}
	}
}

// plan decides, before MAIL, what this host can take (REQUIRETLS,
// RFC 1870 SIZE, RFC 6531 SMTPUTF8): the recipients to send to and whether MAIL carries
// SMTPUTF8. A message over the host's SIZE, or one whose sender or header
// needs SMTPUTF8 at a host without it, fails the whole host; a non-ASCII
// recipient there fails alone. These failures are permanent, unless
// another host takes the message.
func plan(d *delivery, s *session) (todo []int, utf8 bool, err error) {
	m := d.msg
	if d.t.Params.RequireTLS {
		// RFC 8689 section 4.2.1: only over verified TLS, and only to a
		// host that takes the obligation on.
		if !s.verified {
			return nil, false, requireTLSError("TLS to %s is not verified", s.label)
		}
		if ok, _ := s.c.Extension("REQUIRETLS"); !ok {
			return nil, false, requireTLSError("%s does not support REQUIRETLS", s.label)
		}
	}
	if max, ok := s.c.MaxMessageSize(); ok && max > 0 && m.size > int64(max) {
		return nil, false, envelope.Errorf(552, 5, 3, 4, "message of %d bytes exceeds the limit of %d bytes at %s", m.size, max, s.label)
	}
	has, _ := s.c.Extension("SMTPUTF8")
	switch {
	case m.utf8 != "" && !has && m.utf8Header:
		return nil, false, envelope.Errorf(550, 5, 6, 9, "message has %s but %s does not support SMTPUTF8", m.utf8, s.label)
	case m.utf8 != "" && !has:
		return nil, false, envelope.Errorf(553, 5, 6, 7, "message needs SMTPUTF8 for %s but %s does not support it", m.utf8, s.label)
	}
	utf8 = m.utf8 != ""
	for _, i := range d.pending() {
		switch {
		case isASCII(d.t.To[i]):
			todo = append(todo, i)
		case has:
			todo = append(todo, i)
			utf8 = true
		default:
			d.deferRcpt(i, envelope.Errorf(553, 5, 6, 7,
				"recipient address %q needs SMTPUTF8 but %s does not support it", d.t.To[i], s.label))
		}
	}
	return todo, utf8, nil
}

// isReply reports whether err is an SMTP reply rather than a broken
// connection.
func isReply(err error) bool {
	var se *smtp.SMTPError
	return errors.As(err, &se)
}

// hostError turns what a host did into a delivery error: an SMTP reply
// becomes an *envelope.Error carrying the remote code and text, prefixed
// with the host that said it; anything else stays a plain (temporary)
// error.
func hostError(label, phase string, err error) error {
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		return fmt.Errorf("outbound: %s: %s: %w", label, phase, err)
	}
	text := oneLine(se.Message)
	if se.Code < 400 || se.Code > 599 {
		return envelope.Errorf(451, 4, 5, 0, "%s gave an unexpected reply to %s: %d %s", label, phase, se.Code, text)
	}
	enh := [3]int(se.EnhancedCode)
	if enh[0] != se.Code/100 || enh[1] < 0 || enh[2] < 0 || enh[1] > 999 || enh[2] > 999 {
		// Absent, inconsistent or out of RFC 3463's 1-3 digits: the
		// generic code.
		enh = [3]int{se.Code / 100, 0, 0}
	}
	host, _, _ := strings.Cut(label, "[") // "mx1.example.test[192.0.2.1]"
	return &envelope.Error{Code: se.Code, Enhanced: enh, Remote: host,
		Message: fmt.Sprintf("%s said: %s (in reply to %s)", label, text, phase)}
}

// oneLine flattens a multi-line reply and drops control characters, since
// the text ends up in logs and in DSNs.
func oneLine(s string) string {
	const max = 1000
	s = strings.Map(func(r rune) rune {
		switch {
		case r == '\n' || r == '\t':
			return ' '
		case r < ' ' || r == 0x7f:
			return -1
		}
		return r
	}, s)
	if len(s) > max {
		s = s[:max] + "..."
	}
	return strings.TrimSpace(s)
}

// mailOptions are MAIL's parameters: go-smtp's client sends RET and ENVID
// only to a host that advertises DSN, and REQUIRETLS always (it fails the
// command itself when the host lacks it).
func mailOptions(d *delivery, m *message, utf8 bool) *smtp.MailOptions {
	p := d.t.Params
	return &smtp.MailOptions{Size: m.size, UTF8: utf8, RequireTLS: p.RequireTLS,
		Return: smtp.DSNReturn(p.Ret), EnvelopeID: p.EnvID}
}

// rcptOptions are RCPT's DSN parameters, sent only to a host that
// advertises DSN; nil when the recipient has none.
func rcptOptions(p envelope.RcptParams) *smtp.RcptOptions {
	if p == (envelope.RcptParams{}) {
		return nil
	}
	o := &smtp.RcptOptions{}
	if p.Notify != 0 {
		for _, v := range strings.Split(p.Notify.String(), ",") {
			o.Notify = append(o.Notify, smtp.DSNNotify(v))
		}
	}
	if p.ORcpt != "" {
		o.OriginalRecipient = p.ORcpt
		o.OriginalRecipientType = smtp.DSNAddressTypeRFC822
		// go-smtp refuses a non-ASCII rfc822 address (a command error,
		// not a reply): such an address goes as utf-8-addr (RFC 6533).
		if strings.EqualFold(p.ORcptType, "utf-8") || !isASCII(p.ORcpt) {
			o.OriginalRecipientType = smtp.DSNAddressTypeUTF8
		}
	}
	return o
}
