package maildir

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"syscall"
	"time"
)

// processStart says whether a process has the PID pid and, when /proc
// tells, when it started (known).
func processStart(pid int) (start time.Time, alive, known bool) {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return time.Time{}, false, false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return time.Time{}, true, false
	}
	// "pid (comm) state ppid ...": comm may hold anything; the fields after
	// its last ')' start with field 3; starttime is field 22, in clock ticks
	// since boot.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return time.Time{}, true, false
	}
	f := bytes.Fields(stat[i+1:])
	if len(f) < 20 {
		return time.Time{}, true, false
	}
	ticks, err := strconv.ParseInt(string(f[19]), 10, 64)
	if err != nil {
		return time.Time{}, true, false
	}
	boot, ok := bootTime()
	if !ok {
		return time.Time{}, true, false
	}
	const userHZ = 100 // USER_HZ: what /proc counts in on every Linux port
	return boot.Add(time.Duration(ticks) * (time.Second / userHZ)), true, true
}

// bootTime reads btime from /proc/stat.
func bootTime() (time.Time, bool) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return time.Time{}, false
	}
	for line := range bytes.Lines(data) {
		if v, ok := bytes.CutPrefix(line, []byte("btime ")); ok {
			n, err := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
			return time.Unix(n, 0), err == nil
		}
	}
	return time.Time{}, false
}
