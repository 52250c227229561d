package outbound

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strings"

	"postie/envelope"
)

// message is what one Deliver sends: the body as stored, preceded by a
// DKIM-Signature field when we sign.
type message struct {
	body     io.ReaderAt
	bodySize int64
	sig      string // DKIM-Signature header field with its CRLF, or ""
	size     int64  // bytes sent: len(sig) + bodySize
	// utf8 says why the whole message needs SMTPUTF8 (a non-ASCII sender
	// or header), "" if it does not; utf8Header is set for the header case.
	// Non-ASCII recipients are handled one by one.
	utf8       string
	utf8Header bool
	// tlsOptional: the header has "TLS-Required: No" (RFC 8689 section
	// 5), the sender's wish that the recipient domain's TLS policy not
	// stop delivery.
	tlsOptional bool
}

func (m *message) reader() io.Reader {
	return io.MultiReader(strings.NewReader(m.sig), io.NewSectionReader(m.body, 0, m.bodySize))
}

// prepare inspects the message once before any connection: what SMTPUTF8
// it needs and, when we hold a key, its DKIM signature.
func (c *Client) prepare(from string, rcpts []string, body io.ReaderAt, size int64) (*message, error) {
	m := &message{body: body, bodySize: size, size: size}
	hdr, err := scanHeader(io.NewSectionReader(body, 0, size))
	if err != nil {
		return nil, fmt.Errorf("outbound: read message: %w", err)
	}
	switch {
	case !isASCII(from):
		m.utf8 = fmt.Sprintf("the non-ASCII sender address %q", from)
	case hdr.eightBit:
		m.utf8, m.utf8Header = "non-ASCII header fields", true
	}
	m.tlsOptional = hdr.tlsRequiredNo
	if err := c.sign(m, from, hdr.fromDomain); err != nil {
		return nil, err
	}
	return m, nil
}

// sign computes the DKIM signature when the Signer has a key for the
// From: header's domain (what DMARC aligns with) or else the envelope
// sender's domain. The message is read here once and again when sent, so
// it is never held in memory.
func (c *Client) sign(m *message, from, headerDomain string) error {
	s := c.opts.Signer
	if s == nil {
		return nil
	}
	_, envDomain := envelope.Split(from)
	for _, domain := range []string{headerDomain, envDomain} {
		if domain == "" {
			continue
		}
		r := &errReader{r: io.NewSectionReader(m.body, 0, m.bodySize)}
		// Signature looks the key up once and reads nothing without one.
		sig, err := s.Signature(r, domain)
		if err != nil {
			if r.err != nil {
				return fmt.Errorf("outbound: read message: %w", r.err)
			}
			// A message go-msgauth cannot parse still deserves delivery;
			// the receiver judges it unsigned.
			c.log.Warn("outbound: cannot DKIM-sign, sending unsigned", "domain", domain, "err", err)
			return nil
		}
		if sig != "" {
			m.sig = sig
			m.size += int64(len(sig))
			return nil
		}
	}
	return nil
}

// errReader remembers a read error, to tell an I/O failure (temporary)
// from a message the signer rejects.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) && e.err == nil {
		e.err = err
	}
	return n, err
}

// headerInfo is what delivery needs from the header section.
type headerInfo struct {
	fromDomain string // domain of the first From: address, lower-cased; "" if none or unparsable
	eightBit   bool   // some header byte is not ASCII (RFC 6532)
	// tlsRequiredNo: a TLS-Required field says "No" (RFC 8689 section 5).
	tlsRequiredNo bool
}

// maxFieldKeep bounds how much of the From: field is kept for parsing;
// the rest of the header is scanned without being kept.
const maxFieldKeep = 8 << 10

// scanHeader reads the header section (up to the first empty line or the
// end) and reports whether it has 8-bit bytes and the From: domain. It
// accepts anything: the message came from the network.
func scanHeader(r io.Reader) (headerInfo, error) {
	var info headerInfo
	br := bufio.NewReaderSize(r, 4096)
	var from, tlsReq []byte
	inFrom, sawFrom := false, false
	inTLSReq, sawTLSReq := false, false
	for {
		line, eof, err := readLine(br, &info.eightBit)
		if err != nil {
			return info, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break // end of header (or of the message)
		}
		if line[0] == ' ' || line[0] == '\t' {
			if inFrom && len(from) < maxFieldKeep {
				from = append(from, line...)
			}
			if inTLSReq && len(tlsReq) < maxFieldKeep {
				tlsReq = append(tlsReq, line...)
			}
		} else {
			inFrom, inTLSReq = false, false
			if !sawFrom && len(line) >= 5 && strings.EqualFold(string(line[:5]), "from:") {
				inFrom, sawFrom = true, true
				from = append(from, line[5:]...)
			}
			if name, value, ok := bytes.Cut(line, []byte(":")); ok && !sawTLSReq &&
				strings.EqualFold(string(bytes.TrimRight(name, " \t")), "TLS-Required") {
				inTLSReq, sawTLSReq = true, true
				tlsReq = append(tlsReq, value...)
			}
		}
		if eof {
			break
		}
	}
	info.fromDomain = addressDomain(string(from))
	info.tlsRequiredNo = sawTLSReq && strings.EqualFold(strings.TrimSpace(string(tlsReq)), "no")
	return info, nil
}

// readLine reads one physical line, keeping at most maxFieldKeep bytes of
// it but checking all of it for 8-bit bytes. eof reports the last line.
func readLine(br *bufio.Reader, eightBit *bool) (line []byte, eof bool, err error) {
	for {
		chunk, err := br.ReadSlice('\n')
		if !*eightBit && !isASCII(string(chunk)) {
			*eightBit = true
		}
		if room := maxFieldKeep - len(line); room > 0 {
			line = append(line, chunk[:min(len(chunk), room)]...)
		}
		switch {
		case err == nil:
			return line, false, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			return line, true, nil
		default:
			return nil, false, err
		}
	}
}

// addressDomain returns the lower-cased domain of the first address in a
// From: field value, or "" when it cannot be parsed.
func addressDomain(v string) string {
	list, err := mail.ParseAddressList(strings.TrimSpace(v))
	if err != nil || len(list) == 0 {
		return ""
	}
	_, d := envelope.Split(list[0].Address)
	return envelope.CanonDomain(d)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
