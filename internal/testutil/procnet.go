package testutil

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ListenerHeldBy checks, through Linux's /proc, that a TCP connection to
// addr ("ip:port") can only be answered by process pid or one of its
// descendants: at least one socket listens there, and every listening
// socket that could take the connection (addr itself, or a wildcard
// address on its port, which SO_REUSEPORT lets a second process share) is
// held by that process tree. End-to-end tests call it before talking to a
// server they started, so that a stranger on the same port (a quick-start
// server, another test run) is never mistaken for it. Without /proc/net
// (not Linux) it returns an error wrapping errors.ErrUnsupported.
func ListenerHeldBy(pid int, addr string) error {
	ap, err := parseHostPort(addr)
	if err != nil {
		return err
	}
	socks, err := listeningSockets()
	if err != nil {
		return err
	}
	var want []uint64
	for _, s := range socks {
		if s.port == ap.port && (s.ip.Equal(ap.ip) || s.ip.IsUnspecified()) {
			want = append(want, s.inode)
		}
	}
	if len(want) == 0 {
		return fmt.Errorf("testutil: nothing listens on %s", addr)
	}
	held := map[uint64]int{}
	for _, p := range processTree(pid) {
		for _, ino := range socketInodes(p) {
			held[ino] = p
		}
	}
	for _, ino := range want {
		if _, ok := held[ino]; !ok {
			return fmt.Errorf("testutil: a listener on %s (socket inode %d) is not held by process %d or its children", addr, ino, pid)
		}
	}
	return nil
}

type hostPort struct {
	ip   net.IP
	port int
}

func parseHostPort(addr string) (hostPort, error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return hostPort{}, fmt.Errorf("testutil: %w", err)
	}
	ip := net.ParseIP(h)
	port, err := strconv.Atoi(p)
	if ip == nil || err != nil {
		return hostPort{}, fmt.Errorf("testutil: %q is not an ip:port address", addr)
	}
	return hostPort{ip: ip, port: port}, nil
}

type procSocket struct {
	ip    net.IP
	port  int
	inode uint64
}

// listeningSockets parses /proc/net/tcp and /proc/net/tcp6 for sockets in
// state LISTEN (0A).
func listeningSockets() ([]procSocket, error) {
	var out []procSocket
	found := false
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("testutil: %w", err)
		}
		found = true
		sc := bufio.NewScanner(strings.NewReader(string(b)))
		sc.Scan() // header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || fields[3] != "0A" {
				continue
			}
			s, err := parseProcSocket(fields[1], fields[9])
			if err != nil {
				return nil, fmt.Errorf("testutil: %s: %w", f, err)
			}
			out = append(out, s)
		}
	}
	if !found {
		return nil, fmt.Errorf("testutil: no /proc/net/tcp: %w", errors.ErrUnsupported)
	}
	return out, nil
}

// parseProcSocket decodes "0100007F:1F90" (the address as 32-bit words in
// host byte order, the port in hex) and the inode column.
func parseProcSocket(local, inode string) (procSocket, error) {
	ipHex, portHex, ok := strings.Cut(local, ":")
	raw, err := hex.DecodeString(ipHex)
	if !ok || err != nil || (len(raw) != 4 && len(raw) != 16) {
		return procSocket{}, fmt.Errorf("bad local address %q", local)
	}
	ip := make(net.IP, len(raw))
	for i := 0; i < len(raw); i += 4 {
		binary.NativeEndian.PutUint32(ip[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	port, err := strconv.ParseUint(portHex, 16, 16)
	if err != nil {
		return procSocket{}, fmt.Errorf("bad port in %q", local)
	}
	ino, err := strconv.ParseUint(inode, 10, 64)
	if err != nil {
		return procSocket{}, fmt.Errorf("bad inode %q", inode)
	}
	return procSocket{ip: ip, port: int(port), inode: ino}, nil
}

// Descendants returns the live descendants of process pid (Linux; none
// elsewhere), children before grandchildren.
func Descendants(pid int) []int { return processTree(pid)[1:] }

// processTree returns pid and every live descendant of it.
func processTree(pid int) []int {
	children := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pp, ok := parentPID(p); ok {
			children[pp] = append(children[pp], p)
		}
	}
	tree := []int{pid}
	for i := 0; i < len(tree); i++ {
		tree = append(tree, children[tree[i]]...)
	}
	return tree
}

// parentPID reads the fourth field of /proc/<pid>/stat; the command name
// before it is in parentheses and may hold spaces.
func parentPID(pid int) (int, bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	fields := strings.Fields(s[i+1:])
	if len(fields) < 2 {
		return 0, false
	}
	pp, err := strconv.Atoi(fields[1])
	return pp, err == nil
}

// socketInodes lists the socket inodes among pid's open descriptors.
func socketInodes(pid int) []uint64 {
	dir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
	entries, _ := os.ReadDir(dir)
	var out []uint64
	for _, e := range entries {
		link, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil || !strings.HasPrefix(link, "socket:[") {
			continue
		}
		if ino, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]"), 10, 64); err == nil {
			out = append(out, ino)
		}
	}
	return out
}
