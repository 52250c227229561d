package queue

import (
	"errors"
	"os"
	"path/filepath"
	"strings"

	"postie/safeio"
)

// recoverAndLoad cleans up after a crash and loads every message. It runs
// once, when this Queue becomes the spool's owner, while other processes'
// Enqueue calls are held off by the write lock.
func (q *Queue) recoverAndLoad() error {
	lk, err := safeio.Lock(filepath.Join(q.dir, writeLockName), false, false)
	if err != nil {
		return err
	}
	defer lk.Close()
	entries, err := os.ReadDir(q.dir)
	if err != nil {
		return err
	}
	have := make(map[string]bool, len(entries))
	for _, e := range entries {
		have[e.Name()] = true
	}
	var loaded []*state
	changed := false
	drop := func(name, msg string) {
		if err := q.fs.Remove(filepath.Join(q.dir, name)); err != nil {
			q.log.Error("queue: recovery", "file", name, "err", err)
			return
		}
		q.log.Warn(msg, "file", name)
		changed = true
	}
	for _, e := range entries {
		name := e.Name()
		switch id, ext := splitName(name); {
		case isTemp(name):
			drop(name, "queue: recovery: removed a temporary file")
		case !validID(id):
			// not ours: leave it
		case ext == msgExt && !have[id+stateExt]:
			drop(name, "queue: recovery: removed a message whose enqueue did not finish")
		case ext == stateExt && !have[id+msgExt]:
			drop(name, "queue: recovery: dropped a state file without its message file")
		case ext == stateExt:
			st, err := readState(filepath.Join(q.dir, name))
			if err != nil {
				q.log.Error("queue: recovery: unreadable state file left in place", "file", name, "err", err)
				continue
			}
			loaded = append(loaded, st)
		}
	}
	q.cleanAdminDir(0)
	if changed {
		if err := q.fs.SyncDir(q.dir); err != nil {
			return err
		}
	}

	q.mu.Lock()
	q.owner = true
	var finished []*item
	for _, st := range loaded {
		if q.items[st.ID] == nil {
			if it := q.addLocked(st); it.finished() {
				finished = append(finished, it)
			}
		}
	}
	n := len(q.items)
	q.mu.Unlock()
	for _, it := range finished {
		q.remove(it) // a crash came between the last result and the removal
	}
	q.log.Info("queue: spool loaded", "dir", q.dir, "messages", n-len(finished))
	q.wake()
	return nil
}

// splitName cuts "<id>.msg" or "<id>.json" into ID and extension.
func splitName(name string) (id, ext string) {
	for _, ext := range []string{msgExt, stateExt} {
		if id, ok := strings.CutSuffix(name, ext); ok {
			return id, ext
		}
	}
	return "", ""
}

// rescan loads messages that another process enqueued.
func (q *Queue) rescan() {
	entries, err := os.ReadDir(q.dir)
	if err != nil {
		q.log.Error("queue: rescan", "err", err)
		return
	}
	for _, e := range entries {
		id, ext := splitName(e.Name())
		if ext != stateExt || !validID(id) {
			continue
		}
		q.mu.Lock()
		known := q.items[id] != nil
		q.mu.Unlock()
		if !known {
			if _, err := q.lookup(id); err != nil && !errors.Is(err, ErrNotFound) {
				q.log.Error("queue: rescan", "id", id, "err", err)
			}
		}
	}
}

// lookup returns the message with the ID, loading it from the disk if
// another process put it there.
func (q *Queue) lookup(id string) (*item, error) {
	if !validID(id) {
		return nil, ErrNotFound
	}
	q.mu.Lock()
	it := q.items[id]
	q.mu.Unlock()
	if it != nil {
		return it, nil
	}
	statePath := filepath.Join(q.dir, id+stateExt)
	st, err := readState(statePath)
	if os.IsNotExist(err) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(q.dir, id+msgExt)); err != nil {
		return nil, err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if it := q.items[id]; it != nil {
		return it, nil
	}
	if _, err := os.Stat(statePath); err != nil {
		return nil, ErrNotFound // removed while we read it
	}
	it = q.addLocked(st)
	q.log.Info("queue: picked up", "id", id, "from", st.From, "rcpts", len(st.Rcpts))
	q.wake()
	return it, nil
}
