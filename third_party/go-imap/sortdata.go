package imap

// SortKey is a SORT criterion (RFC 5256 §3, RFC 5957 for DISPLAYFROM and DISPLAYTO).
type SortKey string

const (
	SortKeyArrival     SortKey = "ARRIVAL"
	SortKeyCc          SortKey = "CC"
	SortKeyDate        SortKey = "DATE"
	SortKeyFrom        SortKey = "FROM"
	SortKeySize        SortKey = "SIZE"
	SortKeySubject     SortKey = "SUBJECT"
	SortKeyTo          SortKey = "TO"
	SortKeyDisplayFrom SortKey = "DISPLAYFROM" // RFC 5957
	SortKeyDisplayTo   SortKey = "DISPLAYTO"   // RFC 5957
)

// SortCriterion is one key of a SORT command; Reverse inverts its order.
type SortCriterion struct {
	Key     SortKey
	Reverse bool
}

// ThreadData is one thread of a THREAD answer (RFC 5256 §4): Chain is a run of messages each the
// parent of the next, and SubThreads the children of the chain's last message (never exactly one:
// a single child continues the chain).
type ThreadData struct {
	Chain      []uint32
	SubThreads []ThreadData
}
