package webconf

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// mobileconfig serves an unsigned configuration profile with one
// com.apple.mail.managed payload: IMAP in, SMTP submission out.
func (s *Server) mobileconfig(w http.ResponseWriter, r *http.Request) {
	addr := r.URL.Query().Get("email")
	addr, _, err := s.parseAddress(addr)
	if err != nil {
		s.addressError(w, r, r.URL.Query().Get("email"), err)
		return
	}
	b, ok := s.Mobileconfig(addr)
	if !ok {
		http.Error(w, "no IMAP or submission listener to advertise", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/x-apple-aspen-config")
	w.Header().Set("Content-Disposition", `attachment; filename="`+profileFileName(addr)+`.mobileconfig"`)
	w.Write(b)
}

// profileFileName keeps the characters safe in a file name.
func profileFileName(addr string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_' || r == '@' {
			return r
		}
		return '_'
	}, addr)
}

// Mobileconfig returns the profile for addr (already checked to be ours);
// false when IMAP or submission has no port. Identifiers and UUIDs are
// derived from the host and the address, so the same address always gets
// the same profile (a re-import replaces rather than duplicates it).
func (s *Server) Mobileconfig(addr string) ([]byte, bool) {
	in, out := endpoints(s.opts.IMAP), endpoints(s.opts.Submission)
	if len(in) == 0 || len(out) == 0 {
		return nil, false
	}
	labels := strings.Split(s.opts.Host, ".")
	slices.Reverse(labels)
	sum := sha256.Sum256([]byte(s.opts.Host + "\x00" + addr))
	id := strings.Join(labels, ".") + ".postie.mail." + hex.EncodeToString(sum[:8])
	account := []plistEntry{
		{"EmailAccountDescription", str(addr)},
		{"EmailAccountName", str(addr)},
		{"EmailAccountType", str("EmailTypeIMAP")},
		{"EmailAddress", str(addr)},
		{"IncomingMailServerAuthentication", str("EmailAuthPassword")},
		{"IncomingMailServerHostName", str(s.opts.Host)},
		{"IncomingMailServerPortNumber", integer(in[0].port)},
		{"IncomingMailServerUseSSL", boolean(true)},
		{"IncomingMailServerUsername", str(addr)},
		{"OutgoingMailServerAuthentication", str("EmailAuthPassword")},
		{"OutgoingMailServerHostName", str(s.opts.Host)},
		{"OutgoingMailServerPortNumber", integer(out[0].port)},
		{"OutgoingMailServerUseSSL", boolean(true)},
		{"OutgoingMailServerUsername", str(addr)},
		{"OutgoingPasswordSameAsIncomingPassword", boolean(true)},
		{"PayloadDescription", str("Mail account " + addr)},
		{"PayloadDisplayName", str(addr)},
		{"PayloadIdentifier", str(id + ".account")},
		{"PayloadType", str("com.apple.mail.managed")},
		{"PayloadUUID", str(uuid(sum[16:32]))},
		{"PayloadVersion", integer(1)},
	}
	var b strings.Builder
	b.WriteString(xml.Header)
	b.WriteString(`<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">` + "\n")
	b.WriteString("<plist version=\"1.0\">\n<dict>\n<key>PayloadContent</key>\n<array>\n")
	writeDict(&b, account)
	b.WriteString("</array>\n")
	for _, e := range []plistEntry{
		{"PayloadDescription", str("Mail settings for " + addr + " at " + s.opts.Host)},
		{"PayloadDisplayName", str("Mail: " + addr)},
		{"PayloadIdentifier", str(id)},
		{"PayloadRemovalDisallowed", boolean(false)},
		{"PayloadType", str("Configuration")},
		{"PayloadUUID", str(uuid(sum[0:16]))},
		{"PayloadVersion", integer(1)},
	} {
		e.write(&b)
	}
	b.WriteString("</dict>\n</plist>\n")
	return []byte(b.String()), true
}

// plistEntry is one key and its already-encoded value element.
type plistEntry struct{ key, value string }

func (e plistEntry) write(b *strings.Builder) {
	b.WriteString("<key>" + e.key + "</key>\n" + e.value + "\n")
}

func writeDict(b *strings.Builder, entries []plistEntry) {
	b.WriteString("<dict>\n")
	for _, e := range entries {
		e.write(b)
	}
	b.WriteString("</dict>\n")
}

func str(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return "<string>" + b.String() + "</string>"
}

func integer(n int) string { return fmt.Sprintf("<integer>%d</integer>", n) }

func boolean(v bool) string {
	if v {
		return "<true/>"
	}
	return "<false/>"
}

// uuid formats 16 bytes as an RFC 9562 version 8 (custom) UUID.
func uuid(b []byte) string {
	var u [16]byte
	copy(u[:], b)
	u[6] = u[6]&0x0f | 0x80
	u[8] = u[8]&0x3f | 0x80
	h := hex.EncodeToString(u[:])
	return strings.ToUpper(h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32])
}
