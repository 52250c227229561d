package imap

// ListOptions contains options for the LIST command.
type ListOptions struct {
	SelectSubscribed     bool
	SelectRemote         bool
	SelectRecursiveMatch bool // requires SelectSubscribed to be set
	SelectSpecialUse     bool // requires SPECIAL-USE

	ReturnSubscribed bool
	ReturnChildren   bool
	ReturnStatus     *StatusOptions // requires IMAP4rev2 or LIST-STATUS
	ReturnSpecialUse bool           // requires SPECIAL-USE

	// LSUB is set (with SelectSubscribed) when the command is RFC 3501's LSUB,
	// whose "%" rule differs from LIST (SUBSCRIBED): a subscribed name below
	// the level where "%" stops makes that level's name listed, \Noselect.
	LSUB bool
}

// ListData is the mailbox data returned by a LIST command.
type ListData struct {
	Attrs   []MailboxAttr
	Delim   rune
	Mailbox string

	// Extended data
	ChildInfo *ListDataChildInfo
	OldName   string
	Status    *StatusData
}

type ListDataChildInfo struct {
	Subscribed bool
}
