package imapd

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// CONTEXT=SORT (RFC 5267 §4): a live SORT keeps its result in sort order; each ADDTO and
// REMOVEFROM carries the position of its run in the list as the updates before it left it, so
// the client's list, updated in turn, is the server's result. Raw exchanges, the RFC's examples
// among them (§3.3 E01, §4.3 tag reuse, §4.3.3 C01, §4.3.5 CANCELUPDATE).
func TestSortContextUpdate(t *testing.T) {
	ts := newTestServer(t)
	// subjects put them in the order 4 2 5 1 6 3; dates in the order 1 2 3 4 5 6
	for i, subj := range []string{"d", "b", "f", "a", "c", "e"} {
		ts.deliver(testMessage(i+1, subj))
	}
	ex := rawExchange(t, ts.addr)
	ex("l LOGIN " + testUser + " " + testPass)
	if caps := strings.Join(ex("c CAPABILITY"), " "); !strings.Contains(caps, "CONTEXT=SORT") {
		t.Errorf("capabilities: %s", caps)
	}
	ex("s SELECT INBOX")
	appended := testMessage(7, "ca")
	steps := []struct {
		cmd    string
		status string   // the tagged answer's status
		want   []string // lines that must come, in this order; every ESEARCH line must be one of them
	}{
		{"E01 UID SORT RETURN () (REVERSE DATE) UTF-8 UNDELETED UNKEYWORD $Junk", "OK", []string{`* ESEARCH (TAG "E01") UID ALL 6,5,4,3,2,1`}},
		{"u1 SORT RETURN (UPDATE) (SUBJECT) UTF-8 SEEN", "OK", []string{`* ESEARCH (TAG "u1")`}},
		{`a STORE 1,2,4 +FLAGS (\Seen)`, "OK", []string{`* ESEARCH (TAG "u1") ADDTO (1 4,2,1)`}},
		{`b STORE 6 +FLAGS (\Seen)`, "OK", []string{`* ESEARCH (TAG "u1") ADDTO (4 6)`}},
		// 4 2 1 6 -> 4 2 5 1 6 3: two runs, each where it goes
		{`c STORE 5,3 +FLAGS (\Seen)`, "OK", []string{`* ESEARCH (TAG "u1") ADDTO (3 5)`, `* ESEARCH (TAG "u1") ADDTO (6 3)`}},
		// 4 2 5 1 6 3 -> 4 5 1 6 3 -> 4 5 6 3
		{`d STORE 2,1 -FLAGS (\Seen)`, "OK", []string{`* ESEARCH (TAG "u1") REMOVEFROM (2 2)`, `* ESEARCH (TAG "u1") REMOVEFROM (3 1)`}},
		// RFC 5267 §4.3: a tag already naming a live search is BAD, and the live one stays
		{"u1 SORT RETURN (UPDATE) (DATE) UTF-8 ALL", "BAD", nil},
		{"u1 SEARCH RETURN (UPDATE) ALL", "BAD", nil},
		{"u2 UID SORT RETURN (UPDATE ALL) (REVERSE DATE) UTF-8 SEEN", "OK", []string{`* ESEARCH (TAG "u2") UID ALL 6,5,4,3`}},
		{`e STORE 4,6 +FLAGS.SILENT (\Deleted)`, "OK", nil},
		// before the EXPUNGEs, numbered as they give them: u1 4 5 6 3 -> 5 6 3 -> 5 3
		{"f EXPUNGE", "OK", []string{
			`* ESEARCH (TAG "u1") REMOVEFROM (1 4)`, `* ESEARCH (TAG "u1") REMOVEFROM (2 6)`,
			`* ESEARCH (TAG "u2") UID REMOVEFROM (1 6)`, `* ESEARCH (TAG "u2") UID REMOVEFROM (2 4)`,
			"* 6 EXPUNGE", "* 4 EXPUNGE"}},
		// "ca" sorts between c (seq 4) and f (seq 3); its date is the latest
		{fmt.Sprintf("g APPEND INBOX (\\Seen) {%d+}\r\n%s", len(appended), appended), "OK", []string{
			"* 5 EXISTS", `* ESEARCH (TAG "u1") ADDTO (2 5)`, `* ESEARCH (TAG "u2") UID ADDTO (1 7)`}},
		// RFC 5267 §4.3.3: a result of two, then three before them: one ADDTO (1 ...)
		{`h STORE 4:5 +FLAGS.SILENT ($Junk)`, "OK", nil},
		{"C01 UID SORT RETURN (UPDATE ALL) (ARRIVAL) UTF-8 KEYWORD $Junk", "OK", []string{`* ESEARCH (TAG "C01") UID ALL 5,7`}},
		{`i STORE 1:3 +FLAGS.SILENT ($Junk)`, "OK", []string{`* ESEARCH (TAG "C01") UID ADDTO (1 1:3)`}},
		{`B04 CANCELUPDATE "u1" "u2"`, "OK", nil},
		{`j STORE 1:2 +FLAGS.SILENT (\Seen)`, "OK", nil},
		{`k STORE 1 -FLAGS.SILENT ($Junk)`, "OK", []string{`* ESEARCH (TAG "C01") UID REMOVEFROM (1 1)`}},
	}
	for _, st := range steps {
		lines := ex(st.cmd)
		tag, _, _ := strings.Cut(st.cmd, " ")
		if tagged := lines[len(lines)-1]; !strings.HasPrefix(tagged, tag+" "+st.status) {
			t.Errorf("%s: %s, want %s", st.cmd, tagged, st.status)
		}
		i := 0
		for _, l := range lines {
			if i < len(st.want) && l == st.want[i] {
				i++
			} else if strings.HasPrefix(l, "* ESEARCH") && !slices.Contains(st.want, l) {
				t.Errorf("%s: unexpected %q", st.cmd, l)
			}
		}
		if i < len(st.want) {
			t.Errorf("%s: missing %q in %q", st.cmd, st.want[i], lines)
		}
	}
}

// While expunges are held back, a live sort keeps the expunged messages where they were.
func TestKeepPending(t *testing.T) {
	old := []uint32{4, 5, 6, 3}
	for _, c := range []struct {
		now     []uint32
		pending []uint32
		want    []uint32
	}{
		{[]uint32{5, 3}, []uint32{6}, []uint32{5, 6, 3}},
		{[]uint32{5, 3}, []uint32{4}, []uint32{4, 5, 3}},
		{[]uint32{5, 7, 3}, []uint32{4, 6}, []uint32{4, 5, 6, 7, 3}},
		{[]uint32{5, 3}, nil, []uint32{5, 3}},
	} {
		pending := map[uint32]uint32{}
		for _, uid := range c.pending {
			pending[uid] = 1
		}
		if got := keepPending(old, c.now, pending); !slices.Equal(got, c.want) {
			t.Errorf("keepPending(%v, %v, %v) = %v, want %v", old, c.now, c.pending, got, c.want)
		}
	}
}
