package imapd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"postie/accounts"
	"postie/internal/testutil"
	"postie/maildir"
)

// TestLoginUnderGuessingAttack is issue 9's attack, end to end: 1,000
// connections from 127.0.0.2 guess ann's password over IMAP with the real,
// throttled Authenticator (production argon2id), while ann logs in with a
// real client from her usual address (127.0.0.1) and from a new one
// (127.0.0.3). Every one of her logins must succeed; the attacker's checked
// guesses stay within the throttle's bound.
func TestLoginUnderGuessingAttack(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 connections")
	}
	const user, pass = "ann@example.test", "correct horse"
	dir := t.TempDir()
	hash, err := accounts.HashPassword(pass)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "accounts.toml")
	if err := os.WriteFile(path, []byte(fmt.Sprintf("[[user]]\naddress = %q\npassword = %q\n", user, hash)), 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := accounts.Open(path, []string{"example.test"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// One log for the server and the accounts, at the production level:
	// the attack must not flood it (issue 9 item 4).
	logs := &testutil.SyncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	srv := New(Options{
		Store:    maildir.NewStore(filepath.Join(dir, "mail"), maildir.StoreOptions{Hostname: "test"}),
		Auth:     &accounts.Authenticator{DB: db, Throttle: accounts.NewThrottle(), Logger: logger},
		Hostname: "mail.example.test",
		Logger:   logger,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	addr := ln.Addr().String()

	owner := func(from string) error {
		conn, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}).Dial("tcp", addr)
		if err != nil {
			return err
		}
		c := imapclient.New(conn, nil)
		defer c.Close()
		if err := c.Login(user, pass).Wait(); err != nil {
			return err
		}
		_, err = c.Select("INBOX", nil).Wait()
		return err
	}
	if err := owner("127.0.0.1"); err != nil { // her usual address, before the attack
		t.Fatal(err)
	}

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var checked, refused, ready atomic.Int64
	start := time.Now()
	for range 1000 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			throttleE2EGuess(ctx, t, addr, user, &checked, &refused, &ready)
		}()
	}
	// Wait until every connection has had an answer: the attack is in full swing.
	for ready.Load() < 1000 && ctx.Err() == nil && time.Since(start) < time.Minute {
		time.Sleep(10 * time.Millisecond)
	}
	for i, from := range []string{"127.0.0.1", "127.0.0.3", "127.0.0.1", "127.0.0.3"} {
		if err := owner(from); err != nil {
			t.Errorf("owner's login %d from %s during the attack: %v", i+1, from, err)
		}
	}
	stop()
	wg.Wait()
	elapsed := time.Since(start)
	t.Logf("1000 connections from one address for %v: %d passwords checked, %d logins refused unchecked",
		elapsed.Round(time.Millisecond), checked.Load(), refused.Load())
	// Three free failures, then 1s, 2s, 4s, 8s, 16s and 30s apart.
	if bound := int64(9 + elapsed/(30*time.Second)); checked.Load() > bound {
		t.Errorf("%d passwords checked in %v, bound %d", checked.Load(), elapsed, bound)
	}
	if ready.Load() < 1000 {
		t.Errorf("only %d attacking connections got an answer", ready.Load())
	}
	// Each attacking connection may say it was refused at most once; the
	// throttle's own lines are one per address per minute.
	if lines := strings.Count(logs.String(), "\n"); lines > 50 {
		t.Errorf("%d log lines for %d refused logins, want at most 50:\n%.2000s", lines, refused.Load(), logs.String())
	}
}

// throttleE2EGuess is one attacking connection: LOGIN with a wrong password,
// again and again, until ctx ends.
func throttleE2EGuess(ctx context.Context, t *testing.T, addr, user string, checked, refused, ready *atomic.Int64) {
	conn, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 10 * time.Second}).Dial("tcp", addr)
	if err != nil {
		t.Errorf("attacker: %v", err)
		ready.Add(1)
		return
	}
	defer conn.Close()
	go func() { <-ctx.Done(); conn.Close() }()
	r := bufio.NewReader(conn)
	if _, err := r.ReadString('\n'); err != nil { // greeting
		ready.Add(1)
		return
	}
	first := true
	for i := 0; ctx.Err() == nil; i++ {
		fmt.Fprintf(conn, "g%d LOGIN %s wrong%d\r\n", i, user, i)
		var line string
		for !strings.HasPrefix(line, fmt.Sprintf("g%d ", i)) {
			if line, err = r.ReadString('\n'); err != nil {
				if first {
					ready.Add(1)
				}
				return
			}
		}
		switch {
		case strings.Contains(line, "[AUTHENTICATIONFAILED]"):
			checked.Add(1)
		case strings.Contains(line, "[UNAVAILABLE]"):
			refused.Add(1)
			time.Sleep(20 * time.Millisecond)
		default:
			if ctx.Err() == nil {
				t.Errorf("attacker got %q", line)
			}
		}
		if first {
			first = false
			ready.Add(1)
		}
	}
}
