package smtpd

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-sasl"

	"postie/internal/testutil"
)

// chanListener hands the server connections that a test made itself.
type chanListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newChanListener() *chanListener {
	return &chanListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error   { l.once.Do(func() { close(l.done) }); return nil }
func (l *chanListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 25} }

// pipeTo connects a new in-memory client to the server behind ln; the
// server sees it as coming from 127.0.0.1 (so plaintext AUTH is allowed).
func (l *chanListener) pipe() net.Conn {
	client, server := net.Pipe()
	l.ch <- fakeAddrConn{server, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}}
	return client
}

type fuzzServer struct {
	srv  *Server
	ln   *chanListener
	logs *testutil.SyncBuffer
}

func newFuzzServer(f *testing.F, role Role) *fuzzServer {
	fs := &fuzzServer{ln: newChanListener(), logs: &testutil.SyncBuffer{}}
	opts := Options{
		Role: role, Hostname: "mx.example.test", TLSConfig: testutil.ServerTLS(f),
		MaxMessageBytes: 64 << 10, MaxRecipients: 5, IdleTimeout: 2 * time.Second,
		MessagesPerMinutePerIP: 1000, MaxMessagesPerHour: 1000,
		Recipients: &fakeRecipients{}, Delivery: &fakeDelivery{},
		Logger: slog.New(slog.NewTextHandler(fs.logs, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	if role == RoleSubmission {
		opts.Auth = &fakeAuth{}
	}
	fs.srv = NewServer(opts)
	go fs.srv.Serve(fs.ln)
	f.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		fs.srv.Shutdown(ctx)
	})
	return fs
}

// session feeds data as one client's whole side of a connection and
// returns what the server sent (its first maxFuzzReply bytes). With
// hangUp the client then hangs up at once, wherever the dialog stands,
// and what the server says after that is lost; otherwise the client ends
// any DATA and says QUIT, and reads until the server closes (or its idle
// timeout ends a dialog that is still waiting, in BDAT or AUTH). Either
// way the server must let go of the connection.
func (fs *fuzzServer) session(t *testing.T, data []byte, hangUp bool) []byte {
	logged := len(fs.logs.String())
	c := fs.ln.pipe()
	out := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(c, maxFuzzReply))
		io.Copy(io.Discard, c)
		out <- b
	}()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if hangUp {
		c.Write(data)
		c.Close()
	} else {
		c.Write(append(data, "\r\n.\r\nQUIT\r\n"...))
	}
	b := <-out
	c.Close()
	for deadline := time.Now().Add(5 * time.Second); fs.srv.activeConns() > 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the server still holds the connection after the client left")
		}
	}
	// Only this input's lines: an earlier one's would blame the wrong input.
	if logs := fs.logs.String()[logged:]; strings.Contains(logs, "panic") {
		t.Fatalf("panic in the server:\n%s", logs)
	}
	return b
}

const maxFuzzReply = 1 << 20

// checkReplies fails if a reply line holds a control character or invalid
// UTF-8: the server must never echo such input. It stops at STARTTLS (TLS
// records follow) and skips go-smtp's own echo of an unknown command's
// four bytes, which no backend code can reach.
func checkReplies(t *testing.T, out []byte) {
	for _, line := range strings.Split(string(out), "\r\n") {
		switch {
		case strings.HasPrefix(line, "220 2.0.0 Ready to start TLS"):
			return
		case strings.HasPrefix(line, "500 5.5.2 Syntax errors, ") && strings.HasSuffix(line, " command unrecognized"):
			continue
		}
		if hasControl(line) || !utf8.ValidString(line) {
			t.Fatalf("reply line %q holds a control character or invalid UTF-8", line)
		}
	}
}

// healthy checks that the server still greets and answers.
func (fs *fuzzServer) healthy(t *testing.T) {
	c := fs.ln.pipe()
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "220 ") {
		t.Fatalf("banner after fuzz input: %q, %v", line, err)
	}
	io.WriteString(c, "NOOP\r\n")
	if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "250 ") {
		t.Fatalf("NOOP after fuzz input: %q, %v", line, err)
	}
}

func FuzzSession(f *testing.F) {
	seeds := []string{
		"EHLO a\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<ann@example.test>\r\nDATA\r\nSubject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n",
		"EHLO a\r\nAUTH PLAIN " + b64("\x00ann@example.test\x00secret") + "\r\nMAIL FROM:<ann@example.test>\r\nRCPT TO:<x@elsewhere.example>\r\nDATA\r\nFrom: ann@example.test\r\n\r\nhi\r\n.\r\n",
		"EHLO a\r\nAUTH LOGIN\r\n" + b64("ann@example.test") + "\r\n" + b64("secret") + "\r\nMAIL FROM:<sales@example.test>\r\nRCPT TO:<bob@example.test>\r\nBDAT 30\r\nFrom: sales@example.test\r\n\r\nabBDAT 3 LAST\r\nxyz",
		"EHLO a\r\nAUTH LOGIN " + b64("ann@example.test") + "\r\n*\r\nAUTH PLAIN\r\n=\r\nRSET\r\n",
		"HELO a\r\nMAIL FROM:<>\r\nRCPT TO:<postmaster@example.org>\r\nRCPT TO:<postmaster>\r\nDATA\r\n\n.\n\r.\r\r\n.\r\n",
		"EHLO a\r\nSTARTTLS\r\n\x16\x03\x01\x00\x05hello",
		"EHLO a\r\nMAIL FROM:<a@b> SIZE=999999999\r\nMAIL FROM:<a@b> BODY=BINARYMIME\r\nRCPT TO:<a@example.test> NOTIFY=NEVER\r\nVRFY x\r\nEXPN y\r\nHELP\r\n",
		"\x00\xff\r\n\r\n\r\nEHLO " + strings.Repeat("x", 3000) + "\r\n",
		// RFC 5321's bare <Postmaster>, in any case and with parameters.
		"EHLO a\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<Postmaster>\r\nRCPT TO:<POSTMASTER> NOTIFY=NEVER\r\nRCPT TO:<postmaster\r\nRCPT TO:<postmasterx>\r\nDATA\r\nx\r\n.\r\n",
		// A bad EHLO, then a good one; a bad repeated EHLO with commands after it.
		"EHLO a\x1b[31mb\r\nHELO \xff\r\nEHLO ok\r\nEHLO a\u009bb\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<ann@example.test>\r\nDATA\r\nx\r\n.\r\n",
		// Controls in addresses that envelope's rules let by.
		"EHLO a\r\nAUTH PLAIN " + b64("\x00ann@example.test\x00secret") + "\r\nMAIL FROM:<ann@example.test\u0085>\r\nMAIL FROM:<ann@example.test>\r\nRCPT TO:<x@[1.2.3.4\x01]>\r\nRCPT TO:<x\u009f@elsewhere.example>\r\n",
		// Malformed SASL responses.
		"EHLO a\r\nAUTH PLAIN " + b64("nonuls") + "\r\nAUTH PLAIN\r\n=\r\nAUTH PLAIN\r\n" + b64("a\x00b") + "\r\nAUTH LOGIN\r\n!!\r\n",
	}
	for _, s := range seeds {
		for _, mx := range []bool{false, true} {
			f.Add(mx, false, []byte(s))
			f.Add(mx, true, []byte(s))
		}
	}
	mx := newFuzzServer(f, RoleMX)
	sub := newFuzzServer(f, RoleSubmission)
	f.Fuzz(func(t *testing.T, useMX, hangUp bool, data []byte) {
		fs := sub
		if useMX {
			fs = mx
		}
		checkReplies(t, fs.session(t, data, hangUp))
		fs.healthy(t)
	})
}

func FuzzAuthLogin(f *testing.F) {
	f.Add(false, []byte(nil), []byte("ann"), []byte("pw"), []byte("extra"))
	f.Add(true, []byte("ann"), []byte("pw"), []byte(""), []byte(""))
	f.Add(true, []byte(""), []byte(""), []byte(""), []byte(""))
	f.Add(false, []byte(nil), bytes.Repeat([]byte("u"), 1025), []byte("pw"), []byte(""))
	f.Add(false, []byte(nil), []byte("\x00a\x00b"), bytes.Repeat([]byte("p"), 2000), []byte(""))
	f.Fuzz(func(t *testing.T, withIR bool, ir, r1, r2, r3 []byte) {
		calls := 0
		var gotUser, gotPass string
		srv := newLoginServer(func(u, p string) error {
			calls++
			gotUser, gotPass = u, p
			if p == "pw" {
				return nil
			}
			return errAuthFailed
		})
		// go-smtp passes nil for "no initial response" and decoded,
		// non-nil bytes afterwards.
		var first []byte
		if withIR {
			first = append([]byte{}, ir...)
		}
		later := [][]byte{append([]byte{}, r1...), append([]byte{}, r2...), append([]byte{}, r3...)}
		wantUser, wantPass := r1, r2
		if withIR {
			wantUser, wantPass = first, r1
		}

		ch, done, err := srv.Next(first)
		steps := 1
		for i := 0; !done && err == nil; i++ {
			if i >= len(later) {
				t.Fatalf("LOGIN still not done after %d steps", steps)
			}
			switch {
			case steps == 1 && !withIR && string(ch) != "Username:":
				t.Fatalf("first challenge %q", ch)
			case (steps == 2 || withIR) && string(ch) != "Password:":
				t.Fatalf("challenge %q at step %d", ch, steps)
			}
			ch, done, err = srv.Next(later[i])
			steps++
		}
		tooLong := len(wantUser) > maxLoginField || len(wantPass) > maxLoginField
		switch {
		case tooLong && (calls != 0 || err != errLoginTooLong):
			t.Fatalf("over-long field: %d calls, err %v", calls, err)
		case !tooLong && calls != 1:
			t.Fatalf("authenticate called %d times", calls)
		case !tooLong && (gotUser != string(wantUser) || gotPass != string(wantPass)):
			t.Fatalf("authenticate(%q, %q), want (%q, %q)", gotUser, gotPass, wantUser, wantPass)
		case !tooLong && (err == nil) != (string(wantPass) == "pw"):
			t.Fatalf("result %v for password %q", err, wantPass)
		}
		if _, done, err := srv.Next([]byte("more")); !done || err != sasl.ErrUnexpectedClientResponse {
			t.Fatalf("Next after the end: %v %v", done, err)
		}
	})
}
