package queue

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"

	"postie/envelope"
)

// maxReportHeaders bounds the original header block copied into a DSN.
const maxReportHeaders = 64 << 10

// report is what a DSN says.
type report struct {
	hostname string
	queueID  string
	dsnID    string
	sender   string
	arrival  time.Time
	now      time.Time
	delayed  bool // a delay notice rather than a bounce
	lifetime time.Duration
	waited   time.Duration
	rcpts    []RcptState
	headers  []byte // the original header block, CRLF lines; may be empty
	envID    string // the sender's ENVID, for Original-Envelope-Id; "" if none
	// full is the whole original message, returned as message/rfc822
	// instead of headers: RET=FULL on a bounce, within maxReturnFull.
	full []byte
}

// maxReturnFull bounds the message a RET=FULL bounce returns whole; a
// larger one comes back as its headers, as with RET=HDRS.
const maxReturnFull = 1 << 20

// newReport gathers what the DSN for job says: the recipients, the
// message's ENVID, and the original headers, or for a bounce with
// RET=FULL the whole message when it is small enough.
func (q *Queue) newReport(it *item, job *noticeJob, dsnID string, now time.Time) (*report, error) {
	rep := &report{
		hostname: q.opts.Hostname, queueID: it.st.ID, dsnID: dsnID, sender: it.st.From,
		arrival: it.st.Created, now: now, delayed: job.delayed, rcpts: job.rcpts,
		lifetime: q.opts.Lifetime, waited: now.Sub(it.st.Created), envID: it.st.DSNEnvID,
	}
	path := filepath.Join(q.dir, it.st.ID+msgExt)
	// A REQUIRETLS message's bounce returns its headers only, whatever
	// RET says (RFC 8689 section 5): the bounce may travel less safely.
	if rep.failures() && it.st.Ret == envelope.RetFull && !it.st.RequireTLS && it.st.Size <= maxReturnFull {
		full, err := os.ReadFile(path)
		switch {
		case err == nil:
			rep.full = full
			return rep, nil
		case !os.IsNotExist(err):
			return nil, fmt.Errorf("reading the original message: %w", err)
		}
	}
	var err error
	rep.headers, err = readHeaders(path, maxReportHeaders)
	if err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("reading the original headers: %w", err)
	}
	return rep, nil
}

// failures reports whether the DSN tells of a failure (a bounce), rather
// than only of successes or a delay.
func (rep *report) failures() bool {
	if rep.delayed {
		return false
	}
	for _, r := range rep.rcpts {
		if r.Status != StatusNotify {
			return true
		}
	}
	return false
}

// action is a recipient's Action field (RFC 3464 §2.3.3).
func (rep *report) action(r RcptState) string {
	switch {
	case rep.delayed:
		return "delayed"
	case r.Status == StatusNotify && r.Relayed:
		return "relayed"
	case r.Status == StatusNotify:
		return "delivered"
	}
	return "failed"
}

// writeReport writes an RFC 3464 delivery status notification: a
// multipart/report (RFC 6522) with a text part for people, a
// message/delivery-status part, and the original headers as
// text/rfc822-headers.
func writeReport(w io.Writer, rep *report) error {
	// go-message writes fields last added first: they are added bottom up.
	var h mail.Header
	var boundary [16]byte
	rand.Read(boundary[:])
	h.SetContentType("multipart/report", map[string]string{
		"report-type": "delivery-status", "boundary": "=_" + hex.EncodeToString(boundary[:]),
	})
	h.Set("MIME-Version", "1.0")
	h.Set("Auto-Submitted", "auto-replied") // RFC 3834 §5: never answer this automatically
	h.SetMessageID(rep.dsnID + "@" + rep.hostname)
	h.SetDate(rep.now)
	switch {
	case rep.delayed:
		h.SetSubject("Delayed Mail (still being retried)")
	case rep.failures():
		h.SetSubject("Undelivered Mail Returned to Sender")
	default:
		h.SetSubject("Successful Mail Delivery Report")
	}
	h.SetAddressList("To", []*mail.Address{{Address: rep.sender}})
	h.SetAddressList("From", []*mail.Address{{Name: "Mail Delivery System", Address: "MAILER-DAEMON@" + rep.hostname}})
	mw, err := message.CreateWriter(w, h.Header)
	if err != nil {
		return err
	}

	text := humanText(rep)
	err = writePart(mw, "text/plain", map[string]string{"charset": "utf-8"}, "Notification",
		transferEncoding(text, "quoted-printable"), text)
	if err == nil {
		err = writePart(mw, "message/delivery-status", nil, "Delivery report", "7bit", statusFields(rep))
	}
	switch {
	case err != nil:
	case rep.full != nil:
		full := string(rep.full) // up to maxReturnFull: copied once
		err = writePart(mw, "message/rfc822", nil, "Undelivered message", transferEncoding(full, "8bit"), full)
	case len(rep.headers) > 0:
		desc := "Undelivered message headers"
		if !rep.failures() && !rep.delayed {
			desc = "Delivered message headers"
		}
		err = writePart(mw, "text/rfc822-headers", nil, desc,
			transferEncoding(string(rep.headers), "8bit"), string(rep.headers))
	}
	if err != nil {
		return err
	}
	return mw.Close()
}

func writePart(mw *message.Writer, mediaType string, params map[string]string, desc, cte, body string) error {
	var h message.Header
	h.Set("Content-Transfer-Encoding", cte)
	h.Set("Content-Description", desc)
	h.SetContentType(mediaType, params)
	pw, err := mw.CreatePart(h)
	if err != nil {
		return err
	}
	if _, err := io.WriteString(pw, body); err != nil {
		return err
	}
	return pw.Close()
}

func transferEncoding(s, nonASCII string) string {
	if isASCII(s) {
		return "7bit"
	}
	return nonASCII
}

// humanText is the part a person reads: what happened, to whom, and what
// the remote server said.
func humanText(rep *report) string {
	var b strings.Builder
	fmt.Fprintf(&b, "This is the mail system at host %s.\r\n\r\n", rep.hostname)
	if rep.delayed {
		fmt.Fprintf(&b, "Your message has not yet been delivered to the recipients below; it\r\n"+
			"has been waiting for %s. The mail system will keep trying until\r\n%s.\r\n"+
			"You do not need to send it again.\r\n\r\n",
			humanDuration(rep.waited.Round(time.Minute)), rep.arrival.Add(rep.lifetime).Format(time.RFC1123Z))
	} else if rep.failures() {
		b.WriteString("Your message could not be delivered to one or more recipients.\r\n" +
			"It is attached below, or its headers. For help, please contact your\r\n" +
			"mail administrator.\r\n\r\n")
	} else {
		b.WriteString("Your message was delivered to the recipients below, as you asked\r\n" +
			"to be told. Its headers are attached.\r\n\r\n")
	}
	for _, r := range rep.rcpts {
		line := humanLine(rep.delayed, r)
		switch rep.action(r) {
		case "delivered":
			line = "delivered to the mailbox"
		case "relayed":
			line = "relayed to a mail system that sends no delivery notices; no further notice will come"
		}
		fmt.Fprintf(&b, "<%s>: %s\r\n", r.Addr, line)
		b.WriteString(explainBlock(r.Reply)) // what a known receiver refusal means (explain.go)
	}
	return b.String()
}

func humanLine(delayed bool, r RcptState) string {
	last := r.Reply
	if last == "" {
		last = r.LastError
	}
	if r.RemoteMTA != "" && r.Reply != "" {
		last = "host " + r.RemoteMTA + " said: " + r.Reply
	}
	last = cleanText(last)
	switch {
	case delayed && last == "":
		return "not yet attempted"
	case delayed:
		return "the last attempt failed: " + last
	case r.Reason != "" && last != "":
		return r.Reason + "; the last attempt failed: " + last
	case r.Reason != "":
		return r.Reason
	}
	return last
}

// statusFields is the message/delivery-status body (RFC 3464 §2): the
// per-message fields, then one block per recipient.
func statusFields(rep *report) string {
	var b strings.Builder
	field := func(name, value string) { b.WriteString(name + ": " + value + "\r\n") }
	field("Reporting-MTA", "dns; "+fieldText(rep.hostname))
	if id := fieldText(rep.envID); id != "" {
		field("Original-Envelope-Id", id)
	}
	field("X-Postie-Queue-ID", rep.queueID)
	field("Arrival-Date", rep.arrival.Format(time.RFC1123Z))
	for _, r := range rep.rcpts {
		b.WriteString("\r\n")
		if typ, addr, ok := strings.Cut(r.ORcpt, ";"); ok && addr != "" {
			field("Original-Recipient", typedAddress(typ, "", addr))
		}
		field("Final-Recipient", typedAddress("rfc822", " ", r.Addr))
		status := r.DSNStatus
		action := rep.action(r)
		field("Action", action)
		switch action {
		case "delayed":
			if !strings.HasPrefix(status, "4.") {
				status = "4.0.0"
			}
		case "failed":
			if !strings.HasPrefix(status, "5.") {
				status = "5.0.0"
			}
		default:
			status = "2.0.0"
		}
		field("Status", status)
		if host := fieldText(r.RemoteMTA); host != "" {
			field("Remote-MTA", "dns; "+host)
		}
		if reply := fieldText(r.Reply); reply != "" && r.Status != StatusNotify {
			field("Diagnostic-Code", "smtp; "+reply)
		}
		if !r.LastAttempt.IsZero() {
			field("Last-Attempt-Date", r.LastAttempt.Format(time.RFC1123Z))
		}
		if rep.delayed {
			field("Will-Retry-Until", rep.arrival.Add(rep.lifetime).Format(time.RFC1123Z))
		}
	}
	return b.String()
}

// typedAddress is the value of an Original- or Final-Recipient field,
// "rfc822;bob@example.com" (sep between the type and the address). A
// non-ASCII address goes as type utf-8 in utf-8-addr-xtext (RFC 6533
// section 3), which a message/delivery-status part, being 7bit, needs:
// "utf-8; \x{E9}l\x{E8}ve@example.com".
func typedAddress(typ, sep, addr string) string {
	if strings.EqualFold(typ, "rfc822") && isASCII(addr) {
		return fieldText(typ) + ";" + sep + fieldText(addr)
	}
	var b strings.Builder
	for _, r := range strings.ToValidUTF8(addr, "\uFFFD") {
		switch {
		case r > ' ' && r < 0x7f && r != '+' && r != '=' && r != '\\':
			b.WriteRune(r)
		case r < 0x80:
			fmt.Fprintf(&b, "\\x{%02X}", r)
		default:
			fmt.Fprintf(&b, "\\x{%X}", r)
		}
	}
	return "utf-8;" + sep + fieldText(b.String())
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// fieldText makes text from the network safe for a header field value:
// printable ASCII on one line, at most 900 octets (RFC 5322 §2.1.1
// allows 998).
func fieldText(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c < ' ' || c >= 0x7f {
			if c == '\r' || c == '\n' || c == '\t' {
				b[i] = ' '
			} else {
				b[i] = '?'
			}
		}
	}
	s = strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 900 {
		s = s[:900]
	}
	return s
}

// cleanText makes text from the network safe for one line of the text
// part: valid UTF-8 without control characters.
func cleanText(s string) string {
	s = strings.ToValidUTF8(s, "?")
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return ' '
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 900 {
		s = s[:900]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
	}
	return s
}

// readHeaders reads the header block of the message at path, as CRLF
// lines, without the blank line that ends it, up to max octets (whole
// lines only).
func readHeaders(path string, max int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 4096)
	var out bytes.Buffer
	for {
		line, err := br.ReadSlice('\n')
		if err != nil && err != io.EOF && err != bufio.ErrBufferFull {
			return nil, err
		}
		line = bytes.TrimRight(line, "\r\n")
		// A line longer than RFC 5322 allows (998) is not a header line
		// we can pass on: stop there.
		if len(line) == 0 || len(line) > 998 || out.Len()+len(line)+2 > max {
			break
		}
		out.Write(line)
		out.WriteString("\r\n")
		if err != nil {
			break
		}
	}
	return out.Bytes(), nil
}

// humanDuration writes whole days as days, the rest as Go does.
func humanDuration(d time.Duration) string {
	const day = 24 * time.Hour
	switch {
	case d == day:
		return "1 day"
	case d > day && d%day == 0:
		return fmt.Sprintf("%d days", d/day)
	}
	return d.String()
}
