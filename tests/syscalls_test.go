package tests

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// The durability rule of the README, seen from the kernel: nothing is
// acknowledged before it is written, fsynced and renamed into place with
// its directory fsynced. TestAckFollowsDurableWrites runs `postie serve`
// under strace(1) and checks, for each way mail comes in, that those
// system calls happen between the client's request and the write of the
// acknowledgement on the client's socket.

// syscallsTraced are the calls the checks read; every other is left out.
const syscallsTraced = "trace=openat,open,creat,write,writev,pwrite64,fsync,fdatasync,sync_file_range,rename,renameat,renameat2,link,linkat"

// needStrace returns strace's path and whether it can filter with
// seccomp-bpf, or skips the test when strace is missing or may not trace
// (ptrace denied, as in some containers).
func needStrace(t *testing.T) (string, bool) {
	t.Helper()
	path, err := exec.LookPath("strace")
	if err != nil {
		t.Skip("strace is not installed: the system-call order before acknowledgements is not checked")
	}
	if out, err := exec.Command(path, "-f", "-qq", "-o", "/dev/null", "true").CombinedOutput(); err != nil {
		t.Skipf("strace cannot trace here (ptrace denied?): %v: %s", err, out)
	}
	seccomp := exec.Command(path, "-f", "--seccomp-bpf", "-qq", "-e", "trace=fsync", "-o", "/dev/null", "true").Run() == nil
	return path, seccomp
}

func TestAckFollowsDurableWrites(t *testing.T) {
	strace, seccomp := needStrace(t)
	world := newRemoteWorld(t)
	in := newInstance(t, world.extraConf)
	in.addUser("ann@example.test")
	tracePath := filepath.Join(in.dir, "strace.txt")
	in.wrap = []string{strace, "-f", "-qq", "-yy", "-s", "48", "-e", syscallsTraced, "-o", tracePath}
	if seccomp {
		in.wrap = append(in.wrap, "--seccomp-bpf")
	}
	in.start()

	mxClient := smtpOverMX(t, in)
	imapClient := imapAppend(t, in)
	subClient := submitRemote(t, in)
	if err := in.stop(); err != nil { // strace ends with its tracee and flushes
		t.Fatalf("stop: %v", err)
	}
	tr, err := readTrace(tracePath)
	if err != nil {
		t.Fatal(err)
	}
	mail := filepath.Join(in.dir, "data", "mail")
	ann := filepath.Join(mail, "example.test", "ann")
	if err := tr.checkMaildirAck(mxClient, ann, `"354 `, `"250 `); err != nil {
		t.Errorf("SMTP delivery to a local user: %v", err)
	}
	if err := tr.checkMaildirAck(imapClient, ann, "", `OK [APPENDUID`); err != nil {
		t.Errorf("IMAP APPEND: %v", err)
	}
	if err := tr.checkUIDListAck(imapClient, ann, `OK [APPENDUID`); err != nil {
		t.Errorf("IMAP APPEND: %v", err)
	}
	if err := tr.checkSpoolAck(subClient, filepath.Join(in.dir, "data", "queue")); err != nil {
		t.Errorf("submission to a remote recipient: %v", err)
	}
	if t.Failed() {
		b, _ := os.ReadFile(tracePath)
		t.Logf("the trace:\n%s", b)
	}
}

// smtpOverMX delivers one message to ann over the MX port and returns the
// client's address, which names its socket in the trace.
func smtpOverMX(t *testing.T, in *instance) string {
	t.Helper()
	conn, err := net.Dial("tcp", in.ports["smtp"])
	if err != nil {
		t.Fatal(err)
	}
	c := smtp.NewClient(conn)
	defer c.Close()
	if err := c.Hello("client.remote.test"); err != nil {
		t.Fatal(err)
	}
	if err := transact(c, "bob@remote.test", []string{"ann@example.test"}, "Subject: traced smtp\r\n\r\nx\r\n"); err != nil {
		t.Fatalf("SMTP: %v\n%s", err, in.log())
	}
	return conn.LocalAddr().String()
}

// imapAppend appends one message to ann's INBOX and returns the client's
// address.
func imapAppend(t *testing.T, in *instance) string {
	t.Helper()
	conn, err := net.Dial("tcp", in.ports["imap"])
	if err != nil {
		t.Fatal(err)
	}
	c := imapclient.New(conn, nil)
	defer c.Close()
	if err := c.Login("ann@example.test", password("ann@example.test")).Wait(); err != nil {
		t.Fatalf("IMAP LOGIN: %v", err)
	}
	msg := "Subject: traced append\r\n\r\nx\r\n"
	cmd := c.Append("INBOX", int64(len(msg)), nil)
	if _, err := cmd.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := cmd.Wait()
	if err != nil || data.UID == 0 {
		t.Fatalf("IMAP APPEND: %v %+v", err, data)
	}
	if err := c.Logout().Wait(); err != nil {
		t.Fatal(err)
	}
	return conn.LocalAddr().String()
}

// submitRemote submits a message for a remote recipient (it goes to the
// queue) and returns the client's address.
func submitRemote(t *testing.T, in *instance) string {
	t.Helper()
	conn, err := net.Dial("tcp", in.ports["submission"])
	if err != nil {
		t.Fatal(err)
	}
	c, err := smtp.NewClientStartTLS(conn, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", "ann@example.test", password("ann@example.test"))); err != nil {
		t.Fatal(err)
	}
	if err := transact(c, "ann@example.test", []string{"bob@remote.test"}, "From: ann@example.test\r\nSubject: traced submission\r\n\r\nx\r\n"); err != nil {
		t.Fatalf("submission: %v\n%s", err, in.log())
	}
	return conn.LocalAddr().String()
}

// ---- the trace ----

// call is one system call of the trace. start and end are its positions
// in the trace: strace prints a call when it enters and, if another
// thread's call came between, again when it returns; a call's effects
// are visible from end on, and a call that starts after another's end
// began after it returned.
type call struct {
	pid        int
	name, args string // args as strace prints them, with -yy paths
	ret        string
	start, end int
}

type trace []call

var (
	callRE    = regexp.MustCompile(`^(\d+) +(\w+)\((.*?)(?:\) += (.*)| <unfinished \.\.\.>)$`)
	resumedRE = regexp.MustCompile(`^(\d+) +<\.\.\. (\w+) resumed>(.*?)\) += (.*)$`)
	fdPathRE  = regexp.MustCompile(`^-?\w+<(.*?)>`) // `12</path>` or `AT_FDCWD</cwd>`
	quotedRE  = regexp.MustCompile(`"((?:[^"\\]|\\.)*)"`)
)

func readTrace(path string) (trace, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseTrace(f)
}

func parseTrace(f io.Reader) (trace, error) {
	var tr trace
	open := map[int]int{} // pid → index in tr of its unfinished call
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 0; sc.Scan(); n++ {
		line := sc.Text()
		if m := resumedRE.FindStringSubmatch(line); m != nil {
			pid, _ := strconv.Atoi(m[1])
			if i, ok := open[pid]; ok && tr[i].name == m[2] {
				tr[i].args += m[3]
				tr[i].ret, tr[i].end = m[4], n
				delete(open, pid)
			}
			continue
		}
		m := callRE.FindStringSubmatch(line)
		if m == nil {
			continue // signals, exits
		}
		pid, _ := strconv.Atoi(m[1])
		c := call{pid: pid, name: m[2], args: m[3], ret: m[4], start: n, end: n}
		if m[4] == "" {
			c.end = -1
			open[pid] = len(tr)
		}
		tr = append(tr, c)
	}
	return tr, sc.Err()
}

// fdPath is the path strace shows for a call's first argument, a
// descriptor: "/x/new" for `fsync(12</x/new>)`.
func (c call) fdPath() string {
	if m := fdPathRE.FindStringSubmatch(c.args); m != nil {
		return m[1]
	}
	return ""
}

// renamed returns the old and new paths of a rename or link.
func (c call) renamed() (string, string, bool) {
	var dirs []string
	for _, a := range splitArgs(c.args) {
		if m := fdPathRE.FindStringSubmatch(a); m != nil {
			dirs = append(dirs, m[1])
		}
	}
	names := quotedRE.FindAllStringSubmatch(c.args, -1)
	if len(names) < 2 {
		return "", "", false
	}
	abs := func(i int) string {
		p := names[i][1]
		if !filepath.IsAbs(p) && i < len(dirs) {
			p = filepath.Join(dirs[i], p)
		}
		return p
	}
	switch c.name {
	case "rename", "link", "renameat", "renameat2", "linkat":
		return abs(0), abs(1), true
	}
	return "", "", false
}

func splitArgs(args string) []string { return strings.Split(args, ", ") }

func (c call) ok() bool { return c.end >= 0 && !strings.HasPrefix(c.ret, "-") }

// socketWrites are the writes on the server's side of the connection
// from client ("127.0.0.1:port"), in order.
func (tr trace) socketWrites(client string) []call {
	var out []call
	for _, c := range tr {
		if (c.name == "write" || c.name == "writev") && strings.Contains(c.args, "->"+client+"]") {
			out = append(out, c)
		}
	}
	return out
}

// find returns the first completed call in (after, before) for which match
// is true; positions are line numbers of the trace, signal lines included.
func (tr trace) find(after, before int, match func(call) bool) (call, bool) {
	for _, c := range tr {
		if c.start > after && c.ok() && c.end < before && match(c) {
			return c, true
		}
	}
	return call{}, false
}

func isFsync(c call) bool { return c.name == "fsync" || c.name == "fdatasync" }

func isRename(c call) bool {
	_, _, ok := c.renamed()
	return ok
}

// ack finds the acknowledgement on client's socket: the first write
// holding ackText after the write holding fromText (the server's go-ahead
// for the message), or, with fromText "", after the server's previous
// write (it can write nothing while it stores what the client sent). It
// returns the go-ahead's and the ack's positions.
func (tr trace) ack(client, fromText, ackText string) (int, int, error) {
	from, prev := -1, -1
	for _, w := range tr.socketWrites(client) {
		switch {
		case from < 0 && fromText != "" && strings.Contains(w.args, fromText):
			from = w.end
		case (from >= 0 || fromText == "") && strings.Contains(w.args, ackText):
			if fromText == "" {
				from = prev
			}
			if from < 0 {
				break
			}
			return from, w.start, nil
		}
		prev = w.end
	}
	return 0, 0, fmt.Errorf("no write of %s after %q on the socket of %s", ackText, fromText, client)
}

// checkMaildirAck checks that between the go-ahead and the ack the
// message file was fsynced, then renamed into new/ or cur/ of the user's
// Maildir root, then that directory fsynced.
func (tr trace) checkMaildirAck(client, root, fromText, ackText string) error {
	from, ack, err := tr.ack(client, fromText, ackText)
	if err != nil {
		return err
	}
	placed := func(p string) bool {
		dir := filepath.Dir(p)
		return dir == filepath.Join(root, "new") || dir == filepath.Join(root, "cur")
	}
	ren, ok := tr.find(from, ack, func(c call) bool {
		old, to, ok := c.renamed()
		return ok && placed(to) && !placed(old) // not a flag change of a message already there
	})
	if !ok {
		return fmt.Errorf("no rename into %s/{new,cur} before %s", root, ackText)
	}
	tmp, to, _ := ren.renamed()
	if _, ok := tr.find(from, ren.start, func(c call) bool { return isFsync(c) && c.fdPath() == tmp }); !ok {
		return fmt.Errorf("%s was not fsynced before its rename to %s", tmp, to)
	}
	if _, ok := tr.find(ren.end, ack, func(c call) bool { return isFsync(c) && c.fdPath() == filepath.Dir(to) }); !ok {
		return fmt.Errorf("%s was not fsynced between the rename of %s and %s", filepath.Dir(to), filepath.Base(to), ackText)
	}
	return nil
}

// checkUIDListAck checks that an APPEND's UID was appended to the
// folder's postie-uidlist and fsynced before the OK [APPENDUID].
func (tr trace) checkUIDListAck(client, folder, ackText string) error {
	from, ack, err := tr.ack(client, "", ackText)
	if err != nil {
		return err
	}
	list := filepath.Join(folder, "postie-uidlist")
	w, ok := tr.find(from, ack, func(c call) bool {
		return (c.name == "write" || c.name == "pwrite64" || c.name == "writev") && c.fdPath() == list
	})
	if !ok {
		return fmt.Errorf("no write to %s before %s", list, ackText)
	}
	if _, ok := tr.find(w.end, ack, func(c call) bool { return isFsync(c) && c.fdPath() == list }); !ok {
		return fmt.Errorf("%s was not fsynced between its append and %s", list, ackText)
	}
	return nil
}

// checkSpoolAck checks the queue's commit before a submission's 250: the
// message file fsynced, then its state file fsynced and renamed into
// place, then the spool directory fsynced. The client talks TLS, so the
// 250 is found as the first write on its socket after the message file
// was created: the server writes nothing else to a client in DATA.
func (tr trace) checkSpoolAck(client, spool string) error {
	created, ok := tr.find(-1, math.MaxInt, func(c call) bool {
		return (c.name == "openat" || c.name == "open" || c.name == "creat") && strings.Contains(c.args, "O_CREAT") &&
			filepath.Dir(quotedArg(c)) == spool && strings.HasSuffix(quotedArg(c), ".msg")
	})
	if !ok {
		return fmt.Errorf("no message file created in %s", spool)
	}
	msg := quotedArg(created)
	ack := -1
	for _, w := range tr.socketWrites(client) {
		if w.start > created.end {
			ack = w.start
			break
		}
	}
	if ack < 0 {
		return fmt.Errorf("no reply to %s after %s was created", client, msg)
	}
	msgSync, ok := tr.find(created.end, ack, func(c call) bool { return isFsync(c) && c.fdPath() == msg })
	if !ok {
		return fmt.Errorf("%s was not fsynced before the 250", msg)
	}
	state := strings.TrimSuffix(msg, ".msg") + ".json"
	ren, ok := tr.find(msgSync.end, ack, func(c call) bool {
		_, to, ok := c.renamed()
		return ok && to == state
	})
	if !ok {
		return fmt.Errorf("no rename to %s between the fsync of the message file and the 250", state)
	}
	tmp, _, _ := ren.renamed()
	if _, ok := tr.find(msgSync.end, ren.start, func(c call) bool { return isFsync(c) && c.fdPath() == tmp }); !ok {
		return fmt.Errorf("state file %s was not fsynced before its rename", tmp)
	}
	if _, ok := tr.find(ren.end, ack, func(c call) bool { return isFsync(c) && c.fdPath() == spool }); !ok {
		return fmt.Errorf("spool directory %s was not fsynced between the state rename and the 250", spool)
	}
	return nil
}

// quotedArg is a call's first quoted (path) argument, made absolute
// against the directory descriptor before it.
func quotedArg(c call) string {
	m := quotedRE.FindStringSubmatch(c.args)
	if m == nil {
		return ""
	}
	if !filepath.IsAbs(m[1]) {
		return filepath.Join(c.fdPath(), m[1])
	}
	return m[1]
}

// TestTraceChecks feeds the checks above traces in the right order and
// reordered ones, so that TestAckFollowsDurableWrites is known to be able
// to fail: an acknowledgement written before a step completed is caught.
func TestTraceChecks(t *testing.T) {
	const (
		sock   = `write(9<TCP:[127.0.0.1:40025->127.0.0.1:5000]>, `
		ann    = "/d/mail/example.test/ann"
		spool  = "/d/queue"
		client = "127.0.0.1:5000"
	)
	smtpGood := []string{
		`7 ` + sock + `"354 Go ahead"..., 20) = 20`,
		`7 openat(AT_FDCWD</>, "/d/mail/example.test/ann/tmp/m1", O_WRONLY|O_CREAT|O_EXCL, 0600) = 12</d/mail/example.test/ann/tmp/m1>`,
		`7 fsync(12</d/mail/example.test/ann/tmp/m1>) = 0`,
		`7 renameat(AT_FDCWD</>, "/d/mail/example.test/ann/tmp/m1", AT_FDCWD</>, "/d/mail/example.test/ann/new/m1,S=5") = 0`,
		`7 fsync(13</d/mail/example.test/ann/new>) = 0`,
		`7 ` + sock + `"250 2.0.0 OK"..., 20) = 20`,
	}
	swap := func(lines []string, i, j int) []string {
		out := append([]string(nil), lines...)
		out[i], out[j] = out[j], out[i]
		return out
	}
	drop := func(lines []string, i int) []string {
		return append(append([]string(nil), lines[:i]...), lines[i+1:]...)
	}
	check := func(name string, lines []string, f func(trace) error, wantOK bool) {
		t.Helper()
		tr, err := parseTrace(strings.NewReader(strings.Join(lines, "\n") + "\n"))
		if err != nil {
			t.Fatal(err)
		}
		err = f(tr)
		if (err == nil) != wantOK {
			t.Errorf("%s: check gave %v, want ok=%v", name, err, wantOK)
		} else if err != nil {
			t.Logf("%s: caught: %v", name, err)
		}
	}
	smtpCheck := func(tr trace) error { return tr.checkMaildirAck(client, ann, `"354 `, `"250 `) }
	check("smtp in order", smtpGood, smtpCheck, true)
	check("smtp: 250 before the directory fsync", swap(smtpGood, 4, 5), smtpCheck, false)
	check("smtp: rename before the file fsync", swap(smtpGood, 2, 3), smtpCheck, false)
	check("smtp: no directory fsync", drop(smtpGood, 4), smtpCheck, false)
	check("smtp: no file fsync", drop(smtpGood, 2), smtpCheck, false)
	// The directory fsync started before the 250 but returned after it.
	check("smtp: directory fsync unfinished at the 250", []string{
		smtpGood[0], smtpGood[1], smtpGood[2], smtpGood[3],
		`7 fsync(13</d/mail/example.test/ann/new> <unfinished ...>`,
		`8 ` + sock + `"250 2.0.0 OK"..., 20) = 20`,
		`7 <... fsync resumed>) = 0`,
	}, smtpCheck, false)
	check("smtp: another thread's call between entry and return", []string{
		smtpGood[0], smtpGood[1], smtpGood[2], smtpGood[3],
		`7 fsync(13</d/mail/example.test/ann/new> <unfinished ...>`,
		`8 write(2</d/log>, "time=..."..., 20) = 20`,
		`7 <... fsync resumed>) = 0`,
		smtpGood[5],
	}, smtpCheck, true)

	appendGood := []string{
		`7 ` + sock + `"T1 OK LOGIN completed\r\n", 23) = 23`,
		`7 fsync(12</d/mail/example.test/ann/tmp/m2>) = 0`,
		`7 write(14</d/mail/example.test/ann/postie-uidlist>, "2 T1 :m2\n", 9) = 9`,
		`7 fsync(14</d/mail/example.test/ann/postie-uidlist>) = 0`,
		`7 renameat(AT_FDCWD</>, "/d/mail/example.test/ann/tmp/m2", AT_FDCWD</>, "/d/mail/example.test/ann/cur/m2:2,") = 0`,
		`7 fsync(13</d/mail/example.test/ann/cur>) = 0`,
		`7 ` + sock + `"T2 OK [APPENDUID 1 2] APPEND completed"..., 40) = 40`,
	}
	appendCheck := func(tr trace) error {
		if err := tr.checkMaildirAck(client, ann, "", `OK [APPENDUID`); err != nil {
			return err
		}
		return tr.checkUIDListAck(client, ann, `OK [APPENDUID`)
	}
	check("append in order", appendGood, appendCheck, true)
	check("append: OK before the uidlist fsync", append(drop(appendGood, 3), appendGood[3]), appendCheck, false)
	check("append: OK before the directory fsync", swap(appendGood, 5, 6), appendCheck, false)
	check("append: no uidlist write", drop(appendGood, 2), appendCheck, false)

	tlsWrite := `7 ` + sock + `"\27\3\3\0E\365"..., 74) = 74`
	spoolGood := []string{
		tlsWrite,
		`7 openat(AT_FDCWD</>, "/d/queue/q1.msg", O_WRONLY|O_CREAT|O_EXCL|O_CLOEXEC, 0600) = 16</d/queue/q1.msg>`,
		`7 fsync(16</d/queue/q1.msg>) = 0`,
		`7 openat(AT_FDCWD</>, "/d/queue/.tmp-q1.json-1", O_RDWR|O_CREAT|O_EXCL|O_CLOEXEC, 0600) = 16</d/queue/.tmp-q1.json-1>`,
		`7 fsync(16</d/queue/.tmp-q1.json-1>) = 0`,
		`7 renameat(AT_FDCWD</>, "/d/queue/.tmp-q1.json-1", AT_FDCWD</>, "/d/queue/q1.json") = 0`,
		`7 fsync(16</d/queue>) = 0`,
		tlsWrite,
	}
	spoolCheck := func(tr trace) error { return tr.checkSpoolAck(client, spool) }
	check("spool in order", spoolGood, spoolCheck, true)
	check("spool: 250 before the directory fsync", swap(spoolGood, 6, 7), spoolCheck, false)
	check("spool: state renamed before the message fsync", []string{
		spoolGood[0], spoolGood[1], spoolGood[3], spoolGood[4], spoolGood[5], spoolGood[2], spoolGood[6], spoolGood[7],
	}, spoolCheck, false)
	check("spool: state file not fsynced", drop(spoolGood, 4), spoolCheck, false)
	check("spool: renamed with relative names", []string{
		spoolGood[0], spoolGood[1], spoolGood[2], spoolGood[3], spoolGood[4],
		`7 renameat(5</d/queue>, ".tmp-q1.json-1", 5</d/queue>, "q1.json") = 0`,
		spoolGood[6], spoolGood[7],
	}, spoolCheck, true)
}
