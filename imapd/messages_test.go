package imapd

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"postie/accounts"
	"postie/maildir"
)

func appendMsg(t *testing.T, c *imapclient.Client, mailbox string, msg []byte, o *imap.AppendOptions) *imap.AppendData {
	t.Helper()
	cmd := c.Append(mailbox, int64(len(msg)), o)
	if _, err := cmd.Write(msg); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Close(); err != nil {
		t.Fatal(err)
	}
	d, err := cmd.Wait()
	if err != nil {
		t.Fatalf("append to %s: %v", mailbox, err)
	}
	return d
}

func TestAppendAndFetch(t *testing.T) {
	ts := newTestServer(t)
	c := ts.dial(nil)
	nested := readTestdata(t, "nested.eml")
	date := time.Date(2025, 3, 4, 5, 6, 7, 0, time.FixedZone("", 2*3600))
	ad := appendMsg(t, c, "INBOX", nested, &imap.AppendOptions{Flags: []imap.Flag{imap.FlagFlagged, "$label1"}, Time: date})
	if ad.UID != 1 || ad.UIDValidity == 0 {
		t.Fatalf("APPENDUID %+v", ad)
	}
	cmd := c.Append("No/Such", 3, nil)
	cmd.Write([]byte("x\r\n"))
	cmd.Close()
	if _, err := cmd.Wait(); imapCode(err) != imap.ResponseCodeTryCreate {
		t.Errorf("append to a missing mailbox: %v", err)
	}

	sd := mustSelect(t, c, "INBOX", false)
	if sd.NumMessages != 1 || sd.UIDNext != 2 || sd.UIDValidity != ad.UIDValidity {
		t.Errorf("select %+v", sd)
	}
	if !hasFlag(sd.PermanentFlags, imap.FlagWildcard) || !hasFlag(sd.Flags, "$label1") {
		t.Errorf("flags %v permanent %v", sd.Flags, sd.PermanentFlags)
	}
	sections := []*imap.FetchItemBodySection{
		{Peek: true},
		{Peek: true, Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"From", "Subject"}},
		{Peek: true, Specifier: imap.PartSpecifierHeader, HeaderFieldsNot: []string{"Subject"}},
		{Peek: true, Part: []int{1, 1}},
		{Peek: true, Part: []int{3}, Specifier: imap.PartSpecifierHeader},
		{Peek: true, Specifier: imap.PartSpecifierText, Partial: &imap.SectionPartial{Offset: 4, Size: 8}},
	}
	msgs := fetchAll(t, c, imap.SeqSetNum(1), &imap.FetchOptions{
		UID: true, Flags: true, InternalDate: true, RFC822Size: true, Envelope: true,
		BodyStructure:     &imap.FetchItemBodyStructure{Extended: true},
		BodySection:       sections,
		BinarySection:     []*imap.FetchItemBinarySection{{Part: []int{2}, Peek: true}, {Part: []int{1, 1}, Peek: true}},
		BinarySectionSize: []*imap.FetchItemBinarySectionSize{{Part: []int{2}}},
	})
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	m := msgs[0]
	if m.UID != 1 || m.RFC822Size != int64(len(nested)) || !m.InternalDate.Equal(date) {
		t.Errorf("uid %d size %d date %v", m.UID, m.RFC822Size, m.InternalDate)
	}
	if !hasFlag(m.Flags, imap.FlagFlagged) || !hasFlag(m.Flags, "$label1") || hasFlag(m.Flags, imap.FlagSeen) {
		t.Errorf("flags %v", m.Flags)
	}
	if m.Envelope == nil || m.Envelope.Subject != "nested" || m.Envelope.From[0].Host != "example.test" || m.Envelope.MessageID != "n1@example.test" {
		t.Errorf("envelope %+v", m.Envelope)
	}
	if mp, ok := m.BodyStructure.(*imap.BodyStructureMultiPart); !ok || len(mp.Children) != 3 || mp.Subtype != "mixed" {
		t.Errorf("bodystructure %#v", m.BodyStructure)
	}
	want := [][]byte{
		nested,
		[]byte("From: Dave <dave@example.test>\r\nSubject: nested\r\n\r\n"),
		nil, // checked below
		[]byte("Gr=FC=DFe aus M=FCnchen"),
		[]byte("From: Inner <inner@example.test>\r\nSubject: inner message\r\nContent-Type: multipart/mixed; boundary=b3\r\n\r\n"),
		[]byte("is the "),
	}
	want[5] = nested[bytes.Index(nested, []byte("\r\n\r\n"))+4+4:][:8]
	for i, sec := range m.BodySection {
		if i == 2 {
			if bytes.Contains(sec.Bytes, []byte("Subject:")) || !bytes.Contains(sec.Bytes, []byte("Message-ID:")) {
				t.Errorf("HEADER.FIELDS.NOT: %q", sec.Bytes)
			}
			continue
		}
		if !bytes.Equal(sec.Bytes, want[i]) {
			t.Errorf("section %d (%+v):\n got %q\nwant %q", i, sections[i], sec.Bytes, want[i])
		}
	}
	if len(m.BinarySection) != 2 || len(m.BinarySection[0].Bytes) != 66 || string(m.BinarySection[1].Bytes) != "Gr\xfc\xdfe aus M\xfcnchen" {
		t.Errorf("binary %+v", m.BinarySection)
	}
	if len(m.BinarySectionSize) != 1 || m.BinarySectionSize[0].Size != 66 {
		t.Errorf("binary size %+v", m.BinarySectionSize)
	}

	// A fetch without PEEK sets \Seen and says so.
	msgs = fetchAll(t, c, imap.UIDSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Specifier: imap.PartSpecifierText}}})
	if !hasFlag(msgs[0].Flags, imap.FlagSeen) || msgs[0].UID != 1 {
		t.Errorf("non-peek fetch: flags %v uid %d", msgs[0].Flags, msgs[0].UID)
	}
	// RFC822 and RFC822.SIZE: the file's bytes, exactly.
	raw := ts.raw(true)
	raw.cmd("s SELECT INBOX")
	lines := raw.cmd("f1 FETCH 1 (RFC822.SIZE RFC822.PEEK)")
	joined := strings.Join(lines, "")
	if !strings.Contains(joined, "RFC822.SIZE 1096") || !strings.Contains(joined, "{1096}") || !strings.Contains(joined, string(nested)) {
		t.Errorf("RFC822: %q", joined[:min(len(joined), 200)])
	}
}

func TestStoreSearchCopyMove(t *testing.T) {
	ts := newTestServer(t)
	for i := 1; i <= 6; i++ {
		ts.deliver(testMessage(i, []string{"", "apple", "banana", "apple pie", "cherry", "banana split", "date"}[i]))
	}
	c := ts.dial(nil)
	mustSelect(t, c, "INBOX", false)

	// STORE: add, remove, replace, keywords, silent.
	res := fetchAll(t, c, imap.SeqSetNum(1, 2), nil)
	_ = res
	msgs, err := c.Store(imap.SeqSet{{Start: 1, Stop: 2}}, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagSeen, "$Junk"}}, nil).Collect()
	if err != nil || len(msgs) != 2 || !hasFlag(msgs[0].Flags, "$Junk") || !hasFlag(msgs[1].Flags, imap.FlagSeen) {
		t.Fatalf("STORE +FLAGS: %v %+v", err, msgs)
	}
	msgs, err = c.Store(imap.SeqSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsDel, Flags: []imap.Flag{"$Junk"}}, nil).Collect()
	if err != nil || len(msgs) != 1 || hasFlag(msgs[0].Flags, "$Junk") || !hasFlag(msgs[0].Flags, imap.FlagSeen) {
		t.Fatalf("STORE -FLAGS: %v %+v", err, msgs)
	}
	msgs, err = c.Store(imap.UIDSetNum(3), &imap.StoreFlags{Op: imap.StoreFlagsSet, Flags: []imap.Flag{imap.FlagAnswered, "$Forwarded", "$NotJunk"}}, nil).Collect()
	if err != nil || len(msgs) != 1 || msgs[0].UID != 3 || len(slices.DeleteFunc(msgs[0].Flags, func(f imap.Flag) bool { return f == `\Recent` })) != 3 {
		t.Fatalf("UID STORE FLAGS: %v %+v", err, msgs)
	}
	msgs, err = c.Store(imap.SeqSetNum(4), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect()
	if err != nil || len(msgs) != 0 {
		t.Fatalf("STORE .SILENT answered %v %+v", err, msgs)
	}
	if _, err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{`\Bogus`}}, nil).Collect(); err == nil {
		t.Error("STORE of an unknown system flag worked")
	}

	search := func(uid bool, crit *imap.SearchCriteria, o *imap.SearchOptions) *imap.SearchData {
		t.Helper()
		var d *imap.SearchData
		var err error
		if uid {
			d, err = c.UIDSearch(crit, o).Wait()
		} else {
			d, err = c.Search(crit, o).Wait()
		}
		if err != nil {
			t.Fatalf("search %+v: %v", crit, err)
		}
		return d
	}
	uids := func(d *imap.SearchData) []uint32 {
		var out []uint32
		for _, u := range d.AllUIDs() {
			out = append(out, uint32(u))
		}
		return out
	}
	cases := []struct {
		crit imap.SearchCriteria
		want []uint32
	}{
		{imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "APPLE"}}}, []uint32{1, 3}},
		{imap.SearchCriteria{Body: []string{"message 5."}}, []uint32{5}},
		{imap.SearchCriteria{Text: []string{"banana"}}, []uint32{2, 5}},
		{imap.SearchCriteria{Flag: []imap.Flag{"$Junk"}}, []uint32{1}},
		{imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}}, []uint32{3, 4, 5, 6}},
		{imap.SearchCriteria{Flag: []imap.Flag{imap.FlagDeleted}}, []uint32{4}},
		{imap.SearchCriteria{Flag: []imap.Flag{"$forwarded"}}, []uint32{3}},
		{imap.SearchCriteria{UID: []imap.UIDSet{{{Start: 2, Stop: 4}}}, Not: []imap.SearchCriteria{{Flag: []imap.Flag{imap.FlagAnswered}}}}, []uint32{2, 4}},
		{imap.SearchCriteria{Or: [][2]imap.SearchCriteria{{{Header: []imap.SearchCriteriaHeaderField{{Key: "From", Value: "sender6@"}}}, {Larger: 100000}}}}, []uint32{6}},
		{imap.SearchCriteria{SentSince: mustDay("23-Nov-2026"), SentBefore: mustDay("24-Nov-2026")}, []uint32{1, 2, 3, 4, 5, 6}},
		{imap.SearchCriteria{SentBefore: mustDay("23-Nov-2026")}, nil},
		{imap.SearchCriteria{Since: time.Now().Add(-48 * time.Hour)}, []uint32{1, 2, 3, 4, 5, 6}},
		{imap.SearchCriteria{Smaller: 10}, nil},
	}
	for _, tc := range cases {
		if got := uids(search(true, &tc.crit, nil)); !equalUIDs(got, tc.want) {
			t.Errorf("UID SEARCH %+v: %v want %v", tc.crit, got, tc.want)
		}
	}
	// ESEARCH MIN/MAX/COUNT and SEARCHRES.
	d := search(false, &imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}}, &imap.SearchOptions{ReturnMin: true, ReturnMax: true, ReturnCount: true, ReturnSave: true})
	if d.Min != 3 || d.Max != 6 || d.Count != 4 {
		t.Errorf("ESEARCH %+v", d)
	}
	rc := ts.raw(true)
	rc.cmd("s SELECT INBOX")
	if l := rc.cmd("x1 SEARCH UNSEEN"); !strings.HasPrefix(l[0], "* SEARCH 3 4 5 6") {
		t.Errorf("classic SEARCH: %q", l)
	}
	if l := rc.cmd("x2 UID SEARCH RETURN (COUNT) KEYWORD $Junk"); !strings.Contains(l[0], "ESEARCH (TAG \"x2\") UID COUNT 1") {
		t.Errorf("ESEARCH: %q", l)
	}
	if l := rc.cmd("x3 SEARCH CHARSET UTF-8 SUBJECT \"pie\""); !strings.HasPrefix(l[0], "* SEARCH 3") {
		t.Errorf("SEARCH CHARSET: %q", l)
	}
	if l := rc.cmd("x4 SEARCH NEW"); l[0] != "* SEARCH\r\n" {
		t.Errorf("SEARCH NEW (nothing is recent): %q", l)
	}
	// SEARCHRES (imapclient cannot send or read "$" usefully).
	rc.cmd("x5 SEARCH RETURN (SAVE) UNSEEN")
	if l := rc.cmd("x6 FETCH $ (UID)"); len(l) != 5 || !strings.HasPrefix(l[0], "* 3 FETCH (UID 3)") {
		t.Errorf("FETCH $: %q", l)
	}
	if l := rc.cmd("x7 UID SEARCH $ SUBJECT banana"); l[0] != "* SEARCH 5\r\n" {
		t.Errorf("SEARCH $ SUBJECT banana: %q", l)
	}
	rc.cmd("x8 SEARCH RETURN (MIN SAVE) UNSEEN")
	if l := rc.cmd("x9 UID FETCH $ (FLAGS)"); len(l) != 2 || !strings.Contains(l[0], "UID 3") {
		t.Errorf("SAVE with MIN keeps the minimum only: %q", l)
	}

	// COPY and MOVE with COPYUID; TRYCREATE for a missing destination.
	cd, err := c.Copy(imap.SeqSet{{Start: 1, Stop: 2}}, "Archive").Wait()
	if err != nil || cd.UIDValidity == 0 || cd.SourceUIDs.String() != "1:2" || cd.DestUIDs.String() != "1:2" {
		t.Fatalf("COPY %+v %v", cd, err)
	}
	if _, err := c.Copy(imap.SeqSetNum(1), "Nowhere").Wait(); imapCode(err) != imap.ResponseCodeTryCreate {
		t.Errorf("COPY to a missing mailbox: %v", err)
	}
	var expunged []uint32
	c2 := ts.dial(&imapclient.UnilateralDataHandler{Expunge: func(seq uint32) { expunged = append(expunged, seq) }})
	mustSelect(t, c2, "INBOX", false)
	md, err := c2.Move(imap.UIDSet{{Start: 5, Stop: 6}}, "Trash").Wait()
	if err != nil || md.DestUIDs.String() != "1:2" || md.SourceUIDs.String() != "5:6" {
		t.Fatalf("MOVE %+v %v", md, err)
	}
	if len(expunged) != 2 || expunged[0] != 6 && expunged[0] != 5 {
		t.Errorf("MOVE expunges %v", expunged)
	}
	st, _ := c.Status("Trash", &imap.StatusOptions{NumMessages: true}).Wait()
	if *st.NumMessages != 2 {
		t.Errorf("Trash has %d", *st.NumMessages)
	}
	// The first session learns of the move at its next command.
	expunged = nil
	if err := c.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	if n := c.Mailbox().NumMessages; n != 4 {
		t.Errorf("first session sees %d messages after the move", n)
	}

	// EXPUNGE removes \Deleted; UID EXPUNGE only those named.
	c.Store(imap.SeqSet{{Start: 1, Stop: 2}}, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close()
	ed, err := c.UIDExpunge(imap.UIDSetNum(2)).Collect()
	if err != nil || len(ed) != 1 {
		t.Fatalf("UID EXPUNGE: %v %v", ed, err)
	}
	ed, err = c.Expunge().Collect()
	if err != nil || len(ed) != 2 {
		t.Fatalf("EXPUNGE: %v %v (want 2: uid 1 and 4)", ed, err)
	}
	msgs = fetchAll(t, c, imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true})
	if len(msgs) != 1 || msgs[0].UID != 3 {
		t.Errorf("left: %+v", msgs)
	}
	// CLOSE expunges silently.
	c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close()
	if err := c.UnselectAndExpunge().Wait(); err != nil {
		t.Fatal(err)
	}
	if sd := mustSelect(t, c, "INBOX", true); sd.NumMessages != 0 {
		t.Errorf("CLOSE left %d", sd.NumMessages)
	}
}

func TestExamineIsReadOnly(t *testing.T) {
	ts := newTestServer(t)
	ts.deliver(testMessage(1, "ro"))
	c := ts.dial(nil)
	mustSelect(t, c, "INBOX", false)
	c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close()
	sd := mustSelect(t, c, "INBOX", true)
	if len(sd.PermanentFlags) != 0 {
		t.Errorf("EXAMINE permanent flags %v", sd.PermanentFlags)
	}
	if _, err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Collect(); err == nil {
		t.Error("STORE after EXAMINE worked")
	}
	msgs := fetchAll(t, c, imap.SeqSetNum(1), &imap.FetchOptions{Flags: true, BodySection: []*imap.FetchItemBodySection{{}}})
	if hasFlag(msgs[0].Flags, imap.FlagSeen) {
		t.Error("non-peek FETCH after EXAMINE set \\Seen")
	}
	if _, err := c.Move(imap.SeqSetNum(1), "Trash").Wait(); err == nil {
		t.Error("MOVE after EXAMINE worked")
	}
	if err := c.UnselectAndExpunge().Wait(); err != nil {
		t.Fatalf("CLOSE after EXAMINE: %v", err)
	}
	sd = mustSelect(t, c, "INBOX", false)
	if sd.NumMessages != 1 {
		t.Error("CLOSE after EXAMINE expunged")
	}
	msgs = fetchAll(t, c, imap.SeqSetNum(1), &imap.FetchOptions{Flags: true})
	if hasFlag(msgs[0].Flags, imap.FlagSeen) || hasFlag(msgs[0].Flags, imap.FlagFlagged) {
		t.Errorf("flags changed under EXAMINE: %v", msgs[0].Flags)
	}
}

func TestIMAP4rev2Session(t *testing.T) {
	ts := newTestServer(t)
	ts.deliver(testMessage(1, "rev2 ünïcode"))
	r := ts.raw(true)
	if l := r.cmd("e ENABLE IMAP4rev2"); !strings.Contains(l[0], "ENABLED IMAP4rev2") {
		t.Fatalf("ENABLE: %q", l)
	}
	sel := strings.Join(r.cmd("s SELECT INBOX"), "")
	if strings.Contains(sel, "RECENT") || !strings.Contains(sel, "1 EXISTS") {
		t.Errorf("rev2 SELECT: %q", sel)
	}
	if l := r.cmd("f1 SEARCH ALL"); !strings.HasPrefix(l[0], `* ESEARCH (TAG "f1") ALL 1`) {
		t.Errorf("rev2 SEARCH answers ESEARCH: %q", l)
	}
	if l := r.cmd("f2 FETCH 1 (BINARY.SIZE[1] BINARY.PEEK[1]<0.4>)"); !strings.Contains(strings.Join(l, ""), "BINARY.SIZE[1] 34") || !strings.Contains(l[0], "BINARY[1]<0> ~{4}") {
		t.Errorf("BINARY: %q", l)
	}
	if l := r.cmd(`f3 CREATE "Café"`); !strings.HasPrefix(last(l), "f3 OK") {
		t.Errorf("UTF-8 name: %q", l)
	}
}

func TestQuotaAndKeywordLimit(t *testing.T) {
	ts := newTestServer(t, func(o *Options) { o.Auth = &quotaAuth{fakeAuth: o.Auth.(*fakeAuth), quota: 400} })
	// A user whose quota is nearly used.
	u, err := ts.store.User("example.test", "small")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u.Deliver(strings.NewReader(testMessage(1, "fill")), maildir.DeliverOptions{}); err != nil {
		t.Fatal(err)
	}
	c, err := imapclient.DialInsecure(ts.addr, &imapclient.Options{DebugWriter: debugWriter(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("small@example.test", "pw").Wait(); err != nil {
		t.Fatal(err)
	}
	msg := []byte(testMessage(2, "too much"))
	cmd := c.Append("INBOX", int64(len(msg)), nil)
	cmd.Write(msg)
	cmd.Close()
	if _, err := cmd.Wait(); imapCode(err) != imap.ResponseCodeOverQuota {
		t.Errorf("APPEND over quota: %v", err)
	}
	// Removing keywords the folder does not know defines none: 40 of them
	// leave all 26 slots free.
	mustSelect(t, c, "INBOX", false)
	for i := 0; i < 40; i++ {
		if err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsDel, Silent: true, Flags: []imap.Flag{imap.Flag(fmt.Sprintf("gone%d", i))}}, nil).Close(); err != nil {
			t.Fatalf("-FLAGS of an unknown keyword: %v", err)
		}
	}
	// 26 keywords per mailbox, then LIMIT.
	var err2 error
	for i := 0; i < 27 && err2 == nil; i++ {
		err2 = c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.Flag(fmt.Sprintf("kw%d", i))}}, nil).Close()
	}
	if imapCode(err2) != imap.ResponseCodeLimit {
		t.Errorf("27th keyword: %v", err2)
	}
	sd := mustSelect(t, c, "INBOX", false)
	if hasFlag(sd.PermanentFlags, imap.FlagWildcard) {
		t.Error(`\* offered with no keyword left`)
	}
}

// quotaAuth gives every user a quota.
type quotaAuth struct {
	*fakeAuth
	quota int64
}

func (q *quotaAuth) Login(ctx context.Context, ip, service, user, pass string) (*accounts.User, error) {
	u, err := q.fakeAuth.Login(ctx, ip, service, user, pass)
	if u != nil {
		u.Quota = q.quota
	}
	return u, err
}

func debugWriter(t *testing.T) io.Writer {
	if os.Getenv("IMAPD_DEBUG") == "" {
		return nil
	}
	return os.Stderr
}
