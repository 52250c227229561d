package imapserver

import (
	"io"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/internal/imapwire"
)

// defaultAppendLimit is the default maximum size of an APPEND payload.
const defaultAppendLimit = 100 * 1024 * 1024 // 100MiB

// APPEND has one parser, handleAppendExt (multiappend.go). A session without SessionAppendTx gets
// a plainAppendTx: its one message is handed to Session.Append as the literal is read, and
// MULTIAPPEND and CATENATE are refused.

// plainAppendTx is the AppendTx of a session that has only Session.Append.
type plainAppendTx struct {
	session Session
	mailbox string
	data    *imap.AppendData
}

// Message is CATENATE's way in, which Session.Append cannot take.
func (tx *plainAppendTx) Message(*imap.AppendOptions) (io.WriteCloser, error) {
	return nil, newClientBugError("CATENATE is not supported")
}

func (tx *plainAppendTx) Commit() (*MultiAppendData, error) {
	if tx.data == nil || tx.data.UID == 0 {
		return nil, nil
	}
	return &MultiAppendData{UIDValidity: tx.data.UIDValidity, UIDs: []imap.UID{tx.data.UID}}, nil
}

func (tx *plainAppendTx) Abort() {}

// appendPlain reads the message's literal into Session.Append.
func (c *Conn) appendPlain(dec *imapwire.Decoder, tx *plainAppendTx, options *imap.AppendOptions) error {
	lit, err := c.acceptAppendLiteral(dec, c.appendLimit())
	if err != nil {
		return err
	}
	data, err := tx.session.Append(tx.mailbox, lit, options)
	if _, discardErr := io.Copy(io.Discard, lit); discardErr != nil && err == nil {
		err = discardErr
	}
	tx.data = data
	return err
}
