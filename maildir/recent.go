package maildir

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"postie/safeio"
)

// \Recent (RFC 3501 §2.3.2) is a per-folder boundary UID shared by every
// process: messages with a UID at or above it have not yet been seen by a
// session that selected the folder, so they are recent. The first session
// to select the folder read-write (or, while it is selected, to notice new
// mail) claims them by moving the boundary up to the UIDNEXT it has seen;
// they are then recent in that session only. EXAMINE and STATUS look
// without claiming.
//
// The boundary is the text of <folder>/postie-recent, read and written
// under a flock(2) of that file. It is not fsynced: losing it after a crash
// only makes messages recent once more, which the RFC allows. A folder
// without the file has never been selected: every message is recent.
const recentFile = "postie-recent"

// RecentFrom returns the folder's first UID not yet claimed as recent (1 for
// a folder no session has selected).
func (m *Mailbox) RecentFrom() (uint32, error) {
	return m.recent(0)
}

// ClaimRecent claims the messages with UIDs below upTo for the caller: it
// returns the boundary as it was (the caller's recent messages are those
// with UIDs in [from, upTo)) and moves it to upTo, unless it is there
// already (then from >= upTo and nothing is claimed).
func (m *Mailbox) ClaimRecent(upTo uint32) (from uint32, err error) {
	return m.recent(upTo)
}

func (m *Mailbox) recent(upTo uint32) (from uint32, err error) {
	m.mu.RLock()
	dir, deleted := m.dir, m.deleted
	m.mu.RUnlock()
	if deleted {
		return 0, ErrNoSuchMailbox
	}
	path := filepath.Join(dir, recentFile)
	if upTo == 0 { // only looking: a folder never claimed gets no file (STATUS of every folder)
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return 1, nil
		}
	}
	f, err := safeio.Lock(path, upTo == 0, false)
	if err != nil {
		return 0, fmt.Errorf("maildir: recent %s: %w", m.name, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 32))
	if err != nil {
		return 0, fmt.Errorf("maildir: recent %s: %w", m.name, err)
	}
	from = 1
	if n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32); err == nil && n > 0 {
		from = uint32(n)
	}
	if upTo <= from {
		return from, nil
	}
	if err := f.Truncate(0); err != nil {
		return from, fmt.Errorf("maildir: recent %s: %w", m.name, err)
	}
	if _, err := f.WriteAt([]byte(strconv.FormatUint(uint64(upTo), 10)+"\n"), 0); err != nil {
		return from, fmt.Errorf("maildir: recent %s: %w", m.name, err)
	}
	return from, nil
}
