package mda

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"

	"postie/accounts"
	"postie/envelope"
	"postie/inbound"
	"postie/junk"
	"postie/maildir"
)

// Inspector runs the trust checks on a message from outside
// (envelope.Envelope.Inbound). Checks is the real one.
type Inspector interface {
	// Inspect reads msg (the message as received, size bytes, CRLF line
	// ends). It never fails: what it cannot check it records as such in
	// Header and otherwise accepts.
	Inspect(ctx context.Context, env *envelope.Envelope, msg io.ReaderAt, size int64) *Inspection
}

// Inspection is what the checks found.
type Inspection struct {
	Action inbound.Action  // Reject and Defer refuse the message for every recipient
	Reply  *envelope.Error // the refusal for Reject (5xx) and Defer (4xx)
	Reason string          // why the Action is not Accept, for X-Spam-Reason
	// Header holds the fields prepended to every copy after the trace
	// fields (Authentication-Results, rspamd's X-Spamd-Result), each
	// ending in CRLF.
	Header string
	// Verified says the From: domain passed SPF or DKIM in alignment; the
	// junk filter believes the sender's address only then.
	Verified bool
}

// JunkFilter is the per-user junk filter (*junk.Filter).
type JunkFilter interface {
	// Extract reads a message's features once; ClassifyFeatures then
	// judges them for each recipient.
	Extract(msg io.Reader) *junk.Features
	ClassifyFeatures(path string, fe *junk.Features, s junk.Sender) (junk.Verdict, error)
	NoteSent(path string, rcpts ...string) error
}

// content is one message as its copies are made: the spooled message
// and, for mail from outside, what the checks found and the header
// section with the fields forged in our name removed (StripForged).
type content struct {
	*spooled
	inbound bool        // from outside: the copies carry the X-Spam fields
	ins     *Inspection // nil: not inspected
	header  []byte      // stored instead of the first bodyOff bytes; nil: the message as received
	bodyOff int64
	// junk is the message's junk-filter features, extracted by the first
	// recipient's judge and shared by the others (copies are made
	// concurrently); junkErr is why they could not be read.
	junkOnce sync.Once
	junk     *junk.Features
	junkErr  error
}

// copyReader returns a fresh reader over the message as stored: the
// message with the rewritten header, if any.
func (c *content) copyReader() (io.Reader, error) {
	if c.header == nil {
		return c.reader()
	}
	return io.MultiReader(bytes.NewReader(c.header), io.NewSectionReader(c.readerAt(), c.bodyOff, c.size-c.bodyOff)), nil
}

// prefix is what every copy gets after its trace fields: the checks'
// fields.
func (c *content) prefix() string {
	if c.ins == nil {
		return ""
	}
	return c.ins.Header
}

// inspect runs the checks on mail from outside (env.Inbound) and removes
// the Authentication-Results fields forged in our name (RFC 8601 §5:
// whether or not an Inspector is set). It returns the refusal for every
// recipient when the checks say Reject or Defer.
func (m *Router) inspect(ctx context.Context, env *envelope.Envelope, msg *spooled) (*content, error) {
	c := &content{spooled: msg, inbound: env.Inbound}
	if !env.Inbound {
		return c, nil
	}
	if m.opts.Inspector != nil {
		c.ins = m.opts.Inspector.Inspect(ctx, env, msg.readerAt(), msg.size)
		if a := c.ins.Action; a == inbound.Reject || a == inbound.Defer {
			reply := c.ins.Reply
			if reply == nil && a == inbound.Reject {
				reply = envelope.Errorf(550, 5, 7, 1, "message refused by policy")
			} else if reply == nil {
				reply = envelope.Errorf(451, 4, 7, 1, "message deferred by policy, try again later")
			}
			m.log.Info("mda: message refused by the checks", "id", env.ID, "from", env.From, "remote", env.RemoteAddr,
				"reason", c.ins.Reason, "reply", reply.Error())
			return nil, reply
		}
	}
	hdr, err := inbound.ReadHeader(msg.readerAt(), msg.size)
	if err != nil && hdr == nil {
		return nil, envelope.Temp(fmt.Errorf("mda: read header: %w", err))
	}
	if stripped := inbound.StripForged(hdr, m.opts.Hostname); len(stripped) != len(hdr) {
		m.log.Info("mda: fields forged in our name removed", "id", env.ID, "remote", env.RemoteAddr)
		c.header, c.bodyOff = stripped, int64(len(hdr))
	}
	return c, nil
}

// spamVerdict is one recipient's junk decision.
type spamVerdict struct {
	junk   bool
	score  float64
	reason string
}

// fields are the X-Spam fields of the stored copy (names that Thunderbird
// and Outlook rules know).
func (v spamVerdict) fields() string {
	var b strings.Builder
	if v.junk {
		b.WriteString("X-Spam-Flag: YES\r\n")
	}
	fmt.Fprintf(&b, "X-Spam-Score: %.3f\r\n", v.score)
	b.WriteString("X-Spam-Reason: " + clean(v.reason) + "\r\n")
	return b.String()
}

// judge decides whether u's copy of a message from outside goes into
// Junk: the checks' Junk verdict (DMARC quarantine, SPF fail, rspamd)
// first, then the user's own junk filter (reputation, then words). ok is
// false when nothing judged (no Inspector and no filter): the copy then
// gets no X-Spam fields.
func (m *Router) judge(env *envelope.Envelope, u *accounts.User, mu *maildir.User, c *content) (v spamVerdict, ok bool) {
	if c.ins != nil && c.ins.Action == inbound.Junk {
		return spamVerdict{junk: true, score: 1, reason: c.ins.Reason}, true
	}
	if m.opts.Junk == nil {
		if c.ins == nil {
			return spamVerdict{}, false
		}
		reason := c.ins.Reason
		if reason == "" {
			reason = "junk filter off"
		}
		return spamVerdict{score: 0.5, reason: reason}, true
	}
	c.junkOnce.Do(func() {
		r, err := c.reader()
		if err != nil {
			c.junkErr = err
			return
		}
		c.junk = m.opts.Junk.Extract(r)
	})
	if c.junkErr != nil {
		return spamVerdict{score: 0.5, reason: "filter unavailable"}, true
	}
	jv, err := m.opts.Junk.ClassifyFeatures(junk.UserFile(mu.Dir()), c.junk, junk.Sender{Verified: c.ins != nil && c.ins.Verified})
	if err != nil {
		m.log.Warn("mda: junk filter unavailable, delivering to INBOX", "id", env.ID, "user", u.Address, "err", err)
	}
	return spamVerdict{junk: jv.Junk, score: jv.Score, reason: jv.Reason}, true
}

// maxPendingNotes bounds the addresses waiting to be noted as written to.
const maxPendingNotes = 10000

// sentNotes records, after the reply, whom our users wrote to (for the
// junk filter's "known sender"), one NoteSent per user for everything
// pending: a burst of submissions costs one rewrite of each user's file.
// It is best-effort: a failure is logged, and past maxPendingNotes new
// notes are dropped.
type sentNotes struct {
	mu      sync.Mutex
	pending map[string][]string // junk file → addresses
	n       int
	running bool
	idle    *sync.Cond // signalled when running turns false (tests)
}

// noteSent queues env's recipients as written to by the sender's user.
func (m *Router) noteSent(env *envelope.Envelope, errs []error) {
	if m.opts.Junk == nil || env.AuthUser == "" {
		return
	}
	u, ok := m.opts.Directory.Lookup(env.AuthUser)
	if !ok {
		return
	}
	path, err := m.junkFile(u)
	if err != nil {
		m.log.Warn("mda: noting recipients for the junk filter", "id", env.ID, "user", u.Address, "err", err)
		return
	}
	var rcpts []string
	for i, r := range env.To {
		if errs[i] == nil {
			rcpts = append(rcpts, r)
		}
	}
	n := &m.notes
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.n+len(rcpts) > maxPendingNotes {
		m.log.Warn("mda: too many recipients waiting to be noted for the junk filter; dropped", "id", env.ID, "user", u.Address)
		return
	}
	if n.pending == nil {
		n.pending = map[string][]string{}
	}
	n.pending[path] = append(n.pending[path], rcpts...)
	n.n += len(rcpts)
	if !n.running {
		n.running = true
		go m.writeNotes()
	}
}

// writeNotes drains the pending notes and ends when there are none.
func (m *Router) writeNotes() {
	n := &m.notes
	for {
		n.mu.Lock()
		batch := n.pending
		n.pending, n.n = nil, 0
		if len(batch) == 0 {
			n.running = false
			if n.idle != nil {
				n.idle.Broadcast()
			}
			n.mu.Unlock()
			return
		}
		n.mu.Unlock()
		for path, rcpts := range batch {
			if err := m.opts.Junk.NoteSent(path, rcpts...); err != nil {
				m.log.Warn("mda: noting recipients for the junk filter", "file", path, "err", err)
			}
		}
	}
}

// waitNotes waits until every queued note has been written (tests).
func (m *Router) waitNotes() {
	n := &m.notes
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.idle == nil {
		n.idle = sync.NewCond(&n.mu)
	}
	for n.running {
		n.idle.Wait()
	}
}

// junkFile is where u's junk filter data lives.
func (m *Router) junkFile(u *accounts.User) (string, error) {
	mu, err := m.opts.Store.User(u.Domain, u.Local)
	if err != nil {
		return "", err
	}
	return junk.UserFile(mu.Dir()), nil
}
