package imapserver

import (
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/internal/imapwire"
)

// NOTIFY (RFC 5465). The engine parses and checks the command; the session keeps the
// notifications asked for and sends them through the UpdateWriter of its polls and IDLE.

// The events of RFC 5465 §5, as they are named in the command.
const (
	NotifyMessageNew            = "MessageNew"
	NotifyMessageExpunge        = "MessageExpunge"
	NotifyFlagChange            = "FlagChange"
	NotifyAnnotationChange      = "AnnotationChange"
	NotifyMailboxName           = "MailboxName"
	NotifySubscriptionChange    = "SubscriptionChange"
	NotifyMailboxMetadataChange = "MailboxMetadataChange"
	NotifyServerMetadataChange  = "ServerMetadataChange"
)

// The filters of RFC 5465 §6 (filter-mailboxes), upper case.
const (
	NotifySelected        = "SELECTED"
	NotifySelectedDelayed = "SELECTED-DELAYED"
	NotifyInboxes         = "INBOXES"
	NotifyPersonal        = "PERSONAL"
	NotifySubscribed      = "SUBSCRIBED"
	NotifySubtree         = "SUBTREE"
	NotifyMailboxes       = "MAILBOXES"
)

// NotifyGroup is one event-group: a filter and its events.
type NotifyGroup struct {
	Filter    string   // one of the Notify* filters
	Mailboxes []string // SUBTREE and MAILBOXES
	Events    []string // canonical names (the Notify* events); empty for NONE
	// Fetch holds MessageNew's fetch attributes (SELECTED and SELECTED-DELAYED only); nil when
	// none were given. Write them with UpdateWriter.NotifyFetchWriter.
	Fetch        *imap.FetchOptions
	fetchOptions fetchWriterOptions
}

// Has tells whether the group asks for the event.
func (g *NotifyGroup) Has(event string) bool {
	for _, e := range g.Events {
		if e == event {
			return true
		}
	}
	return false
}

// NotifyOptions is a NOTIFY SET command.
type NotifyOptions struct {
	Status bool // the STATUS indicator: report the current state at once
	Groups []NotifyGroup
}

// SessionNotify is a session that supports NOTIFY. Notify is called with nil for NOTIFY NONE;
// w may be used to send the initial STATUS responses.
type SessionNotify interface {
	Notify(w *UpdateWriter, options *NotifyOptions) error
}

// NotifySupportedEvents are the events a session is assumed to support (BADEVENT lists them).
var NotifySupportedEvents = []string{NotifyMessageNew, NotifyMessageExpunge, NotifyFlagChange, NotifyMailboxName, NotifySubscriptionChange}

func (c *Conn) handleNotify(dec *imapwire.Decoder) error {
	var sub string
	if !dec.ExpectSP() || !dec.ExpectAtom(&sub) {
		return dec.Err()
	}
	var options *NotifyOptions
	switch strings.ToUpper(sub) {
	case "NONE":
	case "SET":
		options = &NotifyOptions{}
		if !dec.ExpectSP() {
			return dec.Err()
		}
		var status string
		if dec.Atom(&status) {
			if !dec.Expect(strings.EqualFold(status, "STATUS"), "STATUS") || !dec.ExpectSP() {
				return dec.Err()
			}
			options.Status = true
		}
		for {
			var g NotifyGroup
			if err := dec.ExpectList(func() error { return readNotifyGroup(dec, &g) }); err != nil {
				return err
			}
			options.Groups = append(options.Groups, g)
			if !dec.SP() {
				break
			}
		}
	default:
		return newClientBugError("NOTIFY needs SET or NONE")
	}
	if !dec.ExpectCRLF() {
		return dec.Err()
	}
	if err := c.checkState(imap.ConnStateAuthenticated); err != nil {
		return err
	}
	sess, ok := c.session.(SessionNotify)
	if !ok || !c.server.options.caps().Has(imap.CapNotify) {
		return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Unknown command"}
	}
	if options != nil {
		if err := checkNotify(options); err != nil {
			return err
		}
	}
	return sess.Notify(&UpdateWriter{conn: c, allowExpunge: true}, options)
}

// readNotifyGroup reads the inside of an event-group: filter-mailboxes SP events.
func readNotifyGroup(dec *imapwire.Decoder, g *NotifyGroup) error {
	if !dec.ExpectAtom(&g.Filter) || !dec.ExpectSP() {
		return dec.Err()
	}
	g.Filter = strings.ToUpper(g.Filter)
	switch g.Filter {
	case NotifySelected, NotifySelectedDelayed, NotifyInboxes, NotifyPersonal, NotifySubscribed:
	case NotifySubtree, NotifyMailboxes:
		isList, err := dec.List(func() error {
			var name string
			if !dec.ExpectMailbox(&name) {
				return dec.Err()
			}
			g.Mailboxes = append(g.Mailboxes, name)
			return nil
		})
		if err != nil {
			return err
		}
		if !isList {
			var name string
			if !dec.ExpectMailbox(&name) {
				return dec.Err()
			}
			g.Mailboxes = append(g.Mailboxes, name)
		}
		if len(g.Mailboxes) == 0 || !dec.ExpectSP() {
			return dec.Err()
		}
	default:
		return newClientBugError("Unknown NOTIFY filter " + g.Filter)
	}
	var none string
	if dec.Atom(&none) {
		if !dec.Expect(strings.EqualFold(none, "NONE"), "NONE") {
			return dec.Err()
		}
		return nil
	}
	return readNotifyEvents(dec, g)
}

// readNotifyEvents reads "(" event *(SP event) ")", MessageNew possibly followed by its fetch
// attributes.
func readNotifyEvents(dec *imapwire.Decoder, g *NotifyGroup) error {
	if !dec.ExpectSpecial('(') {
		return dec.Err()
	}
	for {
		var name string
		if !dec.ExpectAtom(&name) {
			return dec.Err()
		}
		g.Events = append(g.Events, canonicalEvent(name))
		if dec.Special(')') {
			return nil
		}
		if !dec.ExpectSP() {
			return dec.Err()
		}
		if !strings.EqualFold(name, NotifyMessageNew) {
			continue
		}
		opts := &imap.FetchOptions{}
		g.fetchOptions = fetchWriterOptions{obsolete: make(map[*imap.FetchItemBodySection]string)}
		isList, err := dec.List(func() error {
			att, err := readFetchAttName(dec)
			if err != nil {
				return err
			}
			return handleFetchAtt(dec, att, opts, &g.fetchOptions)
		})
		if err != nil {
			return err
		}
		if !isList {
			continue // the SP was before the next event
		}
		g.Fetch = opts
		if dec.Special(')') {
			return nil
		}
		if !dec.ExpectSP() {
			return dec.Err()
		}
	}
}

func canonicalEvent(name string) string {
	for _, e := range []string{NotifyMessageNew, NotifyMessageExpunge, NotifyFlagChange, NotifyAnnotationChange,
		NotifyMailboxName, NotifySubscriptionChange, NotifyMailboxMetadataChange, NotifyServerMetadataChange} {
		if strings.EqualFold(name, e) {
			return e
		}
	}
	return name
}

// checkNotify applies RFC 5465's rules: unsupported events are NO [BADEVENT]; SELECTED takes
// message events only, MessageNew and MessageExpunge together, FlagChange only with them; fetch
// attributes only for SELECTED.
func checkNotify(o *NotifyOptions) error {
	supported := map[string]bool{}
	for _, e := range NotifySupportedEvents {
		supported[e] = true
	}
	for i := range o.Groups {
		g := &o.Groups[i]
		for _, e := range g.Events {
			if !supported[e] {
				return &imap.Error{
					Type: imap.StatusResponseTypeNo,
					Code: imap.ResponseCode("BADEVENT (" + strings.Join(NotifySupportedEvents, " ") + ")"),
					Text: "Unsupported event " + e,
				}
			}
		}
		selected := g.Filter == NotifySelected || g.Filter == NotifySelectedDelayed
		if g.Fetch != nil && !selected {
			return newClientBugError("MessageNew fetch attributes are for SELECTED only")
		}
		if !selected || len(g.Events) == 0 {
			continue
		}
		if g.Has(NotifyMailboxName) || g.Has(NotifySubscriptionChange) {
			return newClientBugError("SELECTED takes message events only")
		}
		if g.Has(NotifyMessageNew) != g.Has(NotifyMessageExpunge) {
			return newClientBugError("MessageNew and MessageExpunge go together")
		}
		if g.Has(NotifyFlagChange) && !g.Has(NotifyMessageNew) {
			return newClientBugError("FlagChange needs MessageNew and MessageExpunge")
		}
	}
	return nil
}

// WriteMailboxStatus writes an unsolicited STATUS response with the items options asks for.
func (w *UpdateWriter) WriteMailboxStatus(data *imap.StatusData, options *imap.StatusOptions) error {
	return w.conn.writeStatus(data, options)
}

// WriteMailboxList writes an unsolicited LIST response (MailboxName, SubscriptionChange).
func (w *UpdateWriter) WriteMailboxList(data *imap.ListData) error {
	return w.conn.writeList(data)
}

// NotifyFetchWriter writes the FETCH responses of a group's MessageNew fetch attributes.
func (w *UpdateWriter) NotifyFetchWriter(g *NotifyGroup) *FetchWriter {
	return &FetchWriter{conn: w.conn, options: g.fetchOptions}
}
