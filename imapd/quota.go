package imapd

import (
	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

// QUOTA (RFC 9208). An account has one quota root, "", over all its folders: the byte quota of
// accounts (Maildir++'s maildirsize keeps the usage). It is reported as STORAGE, in units of 1024
// octets rounded up. Only STORAGE is advertised: the message count is tracked but has no limit,
// and a QUOTA response cannot name a resource without one. An account without a quota has no
// root. Quotas are set with the postie CLI; SETQUOTA is refused.

const quotaRoot = ""

var errNoQuotaRoot = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNonExistent, Text: "No such quota root"}

var _ imapserver.SessionQuota = (*session)(nil)

func (s *session) GetQuota(root string) (*imapserver.QuotaRoot, error) {
	if root != quotaRoot || s.user.Quota <= 0 {
		return nil, errNoQuotaRoot
	}
	return s.quotaRoot()
}

func (s *session) GetQuotaRoot(mailbox string) ([]imapserver.QuotaRoot, error) {
	if _, err := s.mail.Mailbox(mailbox); err != nil {
		return nil, s.mailError("getquotaroot", err)
	}
	if s.user.Quota <= 0 {
		return nil, nil
	}
	q, err := s.quotaRoot()
	if err != nil {
		return nil, err
	}
	return []imapserver.QuotaRoot{*q}, nil
}

func (s *session) quotaRoot() (*imapserver.QuotaRoot, error) {
	used, _, err := s.mail.Usage()
	if err != nil {
		return nil, s.mailError("quota usage", err)
	}
	return &imapserver.QuotaRoot{Name: quotaRoot, Resources: []imapserver.QuotaResource{
		{Name: imap.QuotaResourceStorage, Usage: kib(used), Limit: kib(s.user.Quota)},
	}}, nil
}

// kib is n bytes in units of 1024 octets, rounded up.
func kib(n int64) int64 { return (max(n, 0) + 1023) / 1024 }

func (s *session) SetQuota(string, map[imap.QuotaResourceType]int64) error {
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNoPerm,
		Text: "Quotas are set by the administrator: use the postie CLI (postie user quota)"}
}
