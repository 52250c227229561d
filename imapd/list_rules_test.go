package imapd

import (
	"slices"
	"strings"
	"testing"
)

// untagged returns the untagged lines of an answer, trimmed, sorted.
func untagged(lines []string) []string {
	var out []string
	for _, l := range lines {
		if strings.HasPrefix(l, "* ") {
			out = append(out, strings.TrimRight(l, "\r\n"))
		}
	}
	slices.Sort(out)
	return out
}

// RFC 3501 §6.3.9: LSUB "%" lists, \Noselect, the level where "%" stops above a subscribed name
// that is not subscribed itself (imaptest's "subscribe").
func TestLSUBPercentRule(t *testing.T) {
	ts := newTestServer(t)
	r := ts.raw(true)
	for _, c := range []string{"c1 CREATE t/a", "c2 CREATE t/b/c", "c3 CREATE t/d/e", "s1 SUBSCRIBE t/a", "s2 SUBSCRIBE t/b/c", "s3 SUBSCRIBE t/d/e", "s4 SUBSCRIBE t/d"} {
		if l := r.cmd(c); !strings.Contains(last(l), " OK") {
			t.Fatalf("%s: %q", c, l)
		}
	}
	got := untagged(r.cmd(`l LSUB "" t/%`))
	want := []string{`* LSUB () "/" "t/a"`, `* LSUB () "/" "t/d"`, `* LSUB (\Noselect) "/" "t/b"`}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("LSUB t/%%:\n got %q\nwant %q", got, want)
	}
	got = untagged(r.cmd(`l LSUB "" *c`))
	if want := []string{`* LSUB () "/" "t/b/c"`}; !slices.Equal(got, want) {
		t.Errorf("LSUB *c: got %q, want %q", got, want)
	}
}

// RFC 5258 RECURSIVEMATCH: a parent gets CHILDINFO only for a subscribed child no pattern lists on
// its own (imaptest's "listext", as Dovecot answers).
func TestListRecursiveMatchChildInfo(t *testing.T) {
	ts := newTestServer(t)
	r := ts.raw(true)
	for _, c := range []string{"c1 CREATE p/q", "s1 SUBSCRIBE p/q"} {
		r.cmd(c)
	}
	for _, c := range []struct {
		args   string
		parent bool
	}{
		{`"" (p)`, true},
		{`"" p%`, true},
		{`"" p*`, true},
		{`"" (p p/q)`, false},
	} {
		lines := strings.Join(r.cmd(`l LIST (SUBSCRIBED RECURSIVEMATCH) `+c.args), "")
		if got := strings.Contains(lines, `"/" "p" (CHILDINFO ("SUBSCRIBED"))`); got != c.parent {
			t.Errorf("%s: parent with CHILDINFO %v, want %v:\n%s", c.args, got, c.parent, lines)
		}
	}
}
