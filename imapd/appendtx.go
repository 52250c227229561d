package imapd

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"postie/imapd/mimeparse"
	"postie/maildir"
)

// APPEND through a transaction: MULTIAPPEND (RFC 3502) and CATENATE (RFC 4469).
//
// The messages of one APPEND are staged first (in memory up to stageInMemory bytes for the whole
// command, however many messages it has, then in one file for the command in the account's tmp/,
// which maildir's cleaner removes should the process die: one descriptor however many messages), and only
// appended to the mailbox once the command has been read whole: a client that stops halfway, a
// message over the limit, a bad flag or a bad CATENATE URL leave the mailbox untouched. Appending
// the staged messages can still fail (the quota, a disk error); the ones already appended by
// this command are then expunged again before the NO, so all or none remain, though another
// session may glimpse them meanwhile.

const stageInMemory = 256 << 10

// maxAppendMessages bounds the messages of one MULTIAPPEND: each costs a staged entry however
// small it is (a quota counts bytes, and empty literals have none).
const maxAppendMessages = 1000

var errAppendCount = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeLimit,
	Text: "At most 1000 messages in one APPEND"}

var (
	_ imapserver.SessionAppendTx = (*session)(nil)
	_ imapserver.SessionCatenate = (*session)(nil)
)

// BeginAppend starts an APPEND into mailbox.
func (s *session) BeginAppend(mailbox string) (imapserver.AppendTx, error) {
	dst, err := s.destination(mailbox)
	if err != nil {
		return nil, err
	}
	tx := &appendTx{s: s, dst: dst, room: -1}
	if s.user.Quota > 0 { // what is staged is bounded by what the quota could take
		used, _, err := s.mail.Usage()
		if err != nil {
			return nil, s.mailError("append: quota usage", err)
		}
		tx.room = max(s.user.Quota-used, 0)
	}
	return tx, nil
}

type appendTx struct {
	s      *session
	dst    *maildir.Mailbox
	staged []*stagedMsg
	memory int64    // bytes staged in memory, at most stageInMemory
	total  int64    // bytes staged
	room   int64    // what the quota leaves (-1: no quota)
	file   *os.File // the messages past stageInMemory, one after the other
	fileN  int64    // bytes in file
}

// stagedMsg is one message read from the client, waiting for Commit.
type stagedMsg struct {
	tx     *appendTx
	flags  maildir.Flags
	names  []string
	date   time.Time
	binary bool
	mem    bytes.Buffer
	inFile bool  // once mem would pass stageInMemory: the bytes at off in tx.file
	off    int64 // where the message starts in tx.file
	size   int64
}

func (tx *appendTx) Message(options *imap.AppendOptions) (io.WriteCloser, error) {
	if len(tx.staged) >= maxAppendMessages {
		return nil, errAppendCount
	}
	names := make([]string, 0, len(options.Flags))
	for _, f := range options.Flags {
		names = append(names, string(f))
	}
	bits, err := tx.dst.ParseFlags(names)
	if err != nil {
		return nil, tx.s.mailError("append", err)
	}
	m := &stagedMsg{tx: tx, flags: bits, names: names, date: options.Time, binary: options.Binary}
	tx.staged = append(tx.staged, m)
	return m, nil
}

func (m *stagedMsg) Write(p []byte) (int, error) {
	tx := m.tx
	if tx.total += int64(len(p)); tx.room >= 0 && tx.total > tx.room {
		return 0, tx.s.mailError("append: stage", maildir.ErrQuotaExceeded)
	}
	m.size += int64(len(p))
	if !m.inFile && tx.memory+int64(len(p)) <= stageInMemory {
		tx.memory += int64(len(p))
		return m.mem.Write(p)
	}
	if !m.inFile {
		if err := tx.spill(m); err != nil {
			return 0, tx.s.mailError("append: stage", err)
		}
	}
	n, err := tx.file.Write(p)
	tx.fileN += int64(n)
	if err != nil {
		return n, tx.s.mailError("append: stage", err)
	}
	return n, nil
}

// spill moves m, the message being staged, from memory to the end of the staging file.
func (tx *appendTx) spill(m *stagedMsg) error {
	if tx.file == nil {
		f, err := os.CreateTemp(filepath.Join(tx.s.mail.Dir(), "tmp"), "append-*")
		if err != nil {
			return err
		}
		tx.file = f
	}
	m.inFile, m.off = true, tx.fileN
	n, err := tx.file.Write(m.mem.Bytes())
	tx.fileN += int64(n)
	if err != nil {
		return err
	}
	tx.memory -= int64(m.mem.Len())
	m.mem = bytes.Buffer{}
	return nil
}

func (m *stagedMsg) Close() error { return nil }

// reader gives the staged bytes (a literal8's binary parts encoded, as Append does).
func (m *stagedMsg) reader() (io.Reader, error) {
	var r io.Reader = bytes.NewReader(m.mem.Bytes())
	if m.inFile {
		r = io.NewSectionReader(m.tx.file, m.off, m.size)
	}
	if !m.binary {
		return r, nil
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("imapd: read staged APPEND: %w", err)
	}
	b, _ = mimeparse.EncodeBinaryParts(b)
	return bytes.NewReader(b), nil
}

// Commit appends the staged messages in order; on a failure it expunges those it appended.
func (tx *appendTx) Commit() (*imapserver.MultiAppendData, error) {
	defer tx.s.busy()()
	uids := make([]uint32, 0, len(tx.staged))
	for _, m := range tx.staged {
		r, err := m.reader()
		var uid uint32
		if err == nil {
			uid, err = tx.dst.Append(r, m.flags, m.date, nil)
		}
		if err != nil {
			if len(uids) > 0 {
				if _, xerr := tx.dst.Expunge(uids, nil); xerr != nil {
					tx.s.logf(slog.LevelError, "imap append: take back a partial MULTIAPPEND", "mailbox", tx.dst.Name(), "err", xerr)
				}
			}
			return nil, tx.s.mailError("append", err)
		}
		uids = append(uids, uid)
	}
	data := &imapserver.MultiAppendData{UIDValidity: tx.dst.UIDValidity()}
	names := make([][]string, len(tx.staged))
	for i, m := range tx.staged {
		names[i] = m.names
		data.UIDs = append(data.UIDs, imap.UID(uids[i]))
	}
	tx.s.trainAppends(tx.dst, uids, names) // one job for the command, as COPY and MOVE
	sort.Slice(data.UIDs, func(i, j int) bool { return data.UIDs[i] < data.UIDs[j] })
	return data, nil
}

func (tx *appendTx) Abort() {
	if tx.file != nil {
		tx.file.Close()
		os.Remove(tx.file.Name())
		tx.file = nil
	}
	tx.staged = nil
}

// CatenateURL reads the message, section or range a CATENATE URL names, from any mailbox of the
// user's.
func (s *session) CatenateURL(u *imapserver.CatenateURL) (io.ReadCloser, error) {
	bad := func(text string) (io.ReadCloser, error) { return nil, imapserver.BadURL(u.Raw, text) }
	mb, err := s.mail.Mailbox(u.Mailbox)
	if errors.Is(err, maildir.ErrNoSuchMailbox) {
		return bad("No such mailbox")
	}
	if err != nil {
		return nil, s.mailError("catenate", err)
	}
	if u.UIDValidity != 0 && u.UIDValidity != mb.UIDValidity() {
		return bad("UIDVALIDITY differs")
	}
	msg := &message{uid: uint32(u.UID), size: -1, src: mailboxSource(mb, nil)}
	found := false
	mb.View(func(msgs []maildir.Message) {
		i := sort.Search(len(msgs), func(i int) bool { return msgs[i].UID >= msg.uid })
		if i < len(msgs) && msgs[i].UID == msg.uid {
			found, msg.size = true, msgs[i].Size
		}
	})
	if !found {
		return bad("No such message")
	}
	f := &fetcher{s: s}
	l, err := f.bodyLiteral(msg, &u.Section)
	if errors.Is(err, maildir.ErrNoSuchMessage) {
		msg.close()
		return bad("No such message")
	}
	if err != nil {
		msg.close()
		return nil, s.mailError("catenate", err)
	}
	var r io.Reader = bytes.NewReader(l.data)
	if l.data == nil {
		r = io.LimitReader(l.r, l.n)
	}
	return &closeReader{Reader: r, close: msg.close}, nil
}

type closeReader struct {
	io.Reader
	close func()
}

func (c *closeReader) Close() error { c.close(); return nil }
