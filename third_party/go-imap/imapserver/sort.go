package imapserver

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/internal/imapwire"
)

// SORT (RFC 5256), its ESORT form with RETURN options (RFC 5267), and PARTIAL results
// (RFC 5267 §4.4, RFC 9394's negative ranges) for SORT and SEARCH.

// SessionSort is a session that supports SORT and UID SORT.
type SessionSort interface {
	Session

	// Sort returns the numbers (sequence numbers or UIDs, as kind says) of the messages that match
	// criteria, ordered by keys; messages equal on every key are in sequence number order.
	// options.ReturnSave asks that the matching messages be saved as the search result ($, RFC 5182).
	Sort(kind NumKind, keys []imap.SortCriterion, criteria *imap.SearchCriteria, options *imap.SearchOptions) ([]uint32, error)
}

// sortThreadCaps are the capabilities of this file and thread.go, advertised when the server's
// Options.Caps has them.
var sortThreadCaps = []imap.Cap{
	imap.CapSort, imap.CapSortDisplay, imap.CapESort,
	"THREAD=ORDEREDSUBJECT", "THREAD=REFERENCES",
	"CONTEXT=SEARCH", "CONTEXT=SORT",
}

// returnExt holds the RETURN options beyond imap.SearchOptions.
type returnExt struct {
	update  bool // RETURN (UPDATE): CONTEXT=SEARCH (searchupdate.go)
	partial bool
	lo, hi  int64 // 1-based positions; negative counts from the end (RFC 9394)
}

// parsePartialRange parses "n:m" where both are nz-numbers (up to 4294967295), or both their
// negatives (RFC 9394); the range is normalised so that lo <= hi in magnitude order of the
// positions it names.
func parsePartialRange(s string) (lo, hi int64, ok bool) {
	a, b, found := strings.Cut(s, ":")
	if !found {
		return 0, 0, false
	}
	neg := strings.HasPrefix(a, "-")
	if neg != strings.HasPrefix(b, "-") {
		return 0, 0, false
	}
	if neg {
		a, b = a[1:], b[1:]
	}
	x, err1 := strconv.ParseUint(a, 10, 32)
	y, err2 := strconv.ParseUint(b, 10, 32)
	if err1 != nil || err2 != nil || x == 0 || y == 0 || a[0] == '+' || b[0] == '+' {
		return 0, 0, false
	}
	if x > y { // -1:-3 and -3:-1 both name the last three
		x, y = y, x
	}
	if neg {
		return -int64(x), -int64(y), true
	}
	return int64(x), int64(y), true
}

// partialSlice returns the part of nums that the range names (in nums's order).
func (r *returnExt) partialSlice(nums []uint32) []uint32 {
	n := int64(len(nums))
	var from, to int64 // 0-based, [from, to)
	if r.lo > 0 {
		from, to = r.lo-1, r.hi
	} else {
		from, to = n+r.hi, n+r.lo+1
	}
	if from < 0 {
		from = 0
	}
	if to > n {
		to = n
	}
	if from >= to {
		return nil
	}
	return nums[from:to]
}

// rangeString is the range as the client gave it, normalised.
func (r *returnExt) rangeString() string {
	return fmt.Sprintf("%d:%d", r.lo, r.hi)
}

// orderedNumList writes nums in their order, folding ascending runs of consecutive numbers into
// ranges ("5,3:4,2,1"): the sequence-set form RFC 5267 uses for sorted results.
func orderedNumList(nums []uint32) string {
	var b strings.Builder
	for i := 0; i < len(nums); {
		j := i
		for j+1 < len(nums) && nums[j+1] == nums[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatUint(uint64(nums[i]), 10))
		if j > i {
			b.WriteByte(':')
			b.WriteString(strconv.FormatUint(uint64(nums[j]), 10))
		}
		i = j + 1
	}
	return b.String()
}

// readSearchCriteria reads one or more search keys, up to the end of the command.
func readSearchCriteria(dec *imapwire.Decoder) (*imap.SearchCriteria, error) {
	var criteria imap.SearchCriteria
	for {
		if err := readSearchKey(&criteria, dec); err != nil {
			return nil, fmt.Errorf("in search-key: %w", err)
		}
		if !dec.SP() {
			return &criteria, nil
		}
	}
}

// readCharset reads the charset of SORT and THREAD, which is not optional there.
func readCharset(dec *imapwire.Decoder) error {
	var charset string
	if !dec.ExpectAString(&charset) {
		return dec.Err()
	}
	switch strings.ToUpper(charset) {
	case "US-ASCII", "UTF-8":
		return nil
	}
	return &imap.Error{
		Type: imap.StatusResponseTypeNo,
		Code: imap.ResponseCodeBadCharset,
		Text: "Only US-ASCII and UTF-8 are supported charsets",
	}
}

func readSortCriteria(dec *imapwire.Decoder) ([]imap.SortCriterion, error) {
	var keys []imap.SortCriterion
	err := dec.ExpectList(func() error {
		var name string
		if !dec.ExpectAtom(&name) {
			return dec.Err()
		}
		var c imap.SortCriterion
		if strings.EqualFold(name, "REVERSE") {
			c.Reverse = true
			if !dec.ExpectSP() || !dec.ExpectAtom(&name) {
				return dec.Err()
			}
		}
		c.Key = imap.SortKey(strings.ToUpper(name))
		switch c.Key {
		case imap.SortKeyArrival, imap.SortKeyCc, imap.SortKeyDate, imap.SortKeyFrom, imap.SortKeySize,
			imap.SortKeySubject, imap.SortKeyTo, imap.SortKeyDisplayFrom, imap.SortKeyDisplayTo:
		default:
			return newClientBugError("Unknown sort key")
		}
		keys = append(keys, c)
		return nil
	})
	if err == nil && len(keys) == 0 {
		err = newClientBugError("Empty sort criteria")
	}
	return keys, err
}

func (c *Conn) handleSort(tag string, dec *imapwire.Decoder, numKind NumKind) error {
	if !dec.ExpectSP() {
		return dec.Err()
	}
	var (
		options  imap.SearchOptions
		ext      returnExt
		extended bool
		atom     string
	)
	if dec.Atom(&atom) {
		if !strings.EqualFold(atom, "RETURN") {
			return newClientBugError("Expected RETURN or sort criteria")
		}
		if err := readSearchReturnOpts(dec, &options, &ext); err != nil {
			return fmt.Errorf("in sort-return-opts: %w", err)
		}
		if !dec.ExpectSP() {
			return dec.Err()
		}
		extended = true
	}
	keys, err := readSortCriteria(dec)
	if err != nil {
		return err
	}
	if !dec.ExpectSP() {
		return dec.Err()
	}
	if err := readCharset(dec); err != nil {
		return err
	}
	if !dec.ExpectSP() {
		return dec.Err()
	}
	criteria, err := readSearchCriteria(dec)
	if err != nil {
		return err
	}
	if !dec.ExpectCRLF() {
		return dec.Err()
	}
	if err := c.checkState(imap.ConnStateSelected); err != nil {
		return err
	}
	session, ok := c.session.(SessionSort)
	if !ok {
		return newClientBugError("SORT is not supported")
	}
	updater, _ := c.session.(SessionSortUpdate)
	if ext.update && updater == nil {
		return newClientBugError("SORT RETURN (UPDATE) is not supported")
	}
	if extended && !options.ReturnMin && !options.ReturnMax && !options.ReturnCount && !ext.partial && !ext.update {
		options.ReturnAll = true // RETURN () means ALL (RFC 4731 §3.1)
	}
	nums, err := session.Sort(numKind, keys, criteria, &options)
	if err != nil {
		return err
	}
	noUpdate, err := liveOrNot(ext.update, func() error { return updater.SortUpdate(tag, numKind, keys, criteria, nums) })
	if err != nil {
		return err
	}
	if extended {
		err = c.writeSortESearch(tag, nums, &options, &ext, numKind)
	} else {
		err = c.writeNumList("SORT", nums)
	}
	if err == nil && noUpdate {
		err = c.writeNoUpdate(tag)
	}
	return err
}

// writeNumList writes "* SORT 3 1 2".
func (c *Conn) writeNumList(name string, nums []uint32) error {
	enc := newResponseEncoder(c)
	defer enc.end()
	enc.Atom("*").SP().Atom(name)
	for _, n := range nums {
		enc.SP().Number(n)
	}
	return enc.CRLF()
}

// writeSortESearch writes the ESEARCH answer of SORT RETURN (RFC 5267 §3.1): MIN and MAX are the
// first and last messages in sort order, ALL lists them in sort order.
func (c *Conn) writeSortESearch(tag string, nums []uint32, options *imap.SearchOptions, ext *returnExt, numKind NumKind) error {
	enc := newResponseEncoder(c)
	defer enc.end()
	enc.Atom("*").SP().Atom("ESEARCH")
	if tag != "" {
		enc.SP().Special('(').Atom("TAG").SP().String(tag).Special(')')
	}
	if numKind == NumKindUID {
		enc.SP().Atom("UID")
	}
	if options.ReturnMin && len(nums) > 0 {
		enc.SP().Atom("MIN").SP().Number(nums[0])
	}
	if options.ReturnMax && len(nums) > 0 {
		enc.SP().Atom("MAX").SP().Number(nums[len(nums)-1])
	}
	if options.ReturnCount {
		enc.SP().Atom("COUNT").SP().Number(uint32(len(nums)))
	}
	if options.ReturnAll && len(nums) > 0 {
		enc.SP().Atom("ALL").SP().Atom(orderedNumList(nums))
	}
	if ext.partial {
		writePartial(enc.Encoder, ext, ext.partialSlice(nums))
	}
	return enc.CRLF()
}

// writePartial writes " PARTIAL (range list)", NIL for an empty list.
func writePartial(enc *imapwire.Encoder, ext *returnExt, part []uint32) {
	enc.SP().Atom("PARTIAL").SP().Special('(').Atom(ext.rangeString()).SP()
	if len(part) == 0 {
		enc.NIL()
	} else {
		enc.Atom(orderedNumList(part))
	}
	enc.Special(')')
}

// numSetNums lists a static set's numbers in ascending order.
func numSetNums(set imap.NumSet) []uint32 {
	switch set := set.(type) {
	case imap.SeqSet:
		nums, _ := set.Nums()
		return nums
	case imap.UIDSet:
		uids, _ := set.Nums()
		nums := make([]uint32, len(uids))
		for i, u := range uids {
			nums[i] = uint32(u)
		}
		return nums
	}
	return nil
}
