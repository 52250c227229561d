package pop3d

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"strings"

	"postie/netconn"
)

const (
	// RFC 2449 §4: a command line is at most 255 octets, CRLF included.
	maxCommandLine = 255
	// A SASL client response line (RFC 5034 §4) is not a command; allow
	// more room for long passwords.
	maxSASLLine = 4096
	// After this many -ERR replies the session is closed: a real client
	// never gets there, a fuzzer or a password guesser does.
	maxErrors = 10

	readBufSize  = maxSASLLine + 2
	writeBufSize = 64 << 10
	fileBufSize  = 64 << 10
)

var errLineTooLong = errors.New("pop3d: line too long")

type state int

const (
	stateAuthorization state = iota
	stateTransaction
)

// session is one client connection.
type session struct {
	srv      *Server
	tc       *netconn.Conn // the tracker's connection, below TLS
	conn     net.Conn      // tc, or the TLS layer over it
	br       *bufio.Reader
	bw       *bufio.Writer
	log      *slog.Logger
	remoteIP netip.Addr
	tls      bool

	state  state
	errors int
	quit   bool
	user   string // from USER, waiting for PASS

	// TRANSACTION state.
	box         maildrop
	unlock      func()
	uidValidity uint32
	msgs        []entry // the maildrop as it was at login
	live        int     // messages not marked deleted
	liveSize    int64   // their octets
	seen        *seenMarker
	fileBuf     []byte
	topReader   *bufio.Reader
	scratch     []byte
}

func newSession(s *Server, tc *netconn.Conn, nc net.Conn) *session {
	_, isTLS := nc.(*tls.Conn)
	return &session{
		srv:      s,
		tc:       tc,
		conn:     nc,
		br:       bufio.NewReaderSize(nc, readBufSize),
		bw:       bufio.NewWriterSize(nc, writeBufSize),
		log:      s.log.With("proto", "pop3", "cid", tc.ID(), "remote", tc.RemoteAddr().String()),
		remoteIP: tc.IP(),
		tls:      isTLS,
	}
}

// serve runs the session; on an implicit-TLS port the tracker has done the
// handshake already.
func (c *session) serve() {
	defer func() {
		// Last resort only: a bug must cost one connection, not the server.
		if r := recover(); r != nil {
			c.log.Error("pop3: panic in session", "panic", r, "stack", string(debug.Stack()))
		}
	}()
	defer c.closeMaildrop()
	ctx, cancel := context.WithCancel(c.srv.ctx)
	defer cancel()

	c.log.Debug("pop3: connected", "tls", c.tls)
	c.okf("%s POP3 server ready", c.srv.hostname)
	if c.bw.Flush() != nil {
		return
	}
	for {
		if c.quit {
			c.bw.Flush()
			return
		}
		if c.srv.closing.Load() {
			c.goodbye()
			return
		}
		line, err := c.readLine(maxCommandLine)
		if err == errLineTooLong {
			c.fail("", "line too long")
		} else if err != nil {
			if c.srv.closing.Load() {
				c.goodbye() // Shutdown woke the read
			} else if !errors.Is(err, io.EOF) {
				c.log.Debug("pop3: read failed", "err", err)
			}
			return
		} else if err := c.dispatch(ctx, line); err != nil {
			c.log.Debug("pop3: connection failed", "err", err)
			return
		}
		if c.errors >= maxErrors {
			c.bw.Flush()
			c.log.Info("pop3: too many errors; connection closed")
			return
		}
		if err := c.flushUnlessPipelined(); err != nil {
			c.log.Debug("pop3: write failed", "err", err)
			return
		}
	}
}

// goodbye tells the client the server is going away. Its deletions are
// not applied: like any session that ends without QUIT (RFC 1939 §6).
func (c *session) goodbye() {
	c.reply("-ERR [SYS/TEMP] server shutting down")
	c.bw.Flush()
}

// flushUnlessPipelined sends the buffered replies, unless a whole next
// command is already waiting: then its reply can go in the same packet
// (RFC 2449 §6.6, PIPELINING).
func (c *session) flushUnlessPipelined() error {
	if n := c.br.Buffered(); n > 0 {
		if buf, _ := c.br.Peek(n); bytes.IndexByte(buf, '\n') >= 0 {
			return nil
		}
	}
	return c.bw.Flush()
}

// readLine reads one line without its line ending (CRLF, or a bare LF,
// which we forgive). A line longer than max octets (line ending included)
// is discarded whole and reported as errLineTooLong.
func (c *session) readLine(max int) (string, error) {
	line, err := c.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		for err == bufio.ErrBufferFull {
			_, err = c.br.ReadSlice('\n')
		}
		if err != nil {
			return "", err
		}
		return "", errLineTooLong
	}
	if err != nil {
		return "", err // a partial line at EOF is no command
	}
	if len(line) > max {
		return "", errLineTooLong
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return string(line), nil
}

// reply buffers one response line; write errors surface at the next Flush.
func (c *session) reply(line string) {
	c.bw.WriteString(line)
	c.bw.WriteString("\r\n")
}

func (c *session) okf(format string, args ...any) {
	c.bw.WriteString("+OK ")
	fmt.Fprintf(c.bw, format, args...)
	c.bw.WriteString("\r\n")
}

// fail sends -ERR with an optional RFC 2449 response code (RFC 3206 for
// SYS/TEMP, SYS/PERM and AUTH) and counts the error.
func (c *session) fail(code, msg string) {
	c.errors++
	c.bw.WriteString("-ERR ")
	if code != "" {
		c.bw.WriteString("[" + code + "] ")
	}
	c.bw.WriteString(msg)
	c.bw.WriteString("\r\n")
}

// command is one POP3 command: the state it is valid in (anyState: both)
// and its handler.
type command struct {
	state state
	run   func(c *session, ctx context.Context, arg string) error
}

const anyState state = -1

// commands is the whole command set, so dispatch knows "not now" from
// "never heard of it" without listing the names a second time.
var commands = map[string]command{
	"CAPA": {anyState, func(c *session, _ context.Context, a string) error { return c.cmdCapa(a) }},
	"QUIT": {anyState, func(c *session, _ context.Context, _ string) error { return c.cmdQuit() }},
	"USER": {stateAuthorization, func(c *session, _ context.Context, a string) error { return c.cmdUser(a) }},
	"PASS": {stateAuthorization, (*session).cmdPass},
	"AUTH": {stateAuthorization, (*session).cmdAuth},
	"STLS": {stateAuthorization, (*session).cmdStls},
	"STAT": {stateTransaction, func(c *session, _ context.Context, a string) error { return c.cmdStat(a) }},
	"LIST": {stateTransaction, func(c *session, _ context.Context, a string) error { return c.cmdList(a) }},
	"UIDL": {stateTransaction, func(c *session, _ context.Context, a string) error { return c.cmdUidl(a) }},
	"RETR": {stateTransaction, func(c *session, _ context.Context, a string) error { return c.cmdRetr(a) }},
	"TOP":  {stateTransaction, func(c *session, _ context.Context, a string) error { return c.cmdTop(a) }},
	"DELE": {stateTransaction, func(c *session, _ context.Context, a string) error { return c.cmdDele(a) }},
	"NOOP": {stateTransaction, func(c *session, _ context.Context, a string) error { return c.cmdNoop(a) }},
	"RSET": {stateTransaction, func(c *session, _ context.Context, a string) error { return c.cmdRset(a) }},
}

// dispatch runs one command line. Its error means the connection is
// broken (or a multi-line reply was cut): the session must end.
func (c *session) dispatch(ctx context.Context, line string) error {
	name, arg, _ := strings.Cut(line, " ")
	name = strings.ToUpper(name)
	cmd, known := commands[name]
	switch {
	case name == "APOP":
		c.fail("", "APOP not supported")
	case !known:
		c.fail("", "unknown command")
	case cmd.state != anyState && cmd.state != c.state:
		c.fail("", "command not valid in this state")
	default:
		return cmd.run(c, ctx, arg)
	}
	return nil
}

// startTLS runs the server side of a TLS handshake on the connection and
// puts new buffers over it. Anything the client sent in clear after STLS
// is dropped with the old reader: it must not be taken as a command sent
// under TLS (RFC 2595 §4; the "STARTTLS injection" class of bugs).
func (c *session) startTLS(ctx context.Context) error {
	tlsConn, err := c.tc.ServerTLS(ctx, c.srv.tlsConfig) // within the handshake deadline
	if err != nil {
		return fmt.Errorf("pop3d: TLS handshake: %w", err)
	}
	c.conn = tlsConn
	c.br.Reset(tlsConn)
	c.bw.Reset(tlsConn)
	c.tls = true
	return nil
}

// plaintextAllowed reports whether a password may be sent on this
// connection: under TLS, or from a loopback address.
func (c *session) plaintextAllowed() bool {
	return c.tls || c.srv.trusted(c.remoteIP)
}

// closeMaildrop releases the maildrop of a session that ends without a
// QUIT in the TRANSACTION state: nothing is deleted (RFC 1939 §6).
func (c *session) closeMaildrop() {
	if c.seen != nil {
		c.seen.flush()
		c.seen = nil
	}
	if c.unlock != nil {
		c.unlock()
		c.unlock = nil
	}
	c.box = nil
	c.msgs = nil
}
