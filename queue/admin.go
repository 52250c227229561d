package queue

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"postie/safeio"
)

// Administration from another process (the `postie queue` commands).
//
// List reads the state files, which are always replaced whole by a
// rename, so it needs no lock. Flush, Delete and Bounce first try to take
// the owner lock: if they get it, no server runs and they edit the spool
// themselves. If a server owns the spool, they drop a request file
// "admin/<nonce>.req" (written to a temporary name and renamed) and wait
// for "admin/<nonce>.done" with the result. The server's scheduler lists
// admin/ every pollInterval (1 s), so a request takes effect within about
// a second, and the server stays the only writer of the state files it
// has in memory. Another process that enqueues while a server runs drops
// a "rescan" request the same way, without waiting for an answer.

// Item describes a queued message, for listing.
type Item struct {
	ID, From    string
	Rcpts       []RcptState
	Created     time.Time
	NextAttempt time.Time // the earliest next try of a pending recipient; zero if none
	Attempts    int       // the most attempts made for any recipient
	LastError   string    // the most recent failure
	// Explanation says what the most recent failure means and how to fix
	// it, when the receiver's reply is a known deliverability refusal
	// (package deliverability); "" otherwise.
	Explanation string
	Size        int64
}

type adminRequest struct {
	Op      string `json:"op"` // flush, delete, bounce, rescan
	ID      string `json:"id,omitempty"`
	NoReply bool   `json:"no_reply,omitempty"`
}

type adminResult struct {
	Error    string `json:"error,omitempty"`
	NotFound bool   `json:"not_found,omitempty"`
}

const (
	reqExt       = ".req"
	doneExt      = ".done"
	adminTimeout = 10 * time.Second
)

// List returns the messages in the spool in dir, oldest first.
func List(dir string) ([]Item, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("queue: list: %w", err)
	}
	var items []Item
	for _, e := range entries {
		id, ext := splitName(e.Name())
		if ext != stateExt || !validID(id) {
			continue
		}
		st, err := readState(filepath.Join(dir, e.Name()))
		if os.IsNotExist(err) {
			continue // delivered while we listed
		} else if err != nil {
			items = append(items, Item{ID: id, LastError: "unreadable state file: " + err.Error()})
			continue
		}
		items = append(items, itemOf(st))
	}
	slices.SortStableFunc(items, func(a, b Item) int { return a.Created.Compare(b.Created) })
	return items, nil
}

func itemOf(st *state) Item {
	it := Item{ID: st.ID, From: st.From, Rcpts: st.Rcpts, Created: st.Created, Size: st.Size}
	var last time.Time
	for _, r := range st.Rcpts {
		it.Attempts = max(it.Attempts, r.Attempts)
		if r.Status == StatusPending && (it.NextAttempt.IsZero() || r.NextAttempt.Before(it.NextAttempt)) {
			it.NextAttempt = r.NextAttempt
			if it.NextAttempt.IsZero() {
				it.NextAttempt = st.Created // never tried: due since arrival
			}
		}
		if r.LastError != "" && !r.LastAttempt.Before(last) {
			last, it.LastError, it.Explanation = r.LastAttempt, r.LastError, explainLine(r.Reply)
		}
	}
	return it
}

// Flush asks for every message in the spool in dir to be tried now.
func Flush(dir string) error {
	return adminDo(dir, adminRequest{Op: "flush"}, func() error {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if id, ext := splitName(e.Name()); ext == stateExt && validID(id) {
				err := editState(dir, id, func(st *state) {
					for i := range st.Rcpts {
						st.Rcpts[i].NextAttempt = time.Time{}
					}
					st.NoticeNext = time.Time{}
				})
				if err != nil && !errors.Is(err, ErrNotFound) {
					return err
				}
			}
		}
		return nil
	})
}

// Delete removes a message from the spool in dir without telling anyone.
func Delete(dir, id string) error {
	if !validID(id) {
		return ErrNotFound
	}
	return adminDo(dir, adminRequest{Op: "delete", ID: id}, func() error {
		err := os.Remove(filepath.Join(dir, id+stateExt))
		if os.IsNotExist(err) {
			return ErrNotFound
		} else if err != nil {
			return err
		}
		if err := os.Remove(filepath.Join(dir, id+msgExt)); err != nil && !os.IsNotExist(err) {
			return err
		}
		return safeio.SyncDir(dir)
	})
}

// Bounce gives up on the pending recipients of a message in the spool in
// dir: the sender gets a bounce saying the administrator cancelled the
// delivery (when no server runs, at its next start).
func Bounce(dir, id string) error {
	if !validID(id) {
		return ErrNotFound
	}
	return adminDo(dir, adminRequest{Op: "bounce", ID: id}, func() error {
		return editState(dir, id, func(st *state) { st.cancel(func(string) bool { return false }) })
	})
}

// editState rewrites one state file, for the admin functions when no
// server runs.
func editState(dir, id string, edit func(*state)) error {
	st, err := readState(filepath.Join(dir, id+stateExt))
	if os.IsNotExist(err) {
		return ErrNotFound
	} else if err != nil {
		return err
	}
	edit(st)
	return safeio.WriteFile(filepath.Join(dir, id+stateExt), encodeState(st), 0o600)
}

// adminDo runs direct while holding the owner lock, or, if a server owns
// the spool, sends it req.
func adminDo(dir string, req adminRequest, direct func() error) error {
	if _, err := os.Stat(filepath.Join(dir, adminDirName)); err != nil {
		return fmt.Errorf("queue: %s: %w", req.Op, err)
	}
	lk, err := safeio.Lock(filepath.Join(dir, ownerLockName), false, true)
	if err == nil {
		defer lk.Close()
		if err := direct(); err != nil {
			if errors.Is(err, ErrNotFound) {
				return err
			}
			return fmt.Errorf("queue: %s: %w", req.Op, err)
		}
		return nil
	}
	if !errors.Is(err, safeio.ErrLocked) {
		return fmt.Errorf("queue: %s: %w", req.Op, err)
	}
	return sendRequest(dir, req, adminTimeout)
}

// sendRequest hands req to the server owning the spool and waits for its
// answer, unless req.NoReply.
func sendRequest(dir string, req adminRequest, timeout time.Duration) error {
	adir := filepath.Join(dir, adminDirName)
	name := newID(time.Now())
	path := filepath.Join(adir, name+reqExt)
	data, err := json.Marshal(req)
	if err == nil {
		err = publish(path, data)
	}
	if err != nil {
		return fmt.Errorf("queue: %s: sending the request: %w", req.Op, err)
	}
	if req.NoReply {
		return nil
	}
	donePath := filepath.Join(adir, name+doneExt)
	deadline := time.Now().Add(timeout)
	taken := false
	for {
		if data, err := os.ReadFile(donePath); err == nil {
			os.Remove(donePath)
			var res adminResult
			if err := json.Unmarshal(data, &res); err != nil {
				return fmt.Errorf("queue: %s: bad answer from the server: %w", req.Op, err)
			}
			switch {
			case res.NotFound:
				return ErrNotFound
			case res.Error != "":
				return fmt.Errorf("queue: %s: %s", req.Op, res.Error)
			}
			return nil
		}
		if time.Now().After(deadline) {
			if taken {
				return fmt.Errorf("queue: %s: the server took the request but did not answer", req.Op)
			}
			if err := os.Remove(path); err == nil {
				return fmt.Errorf("queue: %s: the server (pid %d) owning %s did not answer within %v",
					req.Op, ownerPID(dir), dir, timeout)
			}
			taken, deadline = true, time.Now().Add(timeout) // it is working on it
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// notifyOwner tells the server owning the spool that this process
// enqueued a message.
func (q *Queue) notifyOwner() {
	if err := sendRequest(q.dir, adminRequest{Op: "rescan", NoReply: true}, 0); err != nil {
		// Not fatal: the server rescans the spool every rescanInterval.
		q.log.Warn("queue: telling the server about a new message", "err", err)
	}
}

// pollAdmin serves the requests other processes left in admin/.
func (q *Queue) pollAdmin() {
	adir := filepath.Join(q.dir, adminDirName)
	entries, err := os.ReadDir(adir)
	if err != nil {
		q.log.Error("queue: reading admin requests", "err", err)
		return
	}
	rescanned := false
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), reqExt) {
			removeStale(adir, e, time.Minute)
			continue
		}
		path := filepath.Join(adir, e.Name())
		data, err := os.ReadFile(path)
		if err != nil || os.Remove(path) != nil {
			continue // withdrawn by its sender
		}
		var req adminRequest
		if err := json.Unmarshal(data, &req); err != nil {
			q.log.Warn("queue: bad admin request", "file", e.Name(), "err", err)
			continue
		}
		if req.Op == "rescan" && rescanned {
			continue // one pass serves them all
		}
		rescanned = rescanned || req.Op == "rescan"
		res := q.serveRequest(req)
		if req.NoReply {
			continue
		}
		out, _ := json.Marshal(res)
		done := filepath.Join(adir, strings.TrimSuffix(e.Name(), reqExt)+doneExt)
		if err := publish(done, out); err != nil {
			q.log.Error("queue: answering an admin request", "file", e.Name(), "err", err)
		}
	}
}

func (q *Queue) serveRequest(req adminRequest) adminResult {
	var err error
	switch req.Op {
	case "flush":
		q.log.Info("queue: flush requested")
		q.Flush()
	case "delete":
		err = q.deleteID(req.ID)
	case "bounce":
		err = q.bounceID(req.ID)
	case "rescan":
		q.rescan()
	default:
		err = fmt.Errorf("unknown request %q", req.Op)
	}
	switch {
	case errors.Is(err, ErrNotFound):
		return adminResult{NotFound: true}
	case err != nil:
		return adminResult{Error: err.Error()}
	}
	return adminResult{}
}

// cleanAdminDir removes answers and temporary files nobody collected.
func (q *Queue) cleanAdminDir(age time.Duration) {
	adir := filepath.Join(q.dir, adminDirName)
	entries, _ := os.ReadDir(adir)
	for _, e := range entries {
		removeStale(adir, e, age)
	}
}

// removeStale removes an answer or temporary file at least age old.
func removeStale(adir string, e os.DirEntry, age time.Duration) {
	if !strings.HasSuffix(e.Name(), doneExt) && !strings.HasSuffix(e.Name(), tmpExt) {
		return
	}
	if info, err := e.Info(); err == nil && time.Since(info.ModTime()) >= age {
		os.Remove(filepath.Join(adir, e.Name()))
	}
}

// deleteID removes a message at the administrator's request.
func (q *Queue) deleteID(id string) error {
	it, err := q.lookup(id)
	if err != nil {
		return err
	}
	q.remove(it)
	q.log.Info("queue: deleted by the administrator", "id", id)
	return nil
}

// bounceID fails the pending recipients of a message at the
// administrator's request. Those in an attempt now fail when it ends
// (unless it delivers them).
func (q *Queue) bounceID(id string) error {
	it, err := q.lookup(id)
	if err != nil {
		return err
	}
	q.mu.Lock()
	it.st.cancel(func(dom string) bool { s := it.groups[dom]; return s != nil && s.running })
	for dom, s := range it.groups {
		if !s.running {
			delete(it.groups, dom)
		}
	}
	q.scheduleNoticeLocked(it)
	q.log.Info("queue: bounced by the administrator", "id", id)
	q.settle(it) // unlocks
	q.wake()
	return nil
}
