package main

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// imapLoad holds what every IMAP figure needs.
type imapLoad struct {
	addr, user, pass string
	expect           int // messages the mailbox must hold (0: do not check)
	rec              *recorder
}

// thunderbirdHeaders are the fields Thunderbird asks for when it syncs a
// folder's headers.
var thunderbirdHeaders = []string{"From", "To", "Cc", "Subject", "Date", "Message-ID", "References",
	"In-Reply-To", "Content-Type"}

// cmdIMAP measures the IMAP figures in two phases. "first" takes what can
// be measured only once per server: the first SELECT of the mailbox ever
// (the server builds its index) and the first Thunderbird header sync (it
// may parse and cache headers). "repeat" takes the rest, and run.sh runs it
// several times, alternating the servers, for medians: the flag/size
// listing, the header sync again, a full-body fetch, SEARCH TEXT, the warm
// SELECT (three sessions) and the full-body fetch by many clients at once.
// "all" (the default) is "first" then "repeat" once.
func cmdIMAP(args []string) error {
	fs := newFlags("imap")
	l := imapLoad{rec: commonFlags(fs)}
	fs.StringVar(&l.addr, "addr", "", "host:port of the IMAP server")
	fs.StringVar(&l.user, "user", "reader@bench.test", "login")
	fs.StringVar(&l.pass, "pass", "", "password")
	fs.IntVar(&l.expect, "expect", 0, "messages INBOX must hold")
	word := fs.String("word", "quetzalcoatl", "word for UID SEARCH TEXT")
	clients := fs.Int("clients", 20, "clients of the concurrent full-body fetch")
	phase := fs.String("phase", "all", "first (once-only figures), repeat (the others) or all")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch *phase {
	case "first":
		return l.first()
	case "repeat":
		return l.repeat(*word, *clients)
	case "all":
		if err := l.first(); err != nil {
			return err
		}
		return l.repeat(*word, *clients)
	}
	return fmt.Errorf("-phase %q: want first, repeat or all", *phase)
}

// first records the figures a server can give only once: the first SELECT
// ever and the first header sync.
func (l *imapLoad) first() error {
	return l.session(
		l.selectFirst,
		func(c *imapclient.Client) error { return l.fetchHeaders(c, "imap.fetch.headers", "first") },
	)
}

// repeat records one sample of each figure that can be taken again.
func (l *imapLoad) repeat(word string, clients int) error {
	err := l.session(
		func(c *imapclient.Client) error { _, err := l.selectInbox(c); return err },
		l.fetchFlags,
		func(c *imapclient.Client) error { return l.fetchHeaders(c, "imap.fetch.headers.again", "again") },
		l.fetchBodies,
		func(c *imapclient.Client) error { return l.search(c, word) },
	)
	if err != nil {
		return err
	}
	if err := l.selectWarm(); err != nil {
		return err
	}
	return l.fetchConcurrent(clients)
}

// session logs in, runs the steps in order on one connection and logs out.
func (l *imapLoad) session(steps ...func(*imapclient.Client) error) error {
	c, err := l.login()
	if err != nil {
		return err
	}
	defer c.Close()
	for _, step := range steps {
		if err := step(c); err != nil {
			return err
		}
	}
	if err := c.Logout().Wait(); err != nil {
		return fmt.Errorf("logout: %w", err)
	}
	return nil
}

func (l *imapLoad) login() (*imapclient.Client, error) {
	c, err := imapclient.DialInsecure(l.addr, nil)
	if err != nil {
		return nil, fmt.Errorf("imap dial: %w", err)
	}
	if err := c.Login(l.user, l.pass).Wait(); err != nil {
		c.Close()
		return nil, fmt.Errorf("imap login %s: %w", l.user, err)
	}
	return c, nil
}

// selectInbox selects INBOX and checks the message count.
func (l *imapLoad) selectInbox(c *imapclient.Client) (time.Duration, error) {
	start := time.Now()
	data, err := c.Select("INBOX", nil).Wait()
	took := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("select: %w", err)
	}
	if l.expect > 0 && int(data.NumMessages) != l.expect {
		return 0, fmt.Errorf("select: INBOX has %d messages, want %d", data.NumMessages, l.expect)
	}
	return took, nil
}

func (l *imapLoad) selectFirst(c *imapclient.Client) error {
	took, err := l.selectInbox(c)
	if err != nil {
		return err
	}
	return l.rec.record("imap.select.first", "IMAP SELECT INBOX, first ever (cold index)", "ms", lower, ms(took))
}

// selectWarm logs in three more times and records each SELECT (the table
// shows their median).
func (l *imapLoad) selectWarm() error {
	for i := 0; i < 3; i++ {
		c, err := l.login()
		if err != nil {
			return err
		}
		took, err := l.selectInbox(c)
		c.Logout().Wait()
		c.Close()
		if err != nil {
			return err
		}
		if err := l.rec.record("imap.select.warm", "IMAP SELECT INBOX, warm", "ms", lower, ms(took)); err != nil {
			return err
		}
	}
	return nil
}

// fetchAll runs one FETCH 1:* (UID FETCH when uid is set) and drains it,
// returning the messages seen, the literal bytes read and the time taken.
func fetchAll(c *imapclient.Client, uid bool, opts *imap.FetchOptions) (int, int64, time.Duration, error) {
	var set imap.NumSet = imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}} // 0 is "*"
	if uid {
		set = imap.UIDSet{imap.UIDRange{Start: 1, Stop: 0}}
	}
	start := time.Now()
	cmd := c.Fetch(set, opts)
	n, bytes := 0, int64(0)
	for {
		msg := cmd.Next()
		if msg == nil {
			break
		}
		n++
		for item := msg.Next(); item != nil; item = msg.Next() {
			if body, ok := item.(imapclient.FetchItemDataBodySection); ok && body.Literal != nil {
				k, err := io.Copy(io.Discard, body.Literal)
				bytes += k
				if err != nil {
					cmd.Close()
					return n, bytes, 0, fmt.Errorf("fetch: %w", err)
				}
			}
		}
	}
	if err := cmd.Close(); err != nil {
		return n, bytes, 0, fmt.Errorf("fetch: %w", err)
	}
	return n, bytes, time.Since(start), nil
}

func (l *imapLoad) checkCount(what string, n int) error {
	if l.expect > 0 && n != l.expect {
		return fmt.Errorf("%s: got %d messages, want %d", what, n, l.expect)
	}
	return nil
}

func (l *imapLoad) fetchFlags(c *imapclient.Client) error {
	n, _, took, err := fetchAll(c, true, &imap.FetchOptions{UID: true, Flags: true, RFC822Size: true})
	if err != nil {
		return err
	}
	if err := l.checkCount("uid fetch flags", n); err != nil {
		return err
	}
	return l.rec.record("imap.fetch.flags", "IMAP UID FETCH 1:* (UID FLAGS RFC822.SIZE)", "ms", lower, ms(took))
}

// fetchHeaders is Thunderbird's header sync; run twice, the second run shows
// what the servers' caches of the first are worth.
func (l *imapLoad) fetchHeaders(c *imapclient.Client, id, which string) error {
	opts := &imap.FetchOptions{UID: true, Flags: true, RFC822Size: true, BodySection: []*imap.FetchItemBodySection{{
		Specifier: imap.PartSpecifierHeader, HeaderFields: thunderbirdHeaders, Peek: true}}}
	n, _, took, err := fetchAll(c, true, opts)
	if err != nil {
		return err
	}
	if err := l.checkCount("uid fetch headers", n); err != nil {
		return err
	}
	return l.rec.record(id, "IMAP Thunderbird header sync (UID FETCH 1:* HEADER.FIELDS), "+which, "ms", lower, ms(took))
}

func bodyOpts() *imap.FetchOptions {
	return &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}}
}

func (l *imapLoad) fetchBodies(c *imapclient.Client) error {
	n, bytes, took, err := fetchAll(c, false, bodyOpts())
	if err != nil {
		return err
	}
	if err := l.checkCount("fetch bodies", n); err != nil {
		return err
	}
	return l.rec.record("imap.fetch.body", "IMAP FETCH 1:* BODY.PEEK[], 1 client", "MB/s", higher, mbps(bytes, took))
}

func (l *imapLoad) search(c *imapclient.Client, word string) error {
	start := time.Now()
	data, err := c.UIDSearch(&imap.SearchCriteria{Text: []string{word}}, nil).Wait()
	took := time.Since(start)
	if err != nil {
		return fmt.Errorf("search: %w", err)
	}
	fmt.Printf("  %-7s UID SEARCH TEXT %s: %d hits\n", l.rec.server, word, len(data.AllUIDs()))
	return l.rec.record("imap.search.text", "IMAP UID SEARCH TEXT <word>", "ms", lower, ms(took))
}

// fetchConcurrent logs n clients in, then has them all fetch every body at
// once; the figure is the bytes of all of them over the wall time.
func (l *imapLoad) fetchConcurrent(n int) error {
	clients := make([]*imapclient.Client, n)
	defer func() {
		for _, c := range clients {
			if c != nil {
				c.Close()
			}
		}
	}()
	for i := range clients {
		c, err := l.login()
		if err != nil {
			return err
		}
		clients[i] = c
		if _, err := l.selectInbox(c); err != nil {
			return err
		}
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var total int64
	var firstErr error
	start := time.Now()
	for _, c := range clients {
		wg.Add(1)
		go func(c *imapclient.Client) {
			defer wg.Done()
			_, bytes, _, err := fetchAll(c, false, bodyOpts())
			mu.Lock()
			defer mu.Unlock()
			total += bytes
			if err != nil && firstErr == nil {
				firstErr = err
			}
		}(c)
	}
	wg.Wait()
	took := time.Since(start)
	if firstErr != nil {
		return firstErr
	}
	return l.rec.record("imap.fetch.body.concurrent", fmt.Sprintf("IMAP FETCH 1:* BODY.PEEK[], %d clients at once (total)", n),
		"MB/s", higher, mbps(total, took))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func mbps(bytes int64, d time.Duration) float64 { return float64(bytes) / 1e6 / d.Seconds() }
