// Package tests holds Postie's end-to-end tests: they build the real
// binary, write a configuration with free loopback ports, run `postie
// serve` as a separate process, and drive it with real protocol clients
// and the CLI.
package tests

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"postie/internal/testutil"
)

// postieBin is the binary built once for all tests.
var postieBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "postie-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	postieBin = filepath.Join(dir, "postie")
	build := exec.Command("go", "build", "-o", postieBin, "postie/cmd/postie")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building postie:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// instance is one configured Postie: a directory with config.toml and its
// data, and, once started, the server process.
type instance struct {
	t       testing.TB
	dir     string
	config  string
	ports   map[string]string // role → "127.0.0.1:port", as bound by the running server
	wrap    []string          // argv before the binary's, e.g. strace and its flags
	cmd     *exec.Cmd
	logPath string
	exited  chan error
	// extraRoles are listeners start also waits for, beyond roles (such
	// as "http" and "https", which only some tests configure).
	extraRoles []string
}

// roles are the listeners every test instance gets.
var roles = []string{"smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s"}

// newInstance writes a config whose listeners all take a port the kernel
// picks ("127.0.0.1:0"); start learns which from the server's log and
// checks that its own child holds them. extra is appended verbatim to the
// file (more tables or keys).
func newInstance(t testing.TB, extra string) *instance {
	t.Helper()
	in := &instance{t: t, dir: t.TempDir()}
	in.config = filepath.Join(in.dir, "config.toml")
	cfg := `hostname = "mx.example.test"
data_dir = "data"
domains = ["example.test", "other.test"]

[log]
level = "debug"

[smtp]
listen = ["127.0.0.1:0"]
max_recipients = 20
max_message_size = "1MB"
messages_per_minute_per_ip = 0
max_connections_per_ip = 100

[submission]
listen = ["127.0.0.1:0"]
tls_listen = ["127.0.0.1:0"]
max_messages_per_hour = 0

[imap]
listen = ["127.0.0.1:0"]
tls_listen = ["127.0.0.1:0"]

[pop3]
listen = ["127.0.0.1:0"]
tls_listen = ["127.0.0.1:0"]

[queue]
min_retry = "1s"
max_retry = "2s"
messages_per_minute = 0
`
	if err := os.WriteFile(in.config, []byte(cfg+extra), 0o600); err != nil {
		t.Fatal(err)
	}
	return in
}

// run runs a postie CLI command against this instance's config and returns
// its stdout, stderr and exit code.
func (in *instance) run(stdin string, args ...string) (string, string, int) {
	in.t.Helper()
	return runBinary(in.t, stdin, append(append([]string{}, args...), "-config", in.config)...)
}

// mustRun runs a CLI command that must succeed.
func (in *instance) mustRun(stdin string, args ...string) string {
	in.t.Helper()
	out, errOut, code := in.run(stdin, args...)
	if code != 0 {
		in.t.Fatalf("postie %v: exit %d: %s%s", args, code, out, errOut)
	}
	return out
}

// addUser creates addr with password "secret-"+addr and an optional quota.
func (in *instance) addUser(addr string, quota ...string) {
	in.t.Helper()
	args := []string{"user", "add", addr}
	if len(quota) > 0 {
		args = append(args, "-quota", quota[0])
	}
	in.mustRun(password(addr)+"\n", args...)
}

func password(addr string) string { return "secret-" + addr }

// start runs `postie serve`, learns from its log the address each role
// bound, and checks that every one is held by this child (or its
// descendants, under a wrapper such as strace): nothing else can answer
// there, so the test never talks to a stranger.
func (in *instance) start() {
	in.t.Helper()
	in.logPath = filepath.Join(in.dir, fmt.Sprintf("serve-%d.log", time.Now().UnixNano()))
	logf, err := os.Create(in.logPath)
	if err != nil {
		in.t.Fatal(err)
	}
	argv := append(append(append([]string{}, in.wrap...), postieBin), "serve", "-config", in.config)
	in.cmd = exec.Command(argv[0], argv[1:]...)
	in.cmd.Stdout, in.cmd.Stderr = logf, logf
	if err := in.cmd.Start(); err != nil {
		in.t.Fatal(err)
	}
	logf.Close()
	in.exited = make(chan error, 1)
	cmd := in.cmd
	go func() { in.exited <- cmd.Wait() }()
	in.t.Cleanup(func() { in.kill() })
	in.ports = in.waitListening(20 * time.Second)
	for role, addr := range in.ports {
		err := testutil.ListenerHeldBy(cmd.Process.Pid, addr)
		if errors.Is(err, errors.ErrUnsupported) {
			break // no /proc: the kernel-picked ports are the only guard
		}
		if err != nil {
			in.t.Fatalf("%s on %s is not our server's: %v", role, addr, err)
		}
	}
}

// listeningRE matches the line `postie serve` logs (cmd/postie, server.run)
// for each bound listener, with the address the kernel gave it.
var listeningRE = regexp.MustCompile(`msg=listening .*?\brole=(\S+) .*?\baddr=(\S+)`)

// waitListening waits until the log names a bound address for every role
// and returns them.
func (in *instance) waitListening(timeout time.Duration) map[string]string {
	in.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ports := map[string]string{}
		b, _ := os.ReadFile(in.logPath)
		for _, m := range listeningRE.FindAllStringSubmatch(string(b), -1) {
			ports[m[1]] = m[2]
		}
		if want := append(append([]string{}, roles...), in.extraRoles...); len(ports) == len(want) {
			for _, r := range want {
				if ports[r] == "" {
					in.t.Fatalf("no %s listener in the log, got %v", r, ports)
				}
			}
			return ports
		}
		select {
		case err := <-in.exited:
			in.exited <- err
			in.t.Fatalf("postie serve exited early (%v):\n%s", err, in.log())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			in.t.Fatalf("listeners not up after %v (have %v):\n%s", timeout, ports, in.log())
		}
	}
}

// stop sends SIGTERM and returns the exit error (nil for exit 0).
func (in *instance) stop() error {
	in.t.Helper()
	if in.cmd == nil {
		return nil
	}
	_ = syscall.Kill(in.serverPID(), syscall.SIGTERM)
	select {
	case err := <-in.exited:
		in.cmd = nil
		return err
	case <-time.After(40 * time.Second):
		in.kill()
		in.t.Fatalf("postie serve did not stop on SIGTERM:\n%s", in.log())
		return nil
	}
}

// kill stops the server at once, as a crash would.
func (in *instance) kill() {
	if in.cmd == nil {
		return
	}
	if len(in.wrap) > 0 {
		_ = syscall.Kill(in.serverPID(), syscall.SIGKILL) // a killed wrapper would leave it running
	}
	_ = in.cmd.Process.Kill()
	<-in.exited
	in.cmd = nil
}

// serverPID is the process id of `postie serve` itself: the child, or
// under a wrapper the descendant running our binary.
func (in *instance) serverPID() int {
	pid := in.cmd.Process.Pid
	if len(in.wrap) == 0 {
		return pid
	}
	for _, p := range testutil.Descendants(pid) {
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", p)); err == nil && exe == postieBin {
			return p
		}
	}
	return pid
}

func (in *instance) log() string {
	b, _ := os.ReadFile(in.logPath)
	if len(b) > 20000 {
		b = b[len(b)-20000:]
	}
	return string(b)
}

// maildir is the on-disk Maildir root of a user: the tests inspect the
// disk directly, as an admin would, to check what the server promised.
func (in *instance) maildir(domain, user string) string {
	return filepath.Join(in.dir, "data", "mail", domain, user)
}

// messages returns the contents of every message file in a Maildir
// folder's new/ and cur/.
func messages(t *testing.T, folder string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, sub := range []string{"new", "cur"} {
		entries, err := os.ReadDir(filepath.Join(folder, sub))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(folder, sub, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			out[sub+"/"+e.Name()] = b
		}
	}
	return out
}

// runBinary runs postie with exactly these arguments.
func runBinary(t testing.TB, stdin string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, postieBin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err == nil {
		return out.String(), errb.String(), 0
	}
	ee, ok := err.(*exec.ExitError)
	if !ok {
		t.Fatalf("postie %v: %v", args, err)
	}
	return out.String(), errb.String(), ee.ExitCode()
}
