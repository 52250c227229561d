package imapd

// syncFlagsNow brings the keyword names of the selected mailbox up to date and sends this session's
// pending updates at once (no expunges: they wait for a command that allows them), so that a FLAGS
// naming a keyword just defined goes out before the FETCH responses that use it (RFC 3501 §7.2.6:
// the client learns a keyword from FLAGS; imaptest logs "Keyword used without being in FLAGS").
func (s *session) syncFlagsNow(sel *selection) error {
	sel.entry.sync()
	return sel.st.Poll(s.conn.UpdateWriter(false), false)
}
