package maildir

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"postie/safeio"
)

// What crashed writers leave in a tmp/ directory, and when it may go.
//
// A message file in tmp/ is abandoned once it is 36 hours old (the Maildir
// convention), whoever wrote it. Our own files go sooner: their names carry
// the host and PID of the writer and the time they were created (see
// Store.appendUnique), so a file of this host whose writer is provably gone
// is removed once it is tmpOwnGrace old. A user's tmp/ is cleaned when the
// user is opened, and again every tmpOwnGrace while it is in use. The writer is gone when no process
// has its PID, or when the process that has it now started after the file
// was created (the PID was reused: a container's server is PID 1 after every
// restart). The grace period covers what a PID cannot tell (another PID
// namespace on a host of the same name). Age is the later of the name's time
// and the mtime: APPEND sets a message's mtime to its internal date (often
// long past) before it is renamed into place.
//
// Scratch directories (postie-create-*, postie-deleted-*) are flocked by the
// process building or removing them; one is abandoned only when nobody holds
// its lock and it is older than scratchGrace (which covers the moment
// between its mkdir and its lock).
const (
	tmpMaxAge      = 36 * time.Hour
	tmpOwnGrace    = 5 * time.Minute
	scratchGrace   = time.Minute
	scratchCreate  = "postie-create-"
	scratchDeleted = "postie-deleted-"
)

// maybeCleanTmp cleans the user's tmp/ again when it was last cleaned
// tmpOwnGrace ago or more, so that a long-running process also clears what
// a killed one left, soon after it may.
func (u *User) maybeCleanTmp() {
	last := u.cleaned.Load()
	now := time.Now().UnixNano()
	if now-last < int64(tmpOwnGrace) || !u.cleaned.CompareAndSwap(last, now) {
		return
	}
	u.cleanTmp(filepath.Join(u.dir, "tmp"))
}

// cleanTmp removes what crashed writers left in a tmp/ directory (see
// above).
func (u *User) cleanTmp(dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	now := time.Now()
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		info, err := e.Info()
		if err != nil {
			continue
		}
		if e.IsDir() {
			if strings.HasPrefix(e.Name(), scratchCreate) || strings.HasPrefix(e.Name(), scratchDeleted) {
				u.cleanScratch(p, info.ModTime(), now)
			}
			continue
		}
		if !u.s.tmpAbandoned(e.Name(), info.ModTime(), now) {
			continue
		}
		if err := u.s.fs.Remove(p); err != nil {
			u.log().Warn("maildir: clean tmp", "path", p, "err", err)
		}
	}
}

// cleanScratch removes a scratch directory nobody holds.
func (u *User) cleanScratch(path string, mtime, now time.Time) {
	if now.Sub(mtime) < scratchGrace {
		return
	}
	lock, err := safeio.LockDir(path, true)
	if err != nil {
		return // held (or gone): its owner is at work
	}
	defer lock.Close()
	if err := u.s.fs.RemoveAll(path); err != nil {
		u.log().Warn("maildir: clean tmp", "path", path, "err", err)
	}
}

// tmpAbandoned decides whether the file named name in a tmp/ directory, with
// modification time mtime, is a crashed writer's leftover (see above).
func (s *Store) tmpAbandoned(name string, mtime, now time.Time) bool {
	created, host, pid, ours := parseTmpName(name)
	age := now.Sub(mtime)
	if ours {
		age = min(age, now.Sub(created))
	}
	if age >= tmpMaxAge {
		return true
	}
	if !ours || host != s.host || age < tmpOwnGrace {
		return false
	}
	start, alive, known := processStart(pid)
	if !alive {
		return true
	}
	// A process that started after the file was made is not its writer.
	// (Start times are known to a clock tick, boot time to a second.)
	return known && created.Before(start.Add(-2*time.Second))
}

// parseTmpName reads a name made by Store.appendUnique:
// <unix>.M<usec>P<pid>Q<counter>R<random>.<host>.
func parseTmpName(name string) (created time.Time, host string, pid int, ok bool) {
	sec, rest, ok1 := strings.Cut(name, ".")
	mid, host, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || host == "" || !strings.HasPrefix(mid, "M") {
		return time.Time{}, "", 0, false
	}
	t, err := strconv.ParseInt(sec, 10, 64)
	if err != nil || t <= 0 {
		return time.Time{}, "", 0, false
	}
	usec, rest, ok1 := strings.Cut(mid[1:], "P")
	pidS, _, ok2 := strings.Cut(rest, "Q")
	if !ok1 || !ok2 {
		return time.Time{}, "", 0, false
	}
	us, err1 := strconv.ParseInt(usec, 10, 64)
	p, err2 := strconv.Atoi(pidS)
	if err1 != nil || err2 != nil || us < 0 || us >= 1e6 || p <= 0 {
		return time.Time{}, "", 0, false
	}
	return time.Unix(t, us*1000), host, p, true
}
