package testutil

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"
)

func needProcNet(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/proc/net/tcp"); err != nil {
		t.Skip("no /proc/net/tcp: ListenerHeldBy is Linux only")
	}
}

// startHolder runs a child that holds f (fd 3) and nothing else of ours.
func startHolder(t *testing.T, f *os.File) int {
	t.Helper()
	cmd := exec.Command("sleep", "30")
	cmd.ExtraFiles = []*os.File{f}
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot start sleep: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd.Process.Pid
}

func TestListenerHeldBy(t *testing.T) {
	needProcNet(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ListenerHeldBy(os.Getpid(), addr); err != nil {
		t.Errorf("our own listener: %v", err)
	}
	// We are a descendant of our parent: its tree holds the listener.
	if err := ListenerHeldBy(os.Getppid(), addr); err != nil {
		t.Errorf("held by a descendant: %v", err)
	}
	if !slices.Contains(Descendants(os.Getppid()), os.Getpid()) {
		t.Error("Descendants of our parent leaves us out")
	}
	// A process that is not us nor our parent does not hold it.
	stranger := startHolder(t, nil)
	if !slices.Contains(Descendants(os.Getpid()), stranger) {
		t.Error("Descendants leaves out our child")
	}
	if err := ListenerHeldBy(stranger, addr); err == nil {
		t.Error("a listener of ours counted as held by an unrelated child")
	}
	ln.Close()
	if err := ListenerHeldBy(os.Getpid(), addr); err == nil {
		t.Error("a closed listener counted as held")
	}
	if err := ListenerHeldBy(os.Getpid(), "not an address"); err == nil {
		t.Error("a malformed address was accepted")
	}
}

// Two processes sharing one port through SO_REUSEPORT: either may answer,
// so neither alone holds the address.
func TestListenerHeldBySharedPort(t *testing.T) {
	needProcNet(t)
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, soReusePort, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	theirs, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Skipf("SO_REUSEPORT: %v", err)
	}
	addr := theirs.Addr().String()
	f, err := theirs.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	holder := startHolder(t, f)
	f.Close()
	theirs.Close() // now only the child holds it
	if err := ListenerHeldBy(holder, addr); err != nil {
		t.Fatalf("the child's listener: %v", err)
	}
	ours, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		t.Skipf("second SO_REUSEPORT listener: %v", err)
	}
	defer ours.Close()
	if err := ListenerHeldBy(holder, addr); err == nil {
		t.Error("a port shared with another process counted as the child's alone")
	}
}

func TestListeningSocketsParse(t *testing.T) {
	s, err := parseProcSocket("0100007F:1F90", "12345")
	if err != nil || !s.ip.Equal(net.IPv4(127, 0, 0, 1)) || s.port != 8080 || s.inode != 12345 {
		t.Errorf("v4: %+v %v", s, err)
	}
	s, err = parseProcSocket("00000000000000000000000001000000:0019", "7")
	if err != nil || !s.ip.Equal(net.IPv6loopback) || s.port != 25 {
		t.Errorf("v6: %+v %v", s, err)
	}
	if _, err := parseProcSocket("zz:1", "1"); err == nil {
		t.Error("bad hex accepted")
	}
	if _, err := listeningSockets(); err != nil && !errors.Is(err, errors.ErrUnsupported) {
		t.Error(err)
	}
}

// soReusePort is Linux's SO_REUSEPORT, which package syscall lacks; the
// tests using it run only where /proc/net exists.
const soReusePort = 0xf
