package main

import (
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"time"
)

// pop3Client is the least POP3 client the figures need (RFC 1939).
type pop3Client struct {
	conn net.Conn
	tp   *textproto.Conn
	read int64 // bytes received, as on the wire
}

// countingConn counts what is read from the connection, so throughput is of
// the bytes the server sent, not of the dot-unstuffed LF text.
type countingConn struct {
	net.Conn
	n *int64
}

func (c countingConn) Read(p []byte) (int, error) {
	k, err := c.Conn.Read(p)
	*c.n += int64(k)
	return k, err
}

func dialPOP3(addr string) (*pop3Client, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("pop3 dial: %w", err)
	}
	c := &pop3Client{conn: conn}
	c.tp = textproto.NewConn(countingConn{conn, &c.read})
	if _, err := c.reply(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("pop3 greeting: %w", err)
	}
	return c, nil
}

// reply reads one status line and returns its text after +OK.
func (c *pop3Client) reply() (string, error) {
	line, err := c.tp.ReadLine()
	if err != nil {
		return "", err
	}
	if !strings.HasPrefix(line, "+OK") {
		return "", fmt.Errorf("pop3: %s", line)
	}
	return strings.TrimSpace(strings.TrimPrefix(line, "+OK")), nil
}

func (c *pop3Client) cmd(format string, args ...any) (string, error) {
	if err := c.tp.PrintfLine(format, args...); err != nil {
		return "", err
	}
	return c.reply()
}

// multi sends a command with a multi-line answer and copies the
// dot-unstuffed body to w, returning its size.
func (c *pop3Client) multi(w io.Writer, format string, args ...any) (int64, error) {
	if _, err := c.cmd(format, args...); err != nil {
		return 0, err
	}
	return io.Copy(w, c.tp.DotReader())
}

// cmdPOP3 records login + STAT (three sessions), UIDL, and RETR of every
// message in turn. run.sh runs it several times, alternating the servers;
// the table shows the medians.
func cmdPOP3(args []string) error {
	fs := newFlags("pop3")
	rec := commonFlags(fs)
	addr := fs.String("addr", "", "host:port of the POP3 server")
	user := fs.String("user", "reader@bench.test", "login")
	pass := fs.String("pass", "", "password")
	expect := fs.Int("expect", 0, "messages the mailbox must hold")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var logins []time.Duration
	var c *pop3Client
	var n int
	for i := 0; i < 3; i++ { // three sessions (the table shows the median); the last one goes on
		if c != nil {
			if _, err := c.cmd("QUIT"); err != nil {
				return err
			}
			c.conn.Close()
		}
		start := time.Now()
		var err error
		if c, n, err = loginStat(*addr, *user, *pass); err != nil {
			return err
		}
		logins = append(logins, time.Since(start))
	}
	defer c.conn.Close()
	if *expect > 0 && n != *expect {
		return fmt.Errorf("pop3: STAT says %d messages, want %d", n, *expect)
	}
	start := time.Now()
	var lines countLines
	if _, err := c.multi(&lines, "UIDL"); err != nil {
		return fmt.Errorf("pop3 uidl: %w", err)
	}
	uidl := time.Since(start)
	if int(lines) != n {
		return fmt.Errorf("pop3: UIDL listed %d messages, STAT %d", lines, n)
	}
	start = time.Now()
	before := c.read
	for i := 1; i <= n; i++ {
		if _, err := c.multi(io.Discard, "RETR %d", i); err != nil {
			return fmt.Errorf("pop3 retr %d: %w", i, err)
		}
	}
	retr := time.Since(start)
	total := c.read - before
	if _, err := c.cmd("QUIT"); err != nil {
		return err
	}
	for _, took := range logins {
		if err := rec.record("pop3.login", "POP3 connect + USER/PASS + STAT", "ms", lower, ms(took)); err != nil {
			return err
		}
	}
	if err := rec.record("pop3.uidl", "POP3 UIDL", "ms", lower, ms(uidl)); err != nil {
		return err
	}
	return rec.record("pop3.retr", fmt.Sprintf("POP3 RETR of all %d messages, one at a time", n), "MB/s", higher, mbps(total, retr))
}

// countLines counts newline characters written to it.
type countLines int

func (n *countLines) Write(p []byte) (int, error) {
	*n += countLines(strings.Count(string(p), "\n"))
	return len(p), nil
}

// loginStat connects, logs in and returns the client and STAT's count.
func loginStat(addr, user, pass string) (*pop3Client, int, error) {
	c, err := dialPOP3(addr)
	if err != nil {
		return nil, 0, err
	}
	if _, err := c.cmd("USER %s", user); err != nil {
		c.conn.Close()
		return nil, 0, err
	}
	if _, err := c.cmd("PASS %s", pass); err != nil {
		c.conn.Close()
		return nil, 0, fmt.Errorf("pop3 login: %w", err)
	}
	stat, err := c.cmd("STAT")
	if err != nil {
		c.conn.Close()
		return nil, 0, err
	}
	f := strings.Fields(stat)
	n := -1
	if len(f) >= 2 {
		n, err = strconv.Atoi(f[0])
	}
	if n < 0 || err != nil {
		c.conn.Close()
		return nil, 0, fmt.Errorf("pop3: odd STAT reply %q", stat)
	}
	return c, n, nil
}
