//go:build !linux

package maildir

import (
	"errors"
	"syscall"
	"time"
)

// processStart says whether a process has the PID pid; its start time is
// not known here.
func processStart(pid int) (start time.Time, alive, known bool) {
	err := syscall.Kill(pid, 0)
	return time.Time{}, !errors.Is(err, syscall.ESRCH), false
}
