package imapserver

import (
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/internal/imapwire"
)

// SessionID is a session that answers ID (RFC 2971), in any state.
//
// ID is called with the client's fields (keys lower-cased, NIL values left out; nil for
// "ID NIL") and returns the server's, or nil to answer "* ID NIL".
type SessionID interface {
	ID(client map[string]string) *imap.IDData
}

// RFC 2971 §3.3: field strings are at most 30 octets, values at most 1024, at most 30 pairs.
const (
	maxIDPairs    = 30
	maxIDKeyLen   = 30
	maxIDValueLen = 1024
)

func (c *Conn) handleID(dec *imapwire.Decoder) error {
	var client map[string]string
	var bad string
	if !dec.ExpectSP() {
		return dec.Err()
	}
	err := dec.ExpectNList(func() error {
		var key, value string
		if !dec.ExpectString(&key) || !dec.ExpectSP() || !dec.ExpectNString(&value) {
			return dec.Err()
		}
		switch {
		case len(key) > maxIDKeyLen:
			bad = "ID field name too long"
		case len(value) > maxIDValueLen:
			bad = "ID field value too long"
		case len(client) >= maxIDPairs:
			bad = "Too many ID fields"
		}
		if client == nil {
			client = make(map[string]string)
		}
		if value != "" {
			client[strings.ToLower(key)] = value
		}
		return nil
	})
	if err != nil {
		return err
	}
	if !dec.ExpectCRLF() {
		return dec.Err()
	}
	if bad != "" {
		return newClientBugError(bad)
	}
	sess, ok := c.session.(SessionID)
	if !ok {
		return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Unknown command"}
	}
	return c.writeID(sess.ID(client))
}

func (c *Conn) writeID(data *imap.IDData) error {
	var pairs [][2]string
	if data != nil {
		for _, kv := range [...][2]string{
			{"name", data.Name}, {"version", data.Version}, {"os", data.OS},
			{"os-version", data.OSVersion}, {"vendor", data.Vendor},
			{"support-url", data.SupportURL}, {"address", data.Address}, {"date", data.Date},
			{"command", data.Command}, {"arguments", data.Arguments},
			{"environment", data.Environment},
		} {
			if kv[1] != "" {
				pairs = append(pairs, kv)
			}
		}
	}
	enc := newResponseEncoder(c)
	defer enc.end()
	enc.Atom("*").SP().Atom("ID").SP()
	if len(pairs) == 0 { // the grammar has no empty list
		enc.NIL()
		return enc.CRLF()
	}
	enc.Special('(')
	for i, kv := range pairs {
		if i > 0 {
			enc.SP()
		}
		enc.Quoted(kv[0]).SP().String(kv[1])
	}
	enc.Special(')')
	return enc.CRLF()
}
