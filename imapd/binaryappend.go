package imapd

import (
	"bytes"
	"fmt"
	"io"

	"github.com/emersion/go-imap/v2"

	"postie/imapd/mimeparse"
)

// appendSource is what APPEND stores. A message sent as a literal8 (RFC 3516) may have binary parts,
// NULs included; they are stored base64 (mimeparse.EncodeBinaryParts), as Dovecot does, so that
// BODY[] answers stay valid literals while BINARY[] gives back the bytes sent. Such a message is
// read whole (it is within the APPEND limit); any other streams through.
func appendSource(r imap.LiteralReader, o *imap.AppendOptions) (io.Reader, error) {
	if !o.Binary {
		return r, nil
	}
	b := make([]byte, r.Size()) // (the library refused a literal over the APPEND limit)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("imapd: read binary APPEND: %w", err)
	}
	b, _ = mimeparse.EncodeBinaryParts(b)
	return bytes.NewReader(b), nil
}
