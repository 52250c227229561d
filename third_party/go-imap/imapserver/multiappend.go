package imapserver

import (
	"fmt"
	"io"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/internal"
	"github.com/emersion/go-imap/v2/internal/imapwire"
)

// SessionAppendTx is a session whose APPEND may carry several messages (MULTIAPPEND, RFC 3502)
// and messages assembled from parts (CATENATE, RFC 4469, with SessionCatenate): all of them are
// appended, or none.
//
// BeginAppend starts the APPEND into mailbox (NO [TRYCREATE] when it does not exist). Each message
// is then written to the writer Message returns and closed; Commit appends them all and returns
// the UIDs; Abort (always called, also after Commit) drops whatever was not committed.
type SessionAppendTx interface {
	BeginAppend(mailbox string) (AppendTx, error)
}

// AppendTx is one APPEND command in progress; see SessionAppendTx.
type AppendTx interface {
	Message(options *imap.AppendOptions) (io.WriteCloser, error)
	Commit() (*MultiAppendData, error)
	Abort()
}

// MultiAppendData is the result of an APPEND: UIDPLUS's APPENDUID (RFC 4315 §3 allows a set for
// MULTIAPPEND). Nil: no APPENDUID.
type MultiAppendData struct {
	UIDValidity uint32
	UIDs        []imap.UID
}

// handleAppendExt answers APPEND: every message into a SessionAppendTx's transaction, or the one
// message of a session without it into Session.Append (plainAppendTx, append.go).
func (c *Conn) handleAppendExt(tag string, dec *imapwire.Decoder) error {
	var mailbox string
	if !dec.ExpectSP() || !dec.ExpectMailbox(&mailbox) {
		return dec.Err()
	}
	if err := c.checkState(imap.ConnStateAuthenticated); err != nil {
		return err
	}
	var tx AppendTx = &plainAppendTx{session: c.session, mailbox: mailbox}
	sess, isTx := c.session.(SessionAppendTx)
	if isTx {
		var err error
		if tx, err = sess.BeginAppend(mailbox); err != nil {
			return err
		}
	}
	defer tx.Abort()

	c.setReadTimeout(literalReadTimeout)
	defer c.setReadTimeout(cmdReadTimeout)
	multi := isTx && c.server.options.caps().Has(imap.CapMultiAppend)
	for n := 0; n == 0 || dec.SP(); n++ {
		if n == 0 && !dec.ExpectSP() {
			return dec.Err()
		}
		if n > 0 && !multi {
			return newClientBugError("MULTIAPPEND is not supported")
		}
		if err := c.appendMessage(dec, tx); err != nil {
			return err
		}
	}
	if !dec.ExpectCRLF() {
		return dec.Err()
	}
	data, err := tx.Commit()
	if err != nil {
		return err
	}
	if err := c.poll("APPEND"); err != nil {
		return err
	}
	return c.writeMultiAppendOK(tag, data)
}

// appendMessage reads one append-message (RFC 3502: [flag-list SP] [date-time SP] append-data)
// into tx.
func (c *Conn) appendMessage(dec *imapwire.Decoder, tx AppendTx) error {
	var options imap.AppendOptions
	hasFlagList, err := dec.List(func() error {
		flag, err := internal.ExpectFlag(dec)
		if err != nil {
			return err
		}
		options.Flags = append(options.Flags, flag)
		return nil
	})
	if err != nil {
		return err
	}
	if hasFlagList && !dec.ExpectSP() {
		return dec.Err()
	}
	t, err := internal.DecodeDateTime(dec)
	if err != nil {
		return err
	}
	if !t.IsZero() && !dec.ExpectSP() {
		return dec.Err()
	}
	options.Time = t

	var ext string
	utf8 := false
	if dec.Special('~') { // literal8 (BINARY)
		options.Binary = true
	} else if dec.Atom(&ext) {
		switch strings.ToUpper(ext) {
		case "UTF8": // RFC 6855: UTF8 (~{n}...)
			if !dec.ExpectSP() || !dec.ExpectSpecial('(') || !dec.ExpectSpecial('~') {
				return dec.Err()
			}
			utf8 = true
		case "CATENATE":
			return c.appendCatenate(dec, tx, &options)
		default:
			return newClientBugError("Unknown APPEND data extension")
		}
	}
	if plain, ok := tx.(*plainAppendTx); ok {
		err = c.appendPlain(dec, plain, &options)
	} else {
		err = c.appendToTx(dec, tx, &options)
	}
	if err != nil {
		return err
	}
	if utf8 && !dec.ExpectSpecial(')') {
		return dec.Err()
	}
	return nil
}

// appendToTx reads the message's literal into tx.
func (c *Conn) appendToTx(dec *imapwire.Decoder, tx AppendTx, options *imap.AppendOptions) error {
	w, err := tx.Message(options)
	if err != nil {
		return err
	}
	if _, err := c.appendLiteral(dec, w, c.appendLimit()); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

func (c *Conn) appendLimit() int64 {
	if s, ok := c.session.(SessionAppendLimit); ok {
		return int64(s.AppendLimit())
	}
	return defaultAppendLimit
}

// appendLiteral reads a literal (of at most limit bytes) into w and returns its size. A refused
// literal is not asked for (its synchronising "+" is not sent).
func (c *Conn) appendLiteral(dec *imapwire.Decoder, w io.Writer, limit int64) (int64, error) {
	lit, err := c.acceptAppendLiteral(dec, limit)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(w, lit)
	if err != nil {
		// The store failed: the literal is still read, so the command can be answered.
		io.Copy(io.Discard, lit)
		return n, err
	}
	return n, nil
}

// acceptAppendLiteral reads a literal's header and, if it is within limit, asks for the literal.
func (c *Conn) acceptAppendLiteral(dec *imapwire.Decoder, limit int64) (imap.LiteralReader, error) {
	lit, nonSync, err := dec.ExpectLiteralReader()
	if err != nil {
		return nil, err
	}
	if lit.Size() > limit {
		return nil, &imap.Error{
			Type: imap.StatusResponseTypeNo,
			Code: imap.ResponseCodeTooBig,
			Text: fmt.Sprintf("Messages are limited to %v bytes", c.appendLimit()),
		}
	}
	if err := c.acceptLiteral(lit.Size(), nonSync); err != nil {
		return nil, err
	}
	return lit, nil
}

func (c *Conn) writeMultiAppendOK(tag string, data *MultiAppendData) error {
	enc := newResponseEncoder(c)
	defer enc.end()
	enc.Atom(tag).SP().Atom("OK").SP()
	if data != nil && len(data.UIDs) > 0 {
		enc.Special('[')
		enc.Atom("APPENDUID").SP().Number(data.UIDValidity).SP().NumSet(imap.UIDSetNum(data.UIDs...))
		enc.Special(']').SP()
	}
	enc.Text("APPEND completed")
	return enc.CRLF()
}
