package imapd

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// CONTEXT=SEARCH (RFC 5267 §4): a live search reports ADDTO and REMOVEFROM as flags change,
// messages are expunged and arrive, until CANCELUPDATE.
func TestSearchContextUpdate(t *testing.T) {
	ts := newTestServer(t)
	for i := 1; i <= 5; i++ {
		ts.deliver(testMessage(i, fmt.Sprintf("m%d", i)))
	}
	ex := rawExchange(t, ts.addr)
	ex("l LOGIN " + testUser + " " + testPass)
	if caps := strings.Join(ex("c CAPABILITY"), " "); !strings.Contains(caps, "CONTEXT=SEARCH") {
		t.Errorf("capabilities: %s", caps)
	}
	ex("s SELECT INBOX")
	steps := []struct {
		cmd  string
		want []string // untagged lines that must come, in this order
		not  string   // a line prefix that must not come
	}{
		{"u1 SEARCH RETURN (UPDATE) SEEN", []string{`* ESEARCH (TAG "u1")`}, "* ESEARCH (TAG \"u1\") ALL"},
		{`a STORE 1,2,4 +FLAGS (\Seen)`, []string{`* ESEARCH (TAG "u1") ADDTO (1 1:2,4)`}, ""},
		{`b STORE 2 -FLAGS (\Seen)`, []string{`* ESEARCH (TAG "u1") REMOVEFROM (2 2)`}, ""},
		{"u2 UID SEARCH RETURN (UPDATE ALL) SEEN", []string{`* ESEARCH (TAG "u2") UID ALL 1,4`}, ""},
		{`c STORE 3:4 +FLAGS.SILENT (\Deleted)`, nil, "* ESEARCH"},
		// the expunged message leaves the results with the number its EXPUNGE gives
		{"d EXPUNGE", []string{`* ESEARCH (TAG "u1") REMOVEFROM (2 4)`, `* ESEARCH (TAG "u2") UID REMOVEFROM (2 4)`, "* 4 EXPUNGE", "* 3 EXPUNGE"}, ""},
		{"e APPEND INBOX (\\Seen) {13+}\r\nSubject: x\r\n", []string{"* 4 EXISTS", `* ESEARCH (TAG "u1") ADDTO (2 4)`, `* ESEARCH (TAG "u2") UID ADDTO (2 6)`}, ""},
		{`f CANCELUPDATE "u1"`, nil, ""},
		{`g STORE 2 +FLAGS (\Seen)`, []string{`* ESEARCH (TAG "u2") UID ADDTO (2 2)`}, `* ESEARCH (TAG "u1")`},
		{`h CANCELUPDATE "u1"`, nil, ""},
	}
	for _, st := range steps {
		lines := ex(st.cmd)
		tagged := lines[len(lines)-1]
		tag, _, _ := strings.Cut(st.cmd, " ")
		switch tag {
		case "h":
			if !strings.HasPrefix(tagged, "h NO") {
				t.Errorf("CANCELUPDATE of an ended search: %s", tagged)
			}
			continue
		}
		if !strings.HasPrefix(tagged, tag+" OK") {
			t.Errorf("%s: %s", st.cmd, tagged)
		}
		i := 0
		for _, l := range lines {
			if i < len(st.want) && l == st.want[i] {
				i++
			}
			if st.not != "" && strings.HasPrefix(l, st.not) {
				t.Errorf("%s: unexpected %q", st.cmd, l)
			}
		}
		if i < len(st.want) {
			t.Errorf("%s: missing %q in %q", st.cmd, st.want[i], slices.Clone(lines))
		}
		// No other update comes (an expunged message reported twice, say).
		notUpdate := func(l string) bool { return !strings.HasPrefix(l, "* ESEARCH") }
		if got, want := slices.DeleteFunc(slices.Clone(lines), notUpdate), slices.DeleteFunc(slices.Clone(st.want), notUpdate); !slices.Equal(got, want) {
			t.Errorf("%s: updates %q, want %q", st.cmd, got, want)
		}
	}
}

// TestLiveSearchesBounded: past maxLiveUpdates live searches and sorts, one
// more gets its result and "* NO [NOUPDATE tag]" and completes OK (RFC 5267
// section 4.2); it is not kept live, and a CANCELUPDATE frees a place.
func TestLiveSearchesBounded(t *testing.T) {
	ts := newTestServer(t)
	ts.deliver(testMessage(1, "m1"))
	ex := rawExchange(t, ts.addr)
	ex("l LOGIN " + testUser + " " + testPass)
	ex("s SELECT INBOX")
	for i := range maxLiveUpdates {
		cmd := fmt.Sprintf("u%d SEARCH RETURN (UPDATE) ALL", i)
		if i%2 == 1 {
			cmd = fmt.Sprintf("u%d SORT RETURN (UPDATE) (DATE) UTF-8 ALL", i)
		}
		for _, l := range ex(cmd) {
			if strings.Contains(l, "NOUPDATE") {
				t.Fatalf("%s: %s", cmd, l)
			}
		}
	}
	for _, cmd := range []string{"x SEARCH RETURN (UPDATE) ALL", "y SORT RETURN (UPDATE) (DATE) UTF-8 ALL"} {
		tag, _, _ := strings.Cut(cmd, " ")
		lines := ex(cmd)
		if !slices.Contains(lines, `* NO [NOUPDATE "`+tag+`"] Too many live searches`) || !strings.HasPrefix(lines[len(lines)-1], tag+" OK") {
			t.Errorf("%s: %q, want NOUPDATE and OK", cmd, lines)
		}
		if l := ex(`c CANCELUPDATE "` + tag + `"`); !strings.HasPrefix(l[len(l)-1], "c NO") {
			t.Errorf("%s was kept live: CANCELUPDATE said %q", tag, l)
		}
	}
	ex(`c CANCELUPDATE "u0"`)
	if lines := ex("z SEARCH RETURN (UPDATE) ALL"); slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, "NOUPDATE") }) {
		t.Errorf("after a CANCELUPDATE: %q", lines)
	}
}
