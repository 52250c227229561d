package imapd

import "postie/imapd/mimeparse"

// PREVIEW (RFC 8970): the preview is computed from the message when asked for (its first text
// part, mimeparse.Preview), not stored; LAZY changes nothing.

func (f *fetcher) preparePreview(m *message, p *prepared) error {
	if !f.opts.Preview {
		return nil
	}
	root, err := m.structure()
	if err != nil {
		return err
	}
	text, err := mimeparse.Preview(m.ra, root)
	if err != nil {
		return err
	}
	p.preview = &text
	return nil
}
