package imapserver

import (
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/internal/imapwire"
)

// QuotaResource is one resource of a quota root: its usage and limit, in the resource's unit
// (STORAGE in units of 1024 octets, MESSAGE in messages; RFC 9208 §5).
type QuotaResource struct {
	Name  imap.QuotaResourceType
	Usage int64
	Limit int64
}

// QuotaRoot is a quota root and its resources.
type QuotaRoot struct {
	Name      string
	Resources []QuotaResource
}

// SessionQuota is a session that answers the QUOTA extension's commands (RFC 9208).
//
// GetQuota returns the root named, or an error (NO [NONEXISTENT] when there is no such root).
// GetQuotaRoot returns the roots of a mailbox (possibly none) with their resources. SetQuota is
// SETQUOTA; a server where quotas are set elsewhere returns a NO.
type SessionQuota interface {
	GetQuota(root string) (*QuotaRoot, error)
	GetQuotaRoot(mailbox string) ([]QuotaRoot, error)
	SetQuota(root string, limits map[imap.QuotaResourceType]int64) error
}

func (c *Conn) quotaSession() (SessionQuota, error) {
	if err := c.checkState(imap.ConnStateAuthenticated); err != nil {
		return nil, err
	}
	sess, ok := c.session.(SessionQuota)
	if !ok || !c.server.options.caps().Has(imap.CapQuota) {
		return nil, &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Unknown command"}
	}
	return sess, nil
}

func (c *Conn) handleGetQuota(dec *imapwire.Decoder) error {
	var root string
	if !dec.ExpectSP() || !dec.ExpectAString(&root) || !dec.ExpectCRLF() {
		return dec.Err()
	}
	sess, err := c.quotaSession()
	if err != nil {
		return err
	}
	q, err := sess.GetQuota(root)
	if err != nil {
		return err
	}
	return c.writeQuota(q)
}

func (c *Conn) handleGetQuotaRoot(dec *imapwire.Decoder) error {
	var mailbox string
	if !dec.ExpectSP() || !dec.ExpectMailbox(&mailbox) || !dec.ExpectCRLF() {
		return dec.Err()
	}
	sess, err := c.quotaSession()
	if err != nil {
		return err
	}
	roots, err := sess.GetQuotaRoot(mailbox)
	if err != nil {
		return err
	}
	if err := c.writeQuotaRoot(mailbox, roots); err != nil {
		return err
	}
	for i := range roots {
		if err := c.writeQuota(&roots[i]); err != nil {
			return err
		}
	}
	return nil
}

func (c *Conn) handleSetQuota(dec *imapwire.Decoder) error {
	var root string
	limits := make(map[imap.QuotaResourceType]int64)
	if !dec.ExpectSP() || !dec.ExpectAString(&root) || !dec.ExpectSP() {
		return dec.Err()
	}
	err := dec.ExpectList(func() error {
		var name string
		var limit int64
		if !dec.ExpectAtom(&name) || !dec.ExpectSP() || !dec.ExpectNumber64(&limit) {
			return dec.Err()
		}
		limits[imap.QuotaResourceType(strings.ToUpper(name))] = limit
		return nil
	})
	if err != nil {
		return err
	}
	if !dec.ExpectCRLF() {
		return dec.Err()
	}
	sess, err := c.quotaSession()
	if err != nil {
		return err
	}
	return sess.SetQuota(root, limits)
}

func (c *Conn) writeQuotaRoot(mailbox string, roots []QuotaRoot) error {
	enc := newResponseEncoder(c)
	defer enc.end()
	enc.Atom("*").SP().Atom("QUOTAROOT").SP().Mailbox(mailbox)
	for _, r := range roots {
		enc.SP().String(r.Name)
	}
	return enc.CRLF()
}

func (c *Conn) writeQuota(q *QuotaRoot) error {
	enc := newResponseEncoder(c)
	defer enc.end()
	enc.Atom("*").SP().Atom("QUOTA").SP().String(q.Name).SP().Special('(')
	for i, r := range q.Resources {
		if i > 0 {
			enc.SP()
		}
		enc.Atom(string(r.Name)).SP().Number64(r.Usage).SP().Number64(r.Limit)
	}
	enc.Special(')')
	return enc.CRLF()
}

// quotaCaps are advertised when the server's capabilities have them (RFC 9208 §3.1: a resource
// type is advertised as QUOTA=RES-<name>).
var quotaCaps = []imap.Cap{imap.CapQuota, "QUOTA=RES-STORAGE", "QUOTA=RES-MESSAGE"}
