package imapwire

// SPBefore reads SP when ch follows it, and reports whether it did: an optional argument that
// starts with ch after a space, where the space may also separate the next item (FETCH's
// PREVIEW (LAZY) inside a list of fetch attributes).
func (dec *Decoder) SPBefore(ch byte) bool {
	if dec.err != nil {
		return false
	}
	b, err := dec.r.Peek(2)
	if err != nil || b[0] != ' ' || b[1] != ch {
		return false
	}
	return dec.SP()
}
