package imapserver

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

// FuzzServerCommands runs arbitrary client input through the whole command path (the dispatcher,
// every command's parser, the extensions' handlers and encoders) of a server that advertises all
// that Postie does, in the selected state, over a session that accepts everything. Nothing may
// panic (the connection's recover logs it), and no client input may reach the session's errors
// path that answers NO [SERVERBUG] ("handling ... command"): a parser must answer BAD/NO itself.
// Seeds are the extensions' commands as the RFCs and imaptest send them; crashers found are kept
// in testdata/fuzz/FuzzServerCommands.
func FuzzServerCommands(f *testing.F) {
	for _, s := range fuzzCommandSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, logged := runFuzzConn(in)
		if fuzzFailed(logged) {
			t.Fatalf("input %q:\nlog: %s\nout: %q", in, logged, out)
		}
	})
}

var fuzzCommandSeeds = []string{
	"a SORT (REVERSE DATE SUBJECT) UTF-8 ALL\r\n",
	"a UID SORT (ARRIVAL CC FROM SIZE TO DISPLAYFROM DISPLAYTO) US-ASCII SUBJECT \"x\" 1:*\r\n",
	"a SORT RETURN (MIN MAX COUNT ALL PARTIAL 1:500) (DATE) UTF-8 UNSEEN\r\n",
	"a SORT RETURN (PARTIAL -1:-100) (DATE) UTF-8 ALL\r\n",
	"a SORT (DATE) ISO-8859-1 ALL\r\n",
	"a THREAD REFERENCES UTF-8 ALL\r\n",
	"a UID THREAD ORDEREDSUBJECT US-ASCII (OR FROM a TO b) SINCE 1-Feb-1994\r\n",
	"a SEARCH RETURN (MIN MAX COUNT SAVE) CHARSET UTF-8 TEXT {3+}\r\nabc\r\n",
	"a SEARCH RETURN (PARTIAL 1:4294967295) ALL\r\n",
	"a SEARCH RETURN (UPDATE) FLAGGED\r\nb CANCELUPDATE \"a\"\r\n",
	"a SEARCH MODSEQ \"/flags/\\\\draft\" all 620162338\r\n",
	"a SEARCH $ MODSEQ 5 NOT SMALLER 10 LARGER 5 BEFORE 1-Jan-2000\r\n",
	"a FETCH 1:* (FLAGS) (CHANGEDSINCE 12345)\r\n",
	"a UID FETCH 1:* (FLAGS MODSEQ) (CHANGEDSINCE 12345 VANISHED)\r\n",
	"a FETCH 1:3 (BODY.PEEK[1.2.HEADER.FIELDS (From To)]<0.100> BINARY[1]<5.10> PREVIEW (LAZY))\r\n",
	"a STORE 1:3 (UNCHANGEDSINCE 0) +FLAGS.SILENT (\\Seen)\r\n",
	"a UID STORE 1:* (UNCHANGEDSINCE 320162338) FLAGS ($Junk kw)\r\n",
	"a ENABLE QRESYNC CONDSTORE UTF8=ACCEPT\r\n",
	"a SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))\r\n",
	"a SELECT INBOX (QRESYNC (67890007 90060115194045000 1:29997 (5000,7500,9000,9990:9999 15000,22500,27000,29970,29973,29976,29979,29982,29985,29988,29991,29994,29997)))\r\n",
	"a EXAMINE INBOX (QRESYNC (1 1 1:4294967295 (1:4294967295 1:4294967295)))\r\n",
	"a SELECT INBOX (CONDSTORE)\r\n",
	"a STATUS INBOX (MESSAGES HIGHESTMODSEQ SIZE UIDNEXT RECENT)\r\n",
	"a APPEND INBOX (\\Seen) {5+}\r\nhello (\\Draft) \"1-Jan-2020 00:00:00 +0000\" {3+}\r\nabc\r\n",
	"a APPEND INBOX CATENATE (URL \"/INBOX;UIDVALIDITY=1/;UID=2/;SECTION=1.HEADER\" TEXT {4+}\r\nbody URL \"imap://u@h/INBOX/;UID=3;PARTIAL=0.10\")\r\n",
	"a APPEND INBOX CATENATE (TEXT {2+}\r\nab) CATENATE (URL \"/x/;UID=1\")\r\n",
	"a APPEND INBOX ~{3+}\r\na\x00b\r\n",
	"a ID (\"name\" \"client\" \"version\" \"1.0\" \"x\" NIL)\r\nb ID NIL\r\n",
	"a GETQUOTA \"\"\r\nb GETQUOTAROOT INBOX\r\nc SETQUOTA \"\" (STORAGE 512)\r\n",
	"a COMPRESS DEFLATE\r\n",
	"a COMPRESS DEFLATE\r\nb NOOP\r\n",
	"a NOTIFY SET STATUS (SELECTED (MessageNew (UID FLAGS) MessageExpunge FlagChange)) (personal (MailboxName SubscriptionChange))\r\nb NOTIFY NONE\r\n",
	"a LIST (SUBSCRIBED RECURSIVEMATCH) \"\" (\"*\" \"%\") RETURN (CHILDREN STATUS (MESSAGES HIGHESTMODSEQ) SPECIAL-USE)\r\n",
	"a UID EXPUNGE 1:5\r\nb MOVE 1:2 Trash\r\nc UID COPY 4 Trash\r\n",
	"a IDLE\r\nDONE\r\nb NOOP\r\n",
	"a CREATE foo (USE (\\Junk))\r\nb LSUB \"\" %\r\n",
}

// fuzzFailed says whether the log shows a panic or a SERVERBUG answer to client input (not the
// end of the input in the middle of a command, which is the connection closing).
func fuzzFailed(logged string) bool {
	for _, line := range strings.Split(logged, "\n") {
		if strings.Contains(line, "panic") {
			return true
		}
		if strings.HasPrefix(line, "handling ") && !strings.HasSuffix(line, "EOF") {
			return true
		}
	}
	return false
}

// runFuzzConn serves in on one connection to the end of the input and returns what the server
// wrote and logged.
func runFuzzConn(in []byte) (out, logged string) {
	var log fuzzLog
	srv := New(&Options{
		NewSession: func(*Conn) (Session, *GreetingData, error) {
			return &fuzzSession{}, &GreetingData{PreAuth: true}, nil
		},
		Caps:         fuzzCaps(),
		Logger:       &log,
		InsecureAuth: true,
	})
	input := append([]byte("s SELECT INBOX\r\n"), in...)
	conn := &fuzzNetConn{r: bytes.NewReader(input)}
	newConn(conn, srv).serve()
	return conn.w.String(), log.String()
}

func fuzzCaps() imap.CapSet {
	caps := imap.CapSet{}
	for _, c := range []imap.Cap{
		imap.CapIMAP4rev1, imap.CapIMAP4rev2, imap.CapNamespace, imap.CapUIDPlus, imap.CapESearch,
		imap.CapSearchRes, imap.CapListExtended, imap.CapListStatus, imap.CapMove, imap.CapStatusSize,
		imap.CapChildren, imap.CapSpecialUse, imap.CapCreateSpecialUse, imap.CapLiteralPlus,
		imap.CapBinary, imap.CapUnselect, imap.CapIdle, imap.CapAppendLimit,
		imap.CapCondStore, imap.CapQResync, imap.CapID, imap.CapQuota, "QUOTA=RES-STORAGE",
		CapCompressDeflate, imap.CapMultiAppend, imap.CapCatenate, imap.CapNotify, imap.CapPreview,
		imap.CapSort, imap.CapSortDisplay, imap.CapESort, "CONTEXT=SEARCH", "CONTEXT=SORT",
		"THREAD=REFERENCES", "THREAD=ORDEREDSUBJECT",
	} {
		caps[c] = struct{}{}
	}
	return caps
}

type fuzzLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *fuzzLog) Printf(format string, args ...interface{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(&l.b, format+"\n", args...)
}

func (l *fuzzLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// fuzzNetConn reads the input to its end (then io.EOF) and gathers what is written.
type fuzzNetConn struct {
	r  *bytes.Reader
	mu sync.Mutex
	w  bytes.Buffer
}

func (c *fuzzNetConn) Read(p []byte) (int, error) { return c.r.Read(p) }
func (c *fuzzNetConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.w.Len() > 1<<20 { // answers to absurd input are not kept
		return len(p), nil
	}
	return c.w.Write(p)
}
func (c *fuzzNetConn) Close() error                     { return nil }
func (c *fuzzNetConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *fuzzNetConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *fuzzNetConn) SetDeadline(time.Time) error      { return nil }
func (c *fuzzNetConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fuzzNetConn) SetWriteDeadline(time.Time) error { return nil }

// fuzzSession accepts every command with small fixed answers: three messages, UIDs 1 to 3.
type fuzzSession struct{}

func (*fuzzSession) Close() error               { return nil }
func (*fuzzSession) Login(string, string) error { return nil }
func (*fuzzSession) Namespace() (*imap.NamespaceData, error) {
	return &imap.NamespaceData{}, nil
}
func (*fuzzSession) Select(string, *imap.SelectOptions) (*imap.SelectData, error) {
	return &imap.SelectData{NumMessages: 3, UIDNext: 4, UIDValidity: 1, HighestModSeq: 9}, nil
}
func (*fuzzSession) Create(string, *imap.CreateOptions) error         { return nil }
func (*fuzzSession) Delete(string) error                              { return nil }
func (*fuzzSession) Rename(string, string, *imap.RenameOptions) error { return nil }
func (*fuzzSession) Subscribe(string) error                           { return nil }
func (*fuzzSession) Unsubscribe(string) error                         { return nil }
func (*fuzzSession) List(w *ListWriter, ref string, patterns []string, options *imap.ListOptions) error {
	return w.WriteList(&imap.ListData{Mailbox: "INBOX", Delim: '/'})
}
func (*fuzzSession) Status(mailbox string, options *imap.StatusOptions) (*imap.StatusData, error) {
	n, size := uint32(3), int64(300)
	return &imap.StatusData{Mailbox: mailbox, NumMessages: &n, UIDNext: 4, UIDValidity: 1, NumUnseen: &n,
		NumDeleted: &n, Size: &size, AppendLimit: &n, DeletedStorage: &size, NumRecent: &n, HighestModSeq: 9}, nil
}
func (*fuzzSession) Append(mailbox string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return nil, err
	}
	return &imap.AppendData{UID: 4, UIDValidity: 1}, nil
}
func (*fuzzSession) Poll(w *UpdateWriter, allowExpunge bool) error { return nil }
func (*fuzzSession) Idle(w *UpdateWriter, stop <-chan struct{}) error {
	<-stop
	return nil
}
func (*fuzzSession) Unselect() error                                   { return nil }
func (*fuzzSession) Expunge(w *ExpungeWriter, uids *imap.UIDSet) error { return nil }
func (*fuzzSession) Search(kind NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (*imap.SearchData, error) {
	return &imap.SearchData{All: imap.SeqSetNum(1, 2, 3), Min: 1, Max: 3, Count: 3}, nil
}
func (*fuzzSession) Fetch(w *FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	return nil
}
func (*fuzzSession) Store(w *FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, options *imap.StoreOptions) error {
	return nil
}
func (*fuzzSession) Copy(numSet imap.NumSet, dest string) (*imap.CopyData, error) {
	return nil, nil
}
func (*fuzzSession) Move(w *MoveWriter, numSet imap.NumSet, dest string) error { return nil }
func (*fuzzSession) AppendLimit() uint32                                       { return 1 << 20 }
func (*fuzzSession) Sort(kind NumKind, keys []imap.SortCriterion, criteria *imap.SearchCriteria, options *imap.SearchOptions) ([]uint32, error) {
	return []uint32{3, 1, 2}, nil
}
func (*fuzzSession) Thread(kind NumKind, algorithm imap.ThreadAlgorithm, criteria *imap.SearchCriteria) ([]imap.ThreadData, error) {
	return []imap.ThreadData{{Chain: []uint32{1}, SubThreads: []imap.ThreadData{{Chain: []uint32{2}}, {Chain: []uint32{3}}}}}, nil
}
func (*fuzzSession) HighestModSeq() (uint64, error) { return 9, nil }
func (*fuzzSession) QResync(w *FetchWriter, params *imap.SelectQResync) error {
	if params.KnownUIDs != nil {
		return w.WriteVanished(params.KnownUIDs, true)
	}
	return nil
}
func (*fuzzSession) CatenateURL(u *CatenateURL) (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader("Subject: x\r\n\r\nbody\r\n")), nil
}
func (*fuzzSession) BeginAppend(mailbox string) (AppendTx, error) { return &fuzzAppendTx{}, nil }
func (*fuzzSession) ID(client map[string]string) *imap.IDData {
	return &imap.IDData{Name: "fuzz"}
}
func (*fuzzSession) GetQuota(root string) (*QuotaRoot, error) {
	return &QuotaRoot{Name: root, Resources: []QuotaResource{{Name: imap.QuotaResourceStorage, Usage: 1, Limit: 2}}}, nil
}
func (*fuzzSession) GetQuotaRoot(mailbox string) ([]QuotaRoot, error) {
	return []QuotaRoot{{Name: ""}}, nil
}
func (*fuzzSession) SetQuota(root string, limits map[imap.QuotaResourceType]int64) error {
	return &imap.Error{Type: imap.StatusResponseTypeNo, Text: "no"}
}
func (*fuzzSession) SearchUpdate(tag string, kind NumKind, criteria *imap.SearchCriteria, result imap.NumSet) error {
	return nil
}
func (*fuzzSession) SortUpdate(tag string, kind NumKind, keys []imap.SortCriterion, criteria *imap.SearchCriteria, result []uint32) error {
	return nil
}
func (*fuzzSession) CancelUpdate(tags []string) error                     { return nil }
func (*fuzzSession) Notify(w *UpdateWriter, options *NotifyOptions) error { return nil }

type fuzzAppendTx struct{}

func (*fuzzAppendTx) Message(*imap.AppendOptions) (io.WriteCloser, error) {
	return nopWriteCloser{io.Discard}, nil
}
func (*fuzzAppendTx) Commit() (*MultiAppendData, error) {
	return &MultiAppendData{UIDValidity: 1, UIDs: []imap.UID{4}}, nil
}
func (*fuzzAppendTx) Abort() {}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// The seeds themselves run clean, and the harness sees a parser's SERVERBUG.
func TestFuzzServerCommandsSeeds(t *testing.T) {
	for _, s := range fuzzCommandSeeds {
		out, logged := runFuzzConn([]byte(s))
		if fuzzFailed(logged) {
			t.Errorf("%q:\nlog: %s\nout: %q", s, logged, out)
		}
	}
}

// A LITERAL+ literal that APPEND refuses (over APPENDLIMIT) is read and dropped: its bytes are a
// message, never commands (they ran as commands, one by one, when it was left unread).
func TestRefusedLiteralPlusNotRun(t *testing.T) {
	body := strings.Repeat("b NOOP\r\n", (1<<20)/8+100)
	for _, in := range []string{
		fmt.Sprintf("a APPEND INBOX {%d+}\r\n%s\r\nc NOOP\r\n", len(body), body),
		fmt.Sprintf("a APPEND INBOX {5+}\r\nhello {%d+}\r\n%s {3+}\r\nb N\r\nc NOOP\r\n", len(body), body),
		fmt.Sprintf("a APPEND INBOX CATENATE (TEXT {%d+}\r\n%s)\r\nc NOOP\r\n", len(body), body),
		fmt.Sprintf("a APPEND INBOX (\\Seen) {%d}\r\nc NOOP\r\n", len(body)), // synchronising: never sent
	} {
		out, logged := runFuzzConn([]byte(in))
		if strings.Contains(out, "b OK") || !strings.Contains(out, "a NO [TOOBIG]") || !strings.HasSuffix(out, "c OK NOOP completed\r\n") {
			if len(out) > 2000 {
				out = out[:1000] + " ... " + out[len(out)-1000:]
			}
			t.Errorf("%.40q...: %q (log %q)", in, out, logged)
		}
	}
}
