package imapd

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// FuzzSessionCommands sends arbitrary commands to a real server over maildir, logged in with INBOX
// selected (a few messages: multipart, a reply chain, keywords): the engine's parsers and every
// Session method behind them. No input may panic (the engine recovers and logs it at Error) or get
// NO [SERVERBUG] (logged as "handling ... command"). The fork's FuzzServerCommands covers the
// parsers alone, faster.
func FuzzSessionCommands(f *testing.F) {
	for _, s := range []string{
		"a SORT (REVERSE ARRIVAL CC DATE FROM SIZE SUBJECT TO DISPLAYFROM DISPLAYTO) UTF-8 ALL\r\n",
		"a UID THREAD REFERENCES UTF-8 OR SUBJECT re TEXT body\r\nb THREAD ORDEREDSUBJECT US-ASCII ALL\r\n",
		"a SEARCH RETURN (MIN MAX COUNT ALL SAVE PARTIAL -1:-4294967295) TEXT \"body\"\r\nb FETCH $ (FLAGS)\r\n",
		"a SEARCH RETURN (UPDATE) UNSEEN\r\nb STORE 1:* +FLAGS (\\Seen)\r\nc CANCELUPDATE \"a\"\r\n",
		"a ENABLE QRESYNC\r\nb SELECT INBOX (QRESYNC (1 1 1:4294967295 (1:4294967295 1:4294967295)))\r\nc UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)\r\n",
		"a STORE 1:2 (UNCHANGEDSINCE 0) +FLAGS ($Junk)\r\nb SEARCH MODSEQ 1\r\nc STATUS INBOX (HIGHESTMODSEQ SIZE RECENT)\r\n",
		"a FETCH 1:* (BODY.PEEK[1.1.HEADER] BINARY.PEEK[2]<3.4294967295> BODYSTRUCTURE ENVELOPE PREVIEW MODSEQ)\r\n",
		"a APPEND INBOX CATENATE (URL \"/INBOX/;UID=1/;SECTION=1\" TEXT {5+}\r\nhello URL \"/INBOX/;UID=2/;PARTIAL=4294967295.4294967295\")\r\n",
		"a APPEND INBOX (\\Seen) {3+}\r\nabc (\\Draft) ~{3+}\r\na\x00b\r\nb EXPUNGE\r\n",
		"a ID (\"name\" \"x\")\r\nb GETQUOTAROOT INBOX\r\nc NOTIFY SET STATUS (SELECTED (MessageNew (UID) MessageExpunge FlagChange))\r\nd NOOP\r\n",
		"a COPY 1:* Trash\r\nb MOVE 2 Junk\r\nc UID EXPUNGE 1:*\r\nd EXAMINE Trash\r\ne SEARCH RECENT NEW OLD\r\n",
	} {
		f.Add([]byte(s))
	}
	var (
		mu     sync.Mutex
		errLog strings.Builder
	)
	logger := slog.New(&fuzzHandler{mu: &mu, b: &errLog})
	ts := startTestServer(f, f.TempDir(), func(o *Options) { o.Logger = logger })
	ts.deliver("From: A <a@example.org>\r\nTo: b@example.test\r\nSubject: Hello\r\nMessage-ID: <1@x>\r\n" +
		"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain\r\n\r\nbody one\r\n--b\r\nContent-Type: application/octet-stream\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\nAAECAw==\r\n--b--\r\n")
	ts.deliver(testMessage(2, "Re: Hello"))
	ts.deliver(testMessage(3, "Fwd: [list] Re: hello"))
	f.Fuzz(func(t *testing.T, in []byte) {
		mu.Lock()
		errLog.Reset()
		mu.Unlock()
		c, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		done := make(chan string)
		go func() {
			b, _ := io.ReadAll(io.LimitReader(c, 4<<20))
			done <- string(b)
		}()
		fmt.Fprintf(c, "l LOGIN %s %s\r\ns SELECT INBOX\r\n", testUser, testPass)
		c.Write(in)
		c.Write([]byte("\r\nz LOGOUT\r\n"))
		c.(*net.TCPConn).CloseWrite()
		out := <-done // the engine logs a command's failure before it answers, a panic before it closes
		mu.Lock()
		logged := errLog.String()
		mu.Unlock()
		if logged != "" {
			if len(out) > 3000 {
				out = out[:1500] + " ... " + out[len(out)-1500:]
			}
			t.Fatalf("input %q:\n%s\nout: %q", in, logged, out)
		}
	})
}

// fuzzHandler keeps the log records that show a panic or a SERVERBUG answer.
type fuzzHandler struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (h *fuzzHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *fuzzHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *fuzzHandler) WithGroup(string) slog.Handler            { return h }
func (h *fuzzHandler) Handle(_ context.Context, r slog.Record) error {
	var msg string
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "msg" || a.Key == "err" {
			msg += a.Value.String() + " "
		}
		return true
	})
	if r.Level >= slog.LevelError || strings.Contains(msg, "handling ") && !strings.Contains(msg, "EOF") {
		h.mu.Lock()
		fmt.Fprintf(h.b, "%s %s %s\n", r.Level, r.Message, msg)
		h.mu.Unlock()
	}
	return nil
}
