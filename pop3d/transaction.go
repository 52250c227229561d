package pop3d

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// openMaildrop snapshots the user's INBOX: the session sees the messages
// present at login and no others (RFC 1939 §5: the maildrop keeps its
// message numbers for the whole session).
func (c *session) openMaildrop(acct account) error {
	box, err := c.srv.store.Inbox(acct.domain, acct.local)
	if err != nil {
		return err
	}
	if err := box.Refresh(); err != nil {
		return err
	}
	c.box = box
	c.seen = &seenMarker{box: box, origin: c, log: c.log}
	c.uidValidity, c.msgs = box.Snapshot()
	c.undeleteAll()
	return nil
}

// undeleteAll clears every deletion mark and recounts the maildrop.
func (c *session) undeleteAll() {
	c.live, c.liveSize = len(c.msgs), 0
	for i := range c.msgs {
		c.msgs[i].deleted = false
		c.liveSize += c.msgs[i].size
	}
}

// listing writes one "n <field>" line per message not marked deleted; field
// appends the message's second column.
func (c *session) listing(field func(b []byte, m *entry) []byte) {
	for i := range c.msgs {
		if m := &c.msgs[i]; !m.deleted {
			b := strconv.AppendInt(c.scratch[:0], int64(i+1), 10)
			b = field(append(b, ' '), m)
			c.scratch = append(b, '\r', '\n')
			c.bw.Write(c.scratch)
		}
	}
	c.reply(".")
}

// message parses a message-number argument: 1-based, in the snapshot and
// not deleted. On failure it has already replied.
func (c *session) message(arg string) (int, *entry, bool) {
	n, err := parseNumber(arg)
	if err != nil || n < 1 || n > uint64(len(c.msgs)) {
		c.fail("", "no such message")
		return 0, nil, false
	}
	m := &c.msgs[n-1]
	if m.deleted {
		c.fail("", fmt.Sprintf("message %d already deleted", n))
		return 0, nil, false
	}
	return int(n), m, true
}

// parseNumber accepts plain decimal digits only (no sign, no spaces).
func parseNumber(s string) (uint64, error) {
	if s == "" || len(s) > 19 {
		return 0, errors.New("bad number")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errors.New("bad number")
		}
	}
	return strconv.ParseUint(s, 10, 64)
}

func (c *session) cmdStat(arg string) error {
	if arg != "" {
		c.fail("", "STAT takes no argument")
		return nil
	}
	c.okf("%d %d", c.live, c.liveSize)
	return nil
}

// cmdList and cmdUidl write one line per message straight into the output
// buffer: on a 100,000-message maildrop this is the whole cost of the
// command.
func (c *session) cmdList(arg string) error {
	if arg != "" {
		if n, m, ok := c.message(arg); ok {
			c.okf("%d %d", n, m.size)
		}
		return nil
	}
	c.okf("%d messages (%d octets)", c.live, c.liveSize)
	c.listing(func(b []byte, m *entry) []byte { return strconv.AppendInt(b, m.size, 10) })
	return nil
}

// uidl is the unique-id of a message (RFC 1939 §7): UIDVALIDITY and UID as
// IMAP knows them, so both protocols agree and it survives restarts; 16
// characters, well inside the 70 allowed.
func appendUIDL(b []byte, uidValidity, uid uint32) []byte {
	return appendHex8(appendHex8(b, uidValidity), uid)
}

func appendHex8(b []byte, v uint32) []byte {
	const digits = "0123456789abcdef"
	for shift := 28; shift >= 0; shift -= 4 {
		b = append(b, digits[(v>>shift)&0xf])
	}
	return b
}

func (c *session) cmdUidl(arg string) error {
	if arg != "" {
		if n, m, ok := c.message(arg); ok {
			c.okf("%d %s", n, appendUIDL(nil, c.uidValidity, m.uid))
		}
		return nil
	}
	c.reply("+OK unique-id listing follows")
	c.listing(func(b []byte, m *entry) []byte { return appendUIDL(b, c.uidValidity, m.uid) })
	return nil
}

// open opens a message file, replying -ERR if that fails.
func (c *session) open(m *entry) (io.ReadCloser, bool) {
	f, err := c.box.Open(m.uid)
	if err != nil {
		if errors.Is(err, errGone) {
			c.fail("", "message was removed by another session")
		} else {
			c.log.Error("pop3: cannot open message", "uid", m.uid, "err", err)
			c.fail("SYS/TEMP", "cannot read message")
		}
		return nil, false
	}
	return f, true
}

// cmdRetr streams a message file as it is on disk (CRLF already), so the
// octets sent before dot-stuffing are the size LIST announced. Once the
// whole message is in the output, it is queued to be marked \Seen (see
// seenMarker), so that IMAP shows it read.
func (c *session) cmdRetr(arg string) error {
	_, m, ok := c.message(arg)
	if !ok {
		return nil
	}
	f, ok := c.open(m)
	if !ok {
		return nil
	}
	defer f.Close()
	c.okf("%d octets", m.size)
	if c.fileBuf == nil {
		c.fileBuf = make([]byte, fileBufSize)
	}
	dw := dotWriter{w: c.bw}
	var sent int64
	for {
		n, err := f.Read(c.fileBuf)
		if n > 0 {
			if _, werr := dw.Write(c.fileBuf[:n]); werr != nil {
				return werr
			}
		}
		sent += int64(n)
		// A read of a regular file that stops short has met its end: when that
		// is where the size said, one more read to be told EOF is a waste.
		if err == io.EOF || err == nil && n < len(c.fileBuf) && sent == m.size {
			break
		}
		if err != nil {
			// The +OK is out: the only way to tell the client is to cut
			// the connection before the terminating dot.
			return fmt.Errorf("pop3d: read message %d: %w", m.uid, err)
		}
	}
	if err := dw.Close(); err != nil {
		return err
	}
	if !m.seen {
		m.seen = true
		c.seen.add(m.uid)
	}
	return nil
}

// cmdTop sends the header, the blank line and the first k body lines
// (RFC 1939 §7). It does not mark the message seen.
func (c *session) cmdTop(arg string) error {
	num, count, ok := strings.Cut(arg, " ")
	lines, err := parseNumber(count)
	if !ok || err != nil {
		c.fail("", "usage: TOP msg lines")
		return nil
	}
	_, m, ok := c.message(num)
	if !ok {
		return nil
	}
	f, ok := c.open(m)
	if !ok {
		return nil
	}
	defer f.Close()
	c.reply("+OK top of message follows")
	if c.topReader == nil {
		c.topReader = bufio.NewReaderSize(f, fileBufSize)
	} else {
		c.topReader.Reset(f)
	}
	dw := dotWriter{w: c.bw}
	if err := copyTop(&dw, c.topReader, lines); err != nil {
		return fmt.Errorf("pop3d: top of message %d: %w", m.uid, err)
	}
	c.topReader.Reset(nil)
	return dw.Close()
}

func (c *session) cmdDele(arg string) error {
	n, m, ok := c.message(arg)
	if !ok {
		return nil
	}
	m.deleted = true
	c.live--
	c.liveSize -= m.size
	c.okf("message %d deleted", n)
	return nil
}

func (c *session) cmdNoop(arg string) error {
	if arg != "" {
		c.fail("", "NOOP takes no argument")
		return nil
	}
	c.reply("+OK")
	return nil
}

func (c *session) cmdRset(arg string) error {
	if arg != "" {
		c.fail("", "RSET takes no argument")
		return nil
	}
	c.undeleteAll()
	c.okf("maildrop has %d messages (%d octets)", c.live, c.liveSize)
	return nil
}

// cmdQuit ends the session. In the TRANSACTION state it first enters
// UPDATE: the messages marked by DELE are expunged now, and only now
// (RFC 1939 §6).
func (c *session) cmdQuit() error {
	c.quit = true
	if c.state != stateTransaction {
		c.okf("%s POP3 server signing off", c.srv.hostname)
		return nil
	}
	var uids []uint32
	for _, m := range c.msgs {
		if m.deleted {
			uids = append(uids, m.uid)
		}
	}
	box := c.box
	// Mark \Seen and release the lock before the reply: a client that
	// reconnects at once must find the mailbox free.
	defer c.closeMaildrop()
	if len(uids) > 0 {
		if err := box.Expunge(uids, c); err != nil {
			c.log.Error("pop3: expunge failed", "messages", len(uids), "err", err)
			c.fail("SYS/TEMP", "some deleted messages not removed")
			return nil
		}
	}
	c.log.Info("pop3: logout", "deleted", len(uids), "left", c.live)
	c.okf("%s POP3 server signing off (%d messages left)", c.srv.hostname, c.live)
	return nil
}
