package imapserver

import (
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/internal/imapwire"
)

// PREVIEW (RFC 8970): FETCH PREVIEW, with the LAZY modifier accepted (the session may compute
// the preview or answer NIL). It is advertised when Options.Caps has imap.CapPreview.

// readPreviewModifiers reads PREVIEW's optional modifiers: SP "(" "LAZY" *(SP "LAZY") ")".
func readPreviewModifiers(dec *imapwire.Decoder, options *imap.FetchOptions) error {
	options.Preview = true
	// A modifier list follows only as " (": a following fetch-att never starts with "(".
	if !dec.SPBefore('(') {
		return nil
	}
	mods := 0
	_, err := dec.List(func() error {
		mods++
		var mod string
		if !dec.ExpectAtom(&mod) {
			return dec.Err()
		}
		if !strings.EqualFold(mod, "LAZY") {
			return newClientBugError("Unknown PREVIEW modifier")
		}
		return nil
	})
	if err == nil && mods == 0 {
		err = newClientBugError("Empty PREVIEW modifier list")
	}
	return err
}

// WritePreview writes the message's PREVIEW; nil is NIL (no preview available).
func (w *FetchResponseWriter) WritePreview(text *string) {
	w.writeItemSep()
	w.enc.Atom("PREVIEW").SP()
	if text == nil {
		w.enc.NIL()
	} else {
		w.enc.String(*text)
	}
}
