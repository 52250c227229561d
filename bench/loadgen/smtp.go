package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
)

// smtpLoad is one SMTP inbound run: n messages of one size over c sessions,
// round-robin to users recipients.
type smtpLoad struct {
	addr, domain string
	n, c, size   int
	users        int
	maildirs     string // root holding <user>/new and <user>/cur
	wait         time.Duration
}

// cmdSMTP sends the messages, then polls the Maildirs until every accepted
// message is there, and records both rates.
func cmdSMTP(args []string) error {
	fs := newFlags("smtp")
	rec := commonFlags(fs)
	var l smtpLoad
	fs.StringVar(&l.addr, "addr", "", "host:port of the SMTP server")
	fs.StringVar(&l.domain, "domain", "bench.test", "recipient domain")
	fs.IntVar(&l.n, "n", 5000, "messages")
	fs.IntVar(&l.c, "c", 1, "concurrent sessions")
	fs.IntVar(&l.size, "size", 4096, "message size in bytes")
	fs.IntVar(&l.users, "users", 20, "recipients u01..uNN")
	fs.StringVar(&l.maildirs, "maildirs", "", "directory holding each user's Maildir (<dir>/uNN/new)")
	fs.DurationVar(&l.wait, "wait", 3*time.Minute, "give up waiting for delivery after this")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if l.addr == "" || l.maildirs == "" {
		return fmt.Errorf("-addr and -maildirs are required")
	}
	base := l.countDelivered()
	start := time.Now()
	accepted, acceptedAt, err := l.send()
	if err != nil {
		return err
	}
	if accepted < l.n {
		fmt.Fprintf(os.Stderr, "smtp: only %d of %d messages accepted\n", accepted, l.n)
	}
	deliveredAt, got := l.waitDelivered(base + accepted)
	if got < base+accepted {
		return fmt.Errorf("only %d of %d messages reached the Maildirs after %v", got-base, accepted, l.wait)
	}
	kib := l.size / 1024
	id := fmt.Sprintf("smtp.%dk.c%d", kib, l.c)
	what := fmt.Sprintf("SMTP %d KiB x%d, %d session(s)", kib, l.n, l.c)
	if err := rec.record(id+".accepted", what+": accepted", "msg/s", higher,
		float64(accepted)/acceptedAt.Sub(start).Seconds()); err != nil {
		return err
	}
	return rec.record(id+".delivered", what+": in Maildir", "msg/s", higher,
		float64(accepted)/deliveredAt.Sub(start).Seconds())
}

// send runs the sessions; it returns how many messages got a 250 and when
// the last did.
func (l *smtpLoad) send() (int, time.Time, error) {
	tmpl := smtpMessage(l.size, uint64(l.size))
	idAt := bytes.Index(tmpl, []byte("<0000000000.load")) + 1
	var next, accepted, failed atomic.Int64
	var last atomic.Int64 // UnixNano of the last 250
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	runID := time.Now().UnixNano() % 1e6
	for s := 0; s < l.c; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := l.session(&next, func(i int) []byte {
				msg := bytes.Clone(tmpl)
				copy(msg[idAt:], fmt.Sprintf("%04d%06d", runID%10000, i%1e6))
				return msg
			}, func() {
				accepted.Add(1)
				last.Store(time.Now().UnixNano())
			}, &failed)
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil && accepted.Load() == 0 {
		return 0, time.Time{}, firstErr
	}
	if firstErr != nil || failed.Load() > 0 {
		fmt.Fprintf(os.Stderr, "smtp: %d messages refused; first session error: %v\n", failed.Load(), firstErr)
	}
	return int(accepted.Load()), time.Unix(0, last.Load()), nil
}

// session sends messages over one connection until all n are taken.
func (l *smtpLoad) session(next *atomic.Int64, msg func(int) []byte, ok func(), failed *atomic.Int64) error {
	c, err := smtp.Dial(l.addr)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer c.Close()
	if err := c.Hello("loadgen.sender.example"); err != nil {
		return fmt.Errorf("ehlo: %w", err)
	}
	for {
		i := int(next.Add(1)) - 1
		if i >= l.n {
			break
		}
		rcpt := fmt.Sprintf("u%02d@%s", i%l.users+1, l.domain)
		if err := sendOne(c, rcpt, msg(i)); err != nil {
			failed.Add(1)
			var se *smtp.SMTPError
			if errors.As(err, &se) {
				_ = c.Reset()
				continue
			}
			return err
		}
		ok()
	}
	return c.Quit()
}

func sendOne(c *smtp.Client, rcpt string, msg []byte) error {
	if err := c.Mail("load@sender.example", nil); err != nil {
		return err
	}
	if err := c.Rcpt(rcpt, nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

// countDelivered counts the files in every user's new/ and cur/.
func (l *smtpLoad) countDelivered() int {
	n := 0
	for u := 1; u <= l.users; u++ {
		for _, sub := range []string{"new", "cur"} {
			n += countDir(filepath.Join(l.maildirs, fmt.Sprintf("u%02d", u), sub))
		}
	}
	return n
}

func countDir(dir string) int {
	f, err := os.Open(dir)
	if err != nil {
		return 0
	}
	defer f.Close()
	names, _ := f.Readdirnames(-1)
	return len(names)
}

// waitDelivered polls until want files are in the Maildirs; it returns the
// time they were first all seen and the last count.
func (l *smtpLoad) waitDelivered(want int) (time.Time, int) {
	deadline := time.Now().Add(l.wait)
	for {
		got := l.countDelivered()
		now := time.Now()
		if got >= want || now.After(deadline) {
			return now, got
		}
		time.Sleep(20 * time.Millisecond)
	}
}
