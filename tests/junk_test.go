package tests

// Issue 10's junk filter, end to end: trained over IMAP in a real client
// session (go-imap v2's imapclient), it decides where the next message from
// outside goes; and the `postie junk train|status` commands.

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-smtp"

	"postie/internal/dnstest"
)

// junkWorldIP stands in for a mail server outside the trusted networks;
// its domain world.test publishes SPF for it, so its senders are verified.
const junkWorldIP = "127.0.0.2"

func spamLike(from string, n int) string {
	return fmt.Sprintf("From: %s\r\nTo: ann@example.test\r\nSubject: spam %d: claim your casino bonus now\r\n"+
		"Message-ID: <spam%d.%s>\r\nDate: Mon, 01 Jun 2026 10:00:00 +0000\r\n\r\n"+
		"Congratulations winner! Your lottery jackpot and free casino bonus are waiting.\r\n"+
		"Cheap pills, bitcoin profits, guaranteed income. Click here to claim your prize today,\r\n"+
		"limited offer, act now, unsubscribe never.\r\n", from, n, n, strings.ReplaceAll(from, "@", "."))
}

func hamLike(from string, n int) string {
	return fmt.Sprintf("From: %s\r\nTo: ann@example.test\r\nSubject: ham %d: agenda for the project meeting\r\n"+
		"Message-ID: <ham%d.%s>\r\nDate: Mon, 01 Jun 2026 10:00:00 +0000\r\n\r\n"+
		"Hi Ann,\r\nhere is the agenda for Thursday's project meeting. Please review the quarterly\r\n"+
		"budget report and the minutes of the last meeting before we meet; the invoice from the\r\n"+
		"printer supplier is attached.\r\nRegards, Tom\r\n", from, n, n, strings.ReplaceAll(from, "@", "."))
}

// sendFromOutside delivers one message to ann over port 25 from junkWorldIP.
func sendFromOutside(t *testing.T, in *instance, from, body string) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(junkWorldIP)}, Timeout: 10 * time.Second}
	nc, err := d.Dial("tcp", in.ports["smtp"])
	if err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	c := smtp.NewClient(nc)
	defer c.Close()
	if err := c.Hello("mail.world.test"); err != nil {
		t.Fatal(err)
	}
	if err := transact(c, from, []string{"ann@example.test"}, body); err != nil {
		t.Fatalf("sending from %s: %v", from, err)
	}
}

// storedIn returns the folder ("INBOX", "Junk") of ann's stored copy whose
// Subject starts with subject, and the copy.
func storedIn(t *testing.T, in *instance, subject string) (string, string) {
	t.Helper()
	root := in.maildir("example.test", "ann")
	folder, found := "", ""
	for name, dir := range map[string]string{"INBOX": root, "Junk": filepath.Join(root, ".Junk")} {
		for _, b := range messages(t, dir) {
			if bytes.Contains(b, []byte("\r\nSubject: "+subject)) {
				if found != "" {
					t.Fatalf("%q is stored twice", subject)
				}
				folder, found = name, string(b)
			}
		}
	}
	if found == "" {
		t.Fatalf("%q is stored in neither INBOX nor Junk", subject)
	}
	return folder, found
}

var spamReasonRE = regexp.MustCompile(`(?m)^X-Spam-Reason: (.*?)\r$`)

// expectFolder checks where a message was filed and why.
func expectFolder(t *testing.T, in *instance, subject, folder, reason string) {
	t.Helper()
	got, msg := storedIn(t, in, subject)
	m := spamReasonRE.FindStringSubmatch(msg)
	if got != folder || m == nil || !strings.HasPrefix(m[1], reason) {
		hdr, _, _ := strings.Cut(msg, "\r\n\r\n")
		t.Fatalf("%q is in %s, want %s with reason %q:\n%s", subject, got, folder, reason, hdr)
	}
	if flagged := strings.Contains(msg, "\r\nX-Spam-Flag: YES\r\n"); flagged != (folder == "Junk") {
		t.Errorf("%q in %s: X-Spam-Flag: YES is there: %v", subject, folder, flagged)
	}
}

// waitTrained polls `postie junk status` until ann's counts are ham and
// spam: IMAP training runs after the command's answer.
func waitTrained(t *testing.T, in *instance, ham, spam int) {
	t.Helper()
	want := fmt.Sprintf("trained     %d ham, %d spam\n", ham, spam)
	deadline := time.Now().Add(30 * time.Second)
	for {
		out := in.mustRun("", "junk", "status", "ann@example.test")
		if strings.Contains(out, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("junk status never showed %q:\n%s\nserver log:\n%s", want, out, in.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// moveBySubject moves ann's messages whose Subject contains subject from
// the selected folder to dest.
func moveBySubject(t *testing.T, c *imapclient.Client, subject, dest string) {
	t.Helper()
	d, err := c.UIDSearch(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: subject}}}, nil).Wait()
	if err != nil || len(d.AllUIDs()) == 0 {
		t.Fatalf("search %q: %v %v", subject, err, d)
	}
	if _, err := c.Move(imap.UIDSetNum(d.AllUIDs()...), dest).Wait(); err != nil {
		t.Fatalf("move %q to %s: %v", subject, dest, err)
	}
}

func TestIssue10JunkFilterLearnsFromIMAP(t *testing.T) {
	dns := dnstest.New(t)
	dns.PTR(junkWorldIP, "mail.world.test")
	dns.A("mail.world.test", junkWorldIP)
	dns.TXT("world.test", "v=spf1 ip4:"+junkWorldIP+" -all")
	in := newInstance(t, fmt.Sprintf("\n[outbound]\nresolver = %q\n\n[spam]\njunk_min_trained = 3\n", dns.Addr()))
	in.addUser("ann@example.test")
	in.start()

	// Untrained, everything goes to the INBOX.
	for i := 1; i <= 4; i++ {
		sendFromOutside(t, in, fmt.Sprintf("spammer%d@world.test", i), spamLike(fmt.Sprintf("spammer%d@world.test", i), i))
		sendFromOutside(t, in, fmt.Sprintf("colleague%d@world.test", i), hamLike(fmt.Sprintf("colleague%d@world.test", i), i))
	}
	expectFolder(t, in, "spam 1:", "INBOX", "untrained")
	expectFolder(t, in, "ham 1:", "INBOX", "untrained")

	// Ann moves the spam into Junk; her client marks the rest $NotJunk, as
	// Thunderbird does with what its own filter finds good.
	c, err := imapclient.DialInsecure(in.ports["imap"], nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("ann@example.test", password("ann@example.test")).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	moveBySubject(t, c, "claim your casino bonus", "Junk")
	d, err := c.UIDSearch(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "agenda"}}}, nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Store(imap.UIDSetNum(d.AllUIDs()...), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{"$NotJunk"}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	waitTrained(t, in, 4, 4)

	// New senders: the words decide.
	sendFromOutside(t, in, "stranger@world.test", spamLike("stranger@world.test", 5))
	expectFolder(t, in, "spam 5:", "Junk", "bayes")
	sendFromOutside(t, in, "newcolleague@world.test", hamLike("newcolleague@world.test", 5))
	expectFolder(t, in, "ham 5:", "INBOX", "bayes")

	// A friend's message that reads like spam goes to Junk until Ann moves
	// it out; then the friend's next one, as spammy, reaches the INBOX.
	sendFromOutside(t, in, "friend@world.test", spamLike("friend@world.test", 6))
	expectFolder(t, in, "spam 6:", "Junk", "bayes")
	if _, err := c.Select("Junk", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	moveBySubject(t, c, "spam 6:", "INBOX")
	waitTrained(t, in, 5, 4)
	sendFromOutside(t, in, "friend@world.test", spamLike("friend@world.test", 7))
	expectFolder(t, in, "spam 7:", "INBOX", "known sender")

	// Junk→Trash teaches nothing: the next training (in order, behind it)
	// finds the counts as they were.
	moveBySubject(t, c, "spam 5:", "Trash")
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	moveBySubject(t, c, "ham 5:", "Junk")
	waitTrained(t, in, 5, 5)
	if err := c.Logout().Wait(); err != nil {
		t.Fatal(err)
	}
}

func TestJunkCommands(t *testing.T) {
	in := newInstance(t, "\n[spam]\njunk_min_trained = 2\n")
	in.addUser("ann@example.test")
	for i := 1; i <= 3; i++ { // INBOX: ham
		in.mustRun(hamLike(fmt.Sprintf("c%d@world.test", i), i), "deliver", "-f", "c@world.test", "ann@example.test")
	}
	// The rest as an admin copying mail over from an old server would put
	// it: files in Maildir++ folders.
	root := in.maildir("example.test", "ann")
	put := func(folder, name, msg string) {
		t.Helper()
		dir := filepath.Join(root, folder)
		for _, sub := range []string{"cur", "new", "tmp"} {
			if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, "maildirfolder"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "new", name), []byte(msg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	put(".Junk", "1700000001.M1P1.old", spamLike("s1@world.test", 1))
	put(".Junk", "1700000002.M2P1.old", spamLike("s2@world.test", 2))
	put(".Junk.Sub", "1700000003.M3P1.old", spamLike("s3@world.test", 3))
	put(".Archive", "1700000004.M4P1.old", hamLike("c4@world.test", 4))
	put(".Trash", "1700000005.M5P1.old", hamLike("c5@world.test", 5))

	out := in.mustRun("", "junk", "status", "ann@example.test")
	if !strings.Contains(out, "trained     0 ham, 0 spam\n") || !strings.Contains(out, "statistics  not yet") {
		t.Errorf("status before training:\n%s", out)
	}
	out = in.mustRun("", "junk", "train", "ann@example.test")
	for _, re := range []string{`(?m)^INBOX +ham +3$`, `(?m)^Archive +ham +1$`, `(?m)^Junk +spam +2$`, `(?m)^Junk/Sub +spam +1$`,
		`(?m)^read 4 ham and 3 spam messages$`, "trained     4 ham, 3 spam\n", `statistics  decide`, `tokens      [1-9]`, `senders     [1-9]`} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("junk train output lacks %s:\n%s", re, out)
		}
	}
	if strings.Contains(out, "Trash") {
		t.Errorf("Trash was trained:\n%s", out)
	}
	if fi, err := os.Stat(filepath.Join(root, "postie-junk")); err != nil || !strings.Contains(out, "postie-junk (") {
		t.Errorf("the filter's file: %v %v\n%s", fi, err, out)
	}
	// Training again counts each message once.
	in.mustRun("", "junk", "train", "ann@example.test")
	if out := in.mustRun("", "junk", "status", "ann@example.test"); !strings.Contains(out, "trained     4 ham, 3 spam\n") {
		t.Errorf("status after training twice:\n%s", out)
	}

	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"junk", "status", "nobody@example.test"}, 1, "no such user"},
		{[]string{"junk", "train", "nobody@example.test"}, 1, "no such user"},
		{[]string{"junk"}, 2, "subcommand"},
		{[]string{"junk", "frob", "ann@example.test"}, 2, "unknown junk subcommand"},
		{[]string{"junk", "train"}, 2, "one ADDRESS"},
		{[]string{"junk", "status", "a@example.test", "b@example.test"}, 2, "one ADDRESS"},
	} {
		_, errOut, code := in.run("", tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.msg) {
			t.Errorf("postie %v: exit %d, %q; want exit %d naming %q", tc.args, code, errOut, tc.code, tc.msg)
		}
	}
}

// learnCall is one request a fake rspamd controller received.
type learnCall struct {
	path, password string
	body           []byte
}

// TestJunkTrainingTeachesRspamd: with [spam] rspamd_controller_url set, the
// IMAP moves into and out of Junk reach rspamd's learn endpoints with the
// message and the controller password.
func TestJunkTrainingTeachesRspamd(t *testing.T) {
	calls := make(chan learnCall, 10)
	ctl := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		calls <- learnCall{r.URL.Path, r.Header.Get("Password"), b}
		io.WriteString(w, `{"success":true}`)
	}))
	defer ctl.Close()
	in := newInstance(t, fmt.Sprintf("\n[spam]\nrspamd_controller_url = %q\nrspamd_password = \"ctl-secret\"\n", ctl.URL))
	in.addUser("ann@example.test")
	in.mustRun(spamLike("s@world.test", 1), "deliver", "-f", "s@world.test", "ann@example.test")
	in.start()
	c, err := imapclient.DialInsecure(in.ports["imap"], nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("ann@example.test", password("ann@example.test")).Wait(); err != nil {
		t.Fatal(err)
	}
	expect := func(path string) {
		t.Helper()
		select {
		case call := <-calls:
			if call.path != path || call.password != "ctl-secret" || !bytes.Contains(call.body, []byte("Subject: spam 1:")) {
				t.Fatalf("rspamd got %s (password %q):\n%s", call.path, call.password, call.body)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("rspamd got no %s:\n%s", path, in.log())
		}
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	moveBySubject(t, c, "spam 1:", "Junk")
	expect("/learnspam")
	if _, err := c.Select("Junk", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	moveBySubject(t, c, "spam 1:", "INBOX")
	expect("/learnham")
}
