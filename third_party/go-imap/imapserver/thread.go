package imapserver

import (
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/internal/imapwire"
)

// THREAD and UID THREAD (RFC 5256 §4).

// SessionThread is a session that supports THREAD and UID THREAD with the algorithms it advertises
// as THREAD=<name> capabilities.
type SessionThread interface {
	Session

	// Thread returns the threads of the messages that match criteria, numbered as kind says.
	// An algorithm the session does not know gets an error.
	Thread(kind NumKind, algorithm imap.ThreadAlgorithm, criteria *imap.SearchCriteria) ([]imap.ThreadData, error)
}

func (c *Conn) handleThread(dec *imapwire.Decoder, numKind NumKind) error {
	var alg string
	if !dec.ExpectSP() || !dec.ExpectAtom(&alg) || !dec.ExpectSP() {
		return dec.Err()
	}
	if err := readCharset(dec); err != nil {
		return err
	}
	if !dec.ExpectSP() {
		return dec.Err()
	}
	criteria, err := readSearchCriteria(dec)
	if err != nil {
		return err
	}
	if !dec.ExpectCRLF() {
		return dec.Err()
	}
	if err := c.checkState(imap.ConnStateSelected); err != nil {
		return err
	}
	algorithm := imap.ThreadAlgorithm(strings.ToUpper(alg))
	session, ok := c.session.(SessionThread)
	if !ok || !c.server.options.caps().Has(imap.Cap("THREAD="+string(algorithm))) {
		return newClientBugError("Unknown THREAD algorithm")
	}
	threads, err := session.Thread(numKind, algorithm, criteria)
	if err != nil {
		return err
	}
	enc := newResponseEncoder(c)
	defer enc.end()
	enc.Atom("*").SP().Atom("THREAD")
	if len(threads) > 0 {
		enc.SP()
	}
	for i := range threads {
		writeThread(enc.Encoder, &threads[i])
	}
	return enc.CRLF()
}

// writeThread writes one thread-list: "(3 6 (4 23)(44 7 96))". A single subthread continues the
// chain, as the grammar (thread-nested = 2*thread-list) requires.
func writeThread(enc *imapwire.Encoder, t *imap.ThreadData) {
	enc.Special('(')
	n := 0
	for {
		for _, num := range t.Chain {
			if n > 0 {
				enc.SP()
			}
			enc.Number(num)
			n++
		}
		if len(t.SubThreads) != 1 {
			break
		}
		t = &t.SubThreads[0]
	}
	if len(t.SubThreads) > 0 && n > 0 {
		enc.SP()
	}
	for i := range t.SubThreads {
		writeThread(enc, &t.SubThreads[i])
	}
	enc.Special(')')
}
