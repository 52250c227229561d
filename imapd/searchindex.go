package imapd

import (
	"encoding/hex"
	"errors"
	"io/fs"
	"path/filepath"
	"sync"
	"time"

	"postie/imapd/mimeparse"
	"postie/maildir"
	"postie/searchidx"
)

// SEARCH TEXT and BODY use a per-folder index (package searchidx) to skip the messages that cannot
// match; the messages it cannot rule out are still checked by reading them, so the results are the
// scan's. The index file lives in the user's maildir, postie-searchidx/<hex of the folder name>.idx.
//
// Before each use the index is compared with the folder: UIDs it covers that are gone are dropped,
// UIDs it lacks (delivered by another process, appended, copied) are indexed first, a different
// UIDVALIDITY empties it. When more than inlineIndex messages are missing (a first use, a lost
// or corrupt file), that search scans as before and the index is built in the background for the
// next one. It is saved after a build and when saveEvery changes have gathered (at most every
// saveGap); changes not saved are found again by the same comparison after a restart.

const (
	inlineIndex = 2000
	saveEvery   = 200
	saveGap     = time.Minute
)

// indexHolder is a mailbox entry's index; the zero value holds none yet.
type indexHolder struct {
	mu       sync.Mutex // serialises bringing the index up to date
	idx      *searchidx.Index
	building bool
	lastSave time.Time
}

// indexPath is where a folder's index is kept.
func (s *session) indexPath(name string) string {
	return filepath.Join(s.mail.Dir(), "postie-searchidx", hex.EncodeToString([]byte(name))+".idx")
}

// liveMsg is a message of the folder as the index needs it.
type liveMsg struct {
	uid  uint32
	size int64
}

// textIndex returns the selected folder's index, up to date with the folder, or nil when the search
// should scan (the index is off, being built, or the folder's UIDs are too high for it).
func (s *session) textIndex() *searchidx.Index {
	if s.srv.opts.NoSearchIndex {
		return nil
	}
	sel := s.sel
	var live []liveMsg
	var uidNext uint32
	sel.mbox.View(func(msgs []maildir.Message) {
		live = make([]liveMsg, len(msgs))
		for i := range msgs {
			live[i] = liveMsg{msgs[i].UID, msgs[i].Size}
		}
	})
	uidNext = sel.mbox.UIDNext()
	if uidNext >= searchidx.MaxUID {
		return nil
	}
	h := &sel.entry.index
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.building {
		return nil
	}
	if h.idx == nil {
		idx, err := searchidx.Open(s.indexPath(sel.entry.name))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.srv.log.Warn("imapd: search index unusable, rebuilding", "user", s.user.Address, "mailbox", sel.entry.name, "err", err)
		}
		h.idx = idx
	}
	idx := h.idx
	if validity := sel.mbox.UIDValidity(); idx.Validity() != validity {
		idx.Reset(validity)
	}
	uids := make([]uint32, len(live))
	for i, m := range live {
		uids[i] = m.uid
	}
	idx.Retain(uids)
	missing := idx.Missing(uids)
	if len(missing) > inlineIndex {
		h.building = true
		go s.buildIndex(sel, h, live, missing)
		return nil
	}
	if len(missing) > 0 {
		s.indexMessages(sel, idx, live, missing)
	}
	s.maybeSave(h, false)
	return idx
}

// buildIndex indexes the folder's missing messages in the background (textIndex found them, and
// h.building keeps anyone else from indexing meanwhile).
func (s *session) buildIndex(sel *selection, h *indexHolder, live []liveMsg, missing []uint32) {
	start := time.Now()
	s.indexMessages(sel, h.idx, live, missing)
	h.mu.Lock()
	h.building = false
	if s.srv.ctx.Err() == nil { // after Shutdown, the data directory is no longer ours to write
		s.maybeSave(h, true)
	}
	h.mu.Unlock()
	st := h.idx.Stats()
	s.srv.log.Info("imapd: search index built", "user", s.user.Address, "mailbox", sel.entry.name,
		"messages", len(missing), "ms", time.Since(start).Milliseconds(), "tokens", st.Tokens, "bytes", st.MemBytes)
}

// maybeSave writes the index when enough has changed; h.mu is held.
func (s *session) maybeSave(h *indexHolder, now bool) {
	n := h.idx.Unsaved()
	if n == 0 || !now && n < saveEvery && time.Since(h.lastSave) < saveGap {
		return
	}
	h.lastSave = time.Now()
	if err := h.idx.Save(); err != nil {
		s.srv.log.Warn("imapd: search index not saved", "user", s.user.Address, "err", err)
	}
}

// indexMessages reads and indexes the messages missing (ascending UIDs) from live, a few at a time
// in parallel; it stops early when the server shuts down.
func (s *session) indexMessages(sel *selection, idx *searchidx.Index, live []liveMsg, missing []uint32) {
	sizes := make(map[uint32]int64, len(missing))
	for _, m := range live {
		sizes[m.uid] = m.size
	}
	src := sel.source()
	for len(missing) > 0 {
		if s.srv.ctx.Err() != nil {
			return
		}
		n := min(len(missing), fetchBatch)
		batch := make([]*message, n)
		for i, uid := range missing[:n] {
			batch[i] = &message{src: src, uid: uid, size: sizes[uid]}
		}
		missing = missing[n:]
		parallel(batch, func(_ int, m *message) {
			defer m.close()
			doc := searchidx.NewDoc(m.uid)
			root, err := m.structure()
			if err == nil {
				err = mimeparse.WalkText(m.ra, root, doc)
			}
			if errors.Is(err, maildir.ErrNoSuchMessage) {
				return // expunged meanwhile
			}
			idx.Add(doc, err != nil)
		})
	}
}

// indexedMsg answers a message's text terms from the index where it can.
type indexedMsg struct {
	*message
	res []*searchidx.Result // per needle
}

func (m indexedMsg) textFound(needles []mimeparse.Needle) ([]bool, error) {
	out := make([]bool, len(needles))
	for i, r := range m.res {
		switch {
		case r.Excludes(m.uid):
		case r.Includes(m.uid):
			out[i] = true
		default:
			return m.message.textFound(needles)
		}
	}
	return out, nil
}

// queryIndex asks the index about each needle of p.
func queryIndex(idx *searchidx.Index, p *program) []*searchidx.Result {
	res := make([]*searchidx.Result, len(p.needles))
	for i, n := range p.needles {
		res[i] = idx.Query(n.Folded, !n.WithHeader)
	}
	return res
}
