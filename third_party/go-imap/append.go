package imap

import (
	"time"
)

// AppendOptions contains options for the APPEND command.
type AppendOptions struct {
	Flags []Flag
	Time  time.Time
	// Binary is set when the message came as a literal8 (~{n}, RFC 3516 BINARY): it may hold
	// NULs and binary parts, which a BODY[] answer cannot carry as they are.
	Binary bool
}

// AppendData is the data returned by an APPEND command.
type AppendData struct {
	// requires UIDPLUS or IMAP4rev2
	UID         UID
	UIDValidity uint32
}
