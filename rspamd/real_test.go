//go:build linux

package rspamd

// Tests against the real rspamd of the Debian package, run by the test as
// its own child with a private configuration on loopback ports. They skip
// when rspamd is not installed (.ci/run installs it).

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"postie/internal/dnstest"
)

// realRspamd is an rspamd the test started.
type realRspamd struct {
	url, controller string // base URLs of the normal and controller workers
	password        string
	bayes           bool // a redis-server backs the Bayes statistics
	dns             *dnstest.Server
	dir             string
	startup         time.Duration // from exec to both workers answering
	stop            func()        // ends rspamd; safe to call again
}

// The start-up bound. Measured on 2 busy cores (load 12): rspamd answers
// after 0.3-1 s with the Hyperscan cache of an earlier run, 8.5 s without.
const rspamdStartTimeout = 90 * time.Second

// startRspamd runs rspamd (and redis-server for Bayes when installed) for
// the rest of t, or skips t when rspamd is not installed.
func startRspamd(t *testing.T) *realRspamd {
	t.Helper()
	bin, err := exec.LookPath("rspamd")
	if err != nil {
		t.Skip("rspamd is not installed (apt-get install rspamd, as .ci/run does); skipping the tests against the real rspamd")
	}
	r := &realRspamd{password: "test-controller-secret", dir: t.TempDir(), dns: dnstest.New(t)}
	// Every name rspamd might look up is answered here, on loopback:
	// NXDOMAIN unless a test adds records.
	r.dns.PTR("192.0.2.25", "mx.sender.test")
	r.dns.A("mx.sender.test", "192.0.2.25")
	redisAddr := ""
	if _, err := exec.LookPath("redis-server"); err == nil {
		redisAddr = startRedis(t, r.dir)
		r.bayes = true
	} else {
		t.Log("redis-server is not installed: rspamd runs without a Bayes backend")
	}
	normal, controller := freePort(t), freePort(t)
	r.url = "http://" + normal
	r.controller = "http://" + controller
	if err := r.writeConfig(normal, controller, redisAddr); err != nil {
		t.Fatal(err)
	}
	args := []string{"-f", "-c", filepath.Join(r.dir, "rspamd.conf")}
	if os.Geteuid() == 0 {
		args = append(args, "-i") // rspamd refuses to run its workers as root otherwise
	}
	for _, v := range []string{"CONFDIR=/etc/rspamd", "LOCAL_CONFDIR=" + r.dir, "RUNDIR=" + r.sub("run"), "DBDIR=" + r.sub("db"), "LOGDIR=" + r.sub("log")} {
		args = append(args, "--var", v)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = r.dir
	cmd.Stdout, cmd.Stderr = logFile(t, r.sub("log"), "rspamd.out"), logFile(t, r.sub("log"), "rspamd.out")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start rspamd: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	r.stop = sync.OnceFunc(func() { stopChild(t, "rspamd", cmd, exited) })
	t.Cleanup(r.stop)
	for _, base := range []string{r.url, r.controller} {
		if err := waitPing(base, exited, start.Add(rspamdStartTimeout)); err != nil {
			r.dumpLog(t)
			t.Fatalf("rspamd at %s: %v", base, err)
		}
	}
	r.startup = time.Since(start)
	t.Logf("rspamd %s answered after %v", bin, r.startup.Round(time.Millisecond))
	for _, hp := range []string{normal, controller} {
		if err := ownedBy(hp, cmd.Process.Pid); err != nil {
			t.Fatalf("the rspamd answering on %s: %v", hp, err)
		}
	}
	return r
}

func (r *realRspamd) sub(name string) string {
	p := filepath.Join(r.dir, name)
	os.MkdirAll(p, 0o700)
	return p
}

// writeConfig writes a top-level rspamd.conf that replaces Debian's (no
// proxy or fuzzy workers, our ports, our directories, our DNS server) and
// local.d files that turn off the modules that would wait on the network
// (RBLs, SPF/DKIM/DMARC, fuzzy, maps fetched over https, update checks).
func (r *realRspamd) writeConfig(normal, controller, redisAddr string) error {
	tld := filepath.Join(r.dir, "tld.dat")
	// A short public-suffix list: the full one takes rspamd 20 s to compile
	// on each start with a fresh cache directory.
	if err := os.WriteFile(tld, []byte("com\norg\nnet\ntest\nexample\n"), 0o600); err != nil {
		return err
	}
	// One language for the language detector (all 46 take rspamd seconds
	// of CPU at each start), when the package has them where Debian puts
	// them.
	langConf := ""
	if _, err := os.Stat(filepath.Join(debianLanguages, "en.json")); err == nil {
		langs := r.sub("languages")
		for _, f := range []string{"en.json", "stop_words"} {
			if err := os.Symlink(filepath.Join(debianLanguages, f), filepath.Join(langs, f)); err != nil {
				return err
			}
		}
		langConf = fmt.Sprintf("lang_detection { languages = %q; }\n", langs)
	}
	conf := fmt.Sprintf(`.include "$CONFDIR/common.conf"
options {
    pidfile = "$RUNDIR/rspamd.pid";
    filters = "chartable,regexp";
    cache_file = "$DBDIR/symbols.cache";
    dynamic_conf = "$DBDIR/rspamd_dynamic";
    history_file = "$DBDIR/rspamd.history";
    control_socket = "$DBDIR/rspamd.sock mode=0600";
    explicit_modules = ["settings", "bayes_expiry"];
    allow_raw_input = true;
    rrd = "$DBDIR/rspamd.rrd";
    stats_file = "$DBDIR/stats.ucl";
    hs_cache_dir = %[7]q;
    tempdir = %[1]q;
    url_tld = %[2]q;
    dns { nameserver = [%[3]q]; timeout = 0.5s; retransmits = 1; }
    disable_monitoring = true;
    enable_test_patterns = true; # GTUBE
    task_timeout = 8s;
}
logging { type = "file"; filename = "$LOGDIR/rspamd.log"; level = "info"; }
%[8]sworker "normal" {
    bind_socket = %[4]q;
    count = 1;
    mime = true;
    task_timeout = 8s;
}
worker "controller" {
    bind_socket = %[5]q;
    count = 1;
    password = %[6]q;
    enable_password = %[6]q;
    secure_ip = "192.0.2.1"; # not loopback: the password is checked
}
`, r.sub("tmp"), tld, r.dns.Addr(), normal, controller, r.password, hsCacheDir(r.sub("db")), langConf)
	files := map[string]string{"rspamd.conf": conf}
	for _, m := range []string{"arc", "asn", "dkim", "dmarc", "emails", "fuzzy_check", "hfilter", "mid", "mime_types",
		"multimap", "mx_check", "phishing", "rbl", "rspamd_update", "spf", "surbl", "whitelist"} {
		files[filepath.Join("local.d", m+".conf")] = "enabled = false;\n"
	}
	if redisAddr != "" {
		// Redis for the Bayes classifier only, so greylisting, rate
		// limits and the rest stay off.
		files[filepath.Join("local.d", "classifier-bayes.conf")] = fmt.Sprintf("servers = %q;\n", redisAddr)
	}
	os.MkdirAll(filepath.Join(r.dir, "local.d"), 0o700)
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(r.dir, name), []byte(text), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// debianLanguages holds the language models of Debian's rspamd package.
const debianLanguages = "/usr/share/rspamd/languages"

// hsCacheDir returns the directory where rspamd keeps the Hyperscan
// databases it compiles from its rules: a cache shared by the test runs
// (the files are named by a hash of their patterns and written by rename,
// so runs and rspamd versions cannot mix them up), since compiling them
// takes rspamd seconds of CPU at each start. Without a user cache
// directory, dbDir: each run compiles afresh.
func hsCacheDir(dbDir string) string {
	base, err := os.UserCacheDir()
	if err != nil {
		return dbDir
	}
	dir := filepath.Join(base, "postie-tests", "rspamd-hs")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return dbDir
	}
	return dir
}

// dumpLog copies the end of rspamd's log into the test log.
func (r *realRspamd) dumpLog(t *testing.T) {
	for _, name := range []string{"rspamd.out", "rspamd.log"} {
		b, _ := os.ReadFile(filepath.Join(r.dir, "log", name))
		if len(b) > 8000 {
			b = b[len(b)-8000:]
		}
		t.Logf("%s:\n%s", name, b)
	}
}

// startRedis runs redis-server on a free loopback port, without
// persistence, for the rest of t, and returns its address.
func startRedis(t *testing.T, dir string) string {
	t.Helper()
	addr := freePort(t)
	_, port, _ := net.SplitHostPort(addr)
	rdir := filepath.Join(dir, "redis")
	os.MkdirAll(rdir, 0o700)
	cmd := exec.Command("redis-server", "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no",
		"--dir", rdir, "--daemonize", "no", "--protected-mode", "yes")
	cmd.Stdout, cmd.Stderr = logFile(t, rdir, "redis.log"), logFile(t, rdir, "redis.log")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { stopChild(t, "redis-server", cmd, exited) })
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("redis-server exited: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server did not listen on %s", addr)
		}
	}
	if err := ownedBy(addr, cmd.Process.Pid); err != nil {
		t.Fatalf("the redis-server on %s: %v", addr, err)
	}
	return addr
}

// freePort returns a loopback "host:port" the kernel picked free.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func logFile(t *testing.T, dir, name string) *os.File {
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// waitPing polls base+"/ping" until it answers "pong", the process exits
// or the deadline passes.
func waitPing(base string, exited <-chan error, deadline time.Time) error {
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil}}
	defer hc.CloseIdleConnections()
	for {
		resp, err := hc.Get(base + "/ping")
		if err == nil {
			b := make([]byte, 16)
			n, _ := resp.Body.Read(b)
			resp.Body.Close()
			if strings.TrimSpace(string(b[:n])) == "pong" {
				return nil
			}
		}
		select {
		case err := <-exited:
			return fmt.Errorf("exited before answering: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return errors.New("no answer to /ping before the start-up deadline")
		}
	}
}

// stopChild ends a child the test started: SIGTERM, then after 10 s
// SIGKILL to its process group (its own workers).
func stopChild(t *testing.T, name string, cmd *exec.Cmd, exited <-chan error) {
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Logf("%s did not stop on SIGTERM; killing its process group", name)
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
}

// ownedBy checks, through /proc, that the socket listening on hostport is
// held only by pid or its children: the server answering is the one the
// test started, not some other rspamd on the machine.
func ownedBy(hostport string, pid int) error {
	inode, err := listenInode(hostport)
	if err != nil {
		return err
	}
	target := "socket:[" + inode + "]"
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return err
	}
	holders := 0
	for _, p := range procs {
		n, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", n))
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", n, fd.Name())); l == target {
				if n != pid && parentOf(n) != pid {
					return fmt.Errorf("held by process %d, neither our child %d nor one of its children", n, pid)
				}
				holders++
				break
			}
		}
	}
	if holders == 0 {
		return fmt.Errorf("no process holds the listening socket (inode %s)", inode)
	}
	return nil
}

// listenInode finds the inode of the TCP socket listening on hostport in
// /proc/net/tcp.
func listenInode(hostport string) (string, error) {
	ap, err := netip.ParseAddrPort(hostport)
	if err != nil {
		return "", err
	}
	a := ap.Addr().As4()
	want := fmt.Sprintf("%02X%02X%02X%02X:%04X", a[3], a[2], a[1], a[0], ap.Port())
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 9 && fields[1] == want && fields[3] == "0A" { // 0A: LISTEN
			return fields[9], nil
		}
	}
	return "", fmt.Errorf("nothing listens on %s", hostport)
}

func parentOf(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	// pid (comm) state ppid ...: comm may hold spaces, so cut after ')'.
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 2 {
		return -1
	}
	ppid, _ := strconv.Atoi(fields[1])
	return ppid
}

// The GTUBE strings rspamd knows (with enable_test_patterns): X rejects,
// Y adds a header, Z rewrites the subject.
const gtube = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

func testMessage(subject, body string) string {
	return "From: Alice Example <alice@sender.test>\r\n" +
		"To: bob@example.test\r\n" +
		"Subject: " + subject + "\r\n" +
		"Message-ID: <" + strconv.Itoa(len(body)) + "." + strings.ReplaceAll(subject, " ", ".") + "@sender.test>\r\n" +
		"Date: Thu, 03 Dec 2026 08:00:00 +0000\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"\r\n" + body
}

const plainBody = "Hi Bob,\r\n\r\nshall we have lunch tomorrow at noon at the usual place near the office?\r\n" +
	"I will bring the notes from the meeting about the new project plan and the budget.\r\n\r\nAlice\r\n"

func plainMeta() Meta {
	return Meta{
		IP: netip.MustParseAddr("192.0.2.25"), Helo: "mx.sender.test", From: "alice@sender.test",
		Rcpts: []string{"bob@example.test"}, Hostname: "mx.sender.test", QueueID: "Q1",
	}
}

func TestRealRspamd(t *testing.T) {
	r := startRspamd(t)
	c, err := New(Options{URL: r.url, ControllerURL: r.controller, Password: r.password, Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	check := func(t *testing.T, msg string, meta Meta) Result {
		t.Helper()
		start := time.Now()
		res, err := c.Check(ctx, strings.NewReader(msg), meta)
		if err != nil {
			r.dumpLog(t)
			t.Fatalf("Check: %v", err)
		}
		t.Logf("%v: %s", time.Since(start).Round(time.Millisecond), res.Header)
		return res
	}

	t.Cleanup(func() { t.Logf("rspamd asked the test's DNS server %d queries", r.dns.Total()) })
	t.Run("GTUBE rejects", func(t *testing.T) {
		res := check(t, testMessage("test", gtube+"\r\n"), plainMeta())
		if res.Action != ActionReject || !res.Reject() || res.SoftReject() || res.Junk() {
			t.Errorf("action %q (reject %v), want %q", res.Action, res.Reject(), ActionReject)
		}
		if !hasSymbol(res, "GTUBE") || !strings.HasPrefix(res.Header, "default: True [") {
			t.Errorf("symbols %v, header %q", res.Symbols, res.Header)
		}
	})
	t.Run("GTUBE variants file into Junk", func(t *testing.T) {
		res := check(t, testMessage("test", "Y"+gtube[1:]+"\r\n"), plainMeta())
		if res.Action != ActionAddHeader || !res.Junk() || res.Reject() {
			t.Errorf("action %q, want %q", res.Action, ActionAddHeader)
		}
		res = check(t, testMessage("test", "Z"+gtube[1:]+"\r\n"), plainMeta())
		if res.Action != ActionRewriteSubject || !res.Junk() || !strings.Contains(res.Subject, "test") {
			t.Errorf("action %q subject %q, want %q with the subject", res.Action, res.Subject, ActionRewriteSubject)
		}
	})
	t.Run("plain message passes", func(t *testing.T) {
		// A reader of unknown length: Go sends the body chunked.
		start := time.Now()
		res, err := c.Check(ctx, io.MultiReader(strings.NewReader(testMessage("lunch tomorrow", plainBody))), plainMeta())
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		t.Logf("%v: %s", time.Since(start).Round(time.Millisecond), res.Header)
		if res.Action != ActionNoAction || res.Reject() || res.SoftReject() || res.Junk() {
			t.Errorf("action %q, want %q", res.Action, ActionNoAction)
		}
		if res.Score >= res.Required || res.Required <= 0 {
			t.Errorf("score %v / required %v", res.Score, res.Required)
		}
		if !strings.HasPrefix(res.Header, "default: False [") {
			t.Errorf("header %q", res.Header)
		}
	})
	t.Run("envelope reaches rspamd", func(t *testing.T) {
		// The same message checked with two envelopes: rspamd's symbols
		// follow the envelope, so our headers arrived, each Rcpt included.
		msg := strings.Replace(testMessage("lunch tomorrow", plainBody), "To: bob@example.test", "To: bob@example.test, carol@example.test", 1)
		m := plainMeta()
		m.Rcpts = []string{"bob@example.test", "carol@example.test"}
		if res := check(t, msg, m); !hasSymbol(res, "FROM_EQ_ENVFROM") || !hasSymbol(res, "TO_MATCH_ENVRCPT_ALL") {
			t.Errorf("symbols %v, want FROM_EQ_ENVFROM and TO_MATCH_ENVRCPT_ALL", res.Symbols)
		}
		// Without a Hostname rspamd resolves the client's address itself,
		// from the test's DNS server.
		m.Hostname = ""
		if res := check(t, msg, m); hasSymbol(res, "RDNS_NONE") || hasSymbol(res, "RDNS_DNSFAIL") || r.dns.Count("25.2.0.192.in-addr.arpa", "PTR") == 0 {
			t.Errorf("symbols %v, PTR queries %d: want rspamd to resolve 192.0.2.25 through the test's DNS server",
				res.Symbols, r.dns.Count("25.2.0.192.in-addr.arpa", "PTR"))
		}
		m.From = "bounces@lists.sender.test"
		m.Rcpts = []string{"carol@example.test"}
		if res := check(t, msg, m); !hasSymbol(res, "FROM_NEQ_ENVFROM") || !hasSymbol(res, "TO_MATCH_ENVRCPT_SOME") {
			t.Errorf("symbols %v, want FROM_NEQ_ENVFROM and TO_MATCH_ENVRCPT_SOME", res.Symbols)
		}
	})
	t.Run("learn", func(t *testing.T) {
		msg := testMessage("cheap watches", "Buy cheap watches and replica bags today, best prices online, "+
			"click the link to order now and get a free gift with every order of cheap watches.\r\n")
		err := c.Learn(ctx, true, strings.NewReader(msg))
		if !r.bayes {
			// Without redis rspamd has no Bayes backend to learn into.
			if err == nil {
				t.Fatal("Learn without a Bayes backend succeeded")
			}
			t.Logf("Learn without redis: %v", err)
			return
		}
		if err != nil {
			r.dumpLog(t)
			t.Fatalf("Learn spam: %v", err)
		}
		if err := c.Learn(ctx, true, strings.NewReader(msg)); err != nil {
			t.Errorf("Learn spam again (rspamd: already learned): %v", err)
		}
		if err := c.Learn(ctx, false, strings.NewReader(msg)); err != nil {
			t.Errorf("Learn ham (relearn): %v", err)
		}
		bad, _ := New(Options{URL: r.url, ControllerURL: r.controller, Password: "wrong"})
		if err := bad.Learn(ctx, true, strings.NewReader(msg)); err == nil || !strings.Contains(err.Error(), "401") {
			t.Errorf("Learn with a wrong password: %v, want an error with status 401", err)
		}
		// rspamd counts the learns it made: spam, then ham (a relearn);
		// not the repeated spam.
		var stat struct {
			Learned *int `json:"learned"`
		}
		if err := getJSON(r.controller+"/stat", r.password, &stat); err != nil {
			t.Fatal(err)
		}
		if stat.Learned == nil || *stat.Learned != 2 {
			t.Errorf("rspamd /stat learned = %v, want 2", stat.Learned)
		}
	})
	t.Run("stopped rspamd is an error", func(t *testing.T) {
		// The caller's contract: an error, quickly, and it accepts the
		// message.
		r.stop()
		start := time.Now()
		res, err := c.Check(ctx, strings.NewReader(testMessage("test", gtube+"\r\n")), plainMeta())
		if err == nil || res.Reject() {
			t.Fatalf("Check with rspamd stopped: %+v, %v", res, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("the error took %v", d)
		}
		t.Logf("%v", err)
		if err := c.Learn(ctx, true, strings.NewReader(testMessage("test", plainBody))); err == nil {
			t.Error("Learn with rspamd stopped succeeded")
		}
	})
}

func hasSymbol(r Result, name string) bool {
	for _, s := range r.Symbols {
		if s.Name == name {
			return true
		}
	}
	return false
}

// getJSON decodes the JSON answer to a GET of url with the controller
// password.
func getJSON(url, password string, v any) error {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Password", password)
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(v)
}
