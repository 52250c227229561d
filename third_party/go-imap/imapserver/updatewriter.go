package imapserver

// UpdateWriter returns a writer of unsolicited updates for the command being handled, for a
// session that must send some before its own responses: a STORE that defines a keyword sends the
// FLAGS naming it before the FETCH responses that use it (RFC 3501 §7.2.6). Expunges are allowed
// only where the command allows them (not during FETCH, STORE, SEARCH).
func (c *Conn) UpdateWriter(allowExpunge bool) *UpdateWriter {
	return &UpdateWriter{conn: c, allowExpunge: allowExpunge}
}
