package imapd

import (
	"strings"
	"testing"
)

// The small extensions already advertised, checked against their RFCs' examples: LIST-STATUS
// (RFC 5819), STATUS=SIZE (RFC 8438), CREATE-SPECIAL-USE (RFC 6154), UNSELECT (RFC 3691),
// APPENDLIMIT (RFC 7889).
func TestSmallExtensions(t *testing.T) {
	ts := newTestServer(t, func(o *Options) { o.AppendLimit = 1 << 20 })
	msg := testMessage(1, "hello")
	ts.deliver(msg)
	r := ts.raw(true)
	caps := r.cmd("c CAPABILITY")[0]
	for _, c := range []string{" LIST-STATUS", " STATUS=SIZE", " CREATE-SPECIAL-USE", " SPECIAL-USE", " UNSELECT", " APPENDLIMIT=1048576"} {
		if !strings.Contains(caps, c) {
			t.Errorf("%s not advertised: %s", c, caps)
		}
	}

	// RFC 5819 §5: LIST ... RETURN (STATUS (MESSAGES UNSEEN)): a STATUS after each LIST.
	l := r.cmd(`A01 LIST "" % RETURN (STATUS (MESSAGES UNSEEN))`)
	joined := strings.Join(l, "")
	if !strings.Contains(joined, "* LIST (") || !strings.Contains(joined, `* STATUS INBOX (MESSAGES 1 UNSEEN 1)`) || !strings.HasPrefix(last(l), "A01 OK") {
		t.Errorf("LIST-STATUS: %q", l)
	}
	for i, x := range l {
		if strings.HasPrefix(x, `* STATUS INBOX`) && (i == 0 || !strings.Contains(l[i-1], ` INBOX`)) {
			t.Errorf("STATUS of INBOX does not follow its LIST: %q", l)
		}
	}

	// RFC 8438 §3: STATUS (SIZE), the size of the messages in octets.
	if l := r.cmd("S STATUS INBOX (MESSAGES SIZE)"); l[0] != `* STATUS INBOX (MESSAGES 1 SIZE `+itoa(len(msg))+")\r\n" {
		t.Errorf("STATUS=SIZE: %q", l)
	}

	// RFC 6154 §5.3: CREATE with USE; an unsupported attribute is NO [USEATTR].
	if l := r.cmd(`t1 CREATE MySpecial (USE (\Drafts \Sent))`); !strings.HasPrefix(last(l), "t1 OK") && !strings.HasPrefix(last(l), "t1 NO [USEATTR]") {
		t.Errorf("CREATE USE: %q", l)
	}
	if l := r.cmd(`t2 CREATE Stuff (USE (\Bogus))`); !strings.HasPrefix(last(l), "t2 NO [USEATTR]") {
		t.Errorf("CREATE USE (\\Bogus): %q", l)
	}
	if l := r.cmd(`t3 CREATE Attic (USE (\Archive))`); !strings.HasPrefix(last(l), "t3 OK") {
		t.Errorf("CREATE USE (\\Archive): %q", l)
	}
	if l := r.cmd(`t4 LIST "" Attic RETURN (SPECIAL-USE)`); !strings.Contains(l[0], `\Archive`) {
		t.Errorf("LIST of the new special-use mailbox: %q", l)
	}

	// RFC 3691: UNSELECT leaves the selected state without expunging.
	r.cmd("s SELECT INBOX")
	r.cmd(`st STORE 1 +FLAGS (\Deleted)`)
	if l := r.cmd("u UNSELECT"); !strings.HasPrefix(last(l), "u OK") || len(l) != 1 {
		t.Errorf("UNSELECT: %q", l)
	}
	if l := r.cmd("f FETCH 1 FLAGS"); !strings.HasPrefix(last(l), "f BAD") {
		t.Errorf("FETCH after UNSELECT: %q", l)
	}
	if l := r.cmd("S STATUS INBOX (MESSAGES)"); l[0] != "* STATUS INBOX (MESSAGES 1)\r\n" {
		t.Errorf("UNSELECT expunged: %q", l)
	}
	if l := r.cmd("u2 UNSELECT"); !strings.HasPrefix(last(l), "u2 BAD") {
		t.Errorf("UNSELECT without a selection: %q", l)
	}

	// RFC 7889 §3/§4: STATUS (APPENDLIMIT), and an APPEND over the limit refused before its data.
	if l := r.cmd("a STATUS INBOX (APPENDLIMIT)"); l[0] != "* STATUS INBOX (APPENDLIMIT 1048576)\r\n" {
		t.Errorf("STATUS APPENDLIMIT: %q", l)
	}
	if l := r.answer("b APPEND INBOX {1048577}\r\n", "b"); !strings.HasPrefix(l, "b NO [TOOBIG]") {
		t.Errorf("APPEND over the limit: %q", l)
	}
	if l := r.cmd("n NOOP"); !strings.HasPrefix(last(l), "n OK") {
		t.Errorf("after the refusal: %q", l)
	}
}
