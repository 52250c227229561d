package imapd

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"postie/maildir"
)

// The read-path benchmarks use a mailbox shaped like bench/run.sh's: IMAPD_BENCH_MESSAGES messages
// (default 10000) of 2-50 KiB (log-uniform), 40 % text/plain, 30 % multipart/alternative, 30 %
// multipart/mixed with base64 attachments, written straight into new/ under names carrying ,S=.
//
//	go test -run XXX -bench 'FetchBody|SelectCold' -benchtime 5x ./imapd

// mixedMessage builds message i of the mixed mailbox.
func mixedMessage(r *rand.Rand, i int) []byte {
	target := int(math.Exp(math.Log(2048) + r.Float64()*(math.Log(50<<10)-math.Log(2048))))
	var b bytes.Buffer
	fmt.Fprintf(&b, "Return-Path: <user%d@example.org>\r\n", i%97)
	fmt.Fprintf(&b, "Received: from relay.example.net (relay.example.net [192.0.2.%d])\r\n\tby mx.example.test with ESMTPS id %08X\r\n\tfor <alice@example.test>; Mon, 23 Nov 2026 10:00:00 +0000\r\n", i%250+1, r.Uint32())
	fmt.Fprintf(&b, "From: User %d <user%d@example.org>\r\nTo: alice@example.test\r\nSubject: mixed %d\r\n", i%97, i%97, i)
	fmt.Fprintf(&b, "Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <mixed%d@example.org>\r\nMIME-Version: 1.0\r\n", i)
	text := func(n int) {
		for start := b.Len(); b.Len()-start < n; {
			for w := 0; w < 10; w++ {
				b.WriteString(benchWords[r.IntN(len(benchWords))])
				b.WriteByte(' ')
			}
			b.WriteString("\r\n")
		}
	}
	body := max(target-b.Len(), 200)
	switch kind := r.IntN(10); {
	case kind < 4:
		b.WriteString("Content-Type: text/plain; charset=utf-8\r\n\r\n")
		text(body)
	case kind < 7:
		b.WriteString("Content-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n--alt\r\nContent-Type: text/plain\r\n\r\n")
		text(body * 2 / 5)
		b.WriteString("--alt\r\nContent-Type: text/html\r\n\r\n<html><body><p>\r\n")
		text(body / 2)
		b.WriteString("</p></body></html>\r\n--alt--\r\n")
	default:
		b.WriteString("Content-Type: multipart/mixed; boundary=\"mix\"\r\n\r\n--mix\r\nContent-Type: text/plain\r\n\r\n")
		text(600 + body/6)
		b.WriteString("--mix\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n")
		raw := make([]byte, max(64, (body-600-body/6)*3/4-100))
		for k := range raw {
			raw[k] = byte(r.Uint32())
		}
		enc := base64.StdEncoding.EncodeToString(raw)
		for len(enc) > 76 {
			b.WriteString(enc[:76] + "\r\n")
			enc = enc[76:]
		}
		b.WriteString(enc + "\r\n--mix--\r\n")
	}
	return b.Bytes()
}

var mixedOnce sync.Once

// mixedTemplate returns a directory of n generated message files (the names new/ files get), made
// once and kept in $TMPDIR for later runs, and their total size.
func mixedTemplate(b *testing.B, n int) (dir string, total int64) {
	dir = filepath.Join(os.TempDir(), fmt.Sprintf("postie-imapd-mixed-%d", n))
	mixedOnce.Do(func() {
		if _, err := os.Stat(filepath.Join(dir, "complete")); err == nil {
			return
		}
		os.RemoveAll(dir)
		if err := os.MkdirAll(filepath.Join(dir, "msgs"), 0o700); err != nil {
			b.Fatal(err)
		}
		r := rand.New(rand.NewPCG(7, 7))
		base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC).Unix()
		for i := range n {
			msg := mixedMessage(r, i)
			name := fmt.Sprintf("%d.M%06dP1.bench,S=%d,W=%d", base+int64(i)*420, i, len(msg), len(msg))
			if err := os.WriteFile(filepath.Join(dir, "msgs", name), msg, 0o600); err != nil {
				b.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, "complete"), nil, 0o600); err != nil {
			b.Fatal(err)
		}
	})
	err := filepath.WalkDir(filepath.Join(dir, "msgs"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if _, s, ok := strings.Cut(filepath.Base(p), ",W="); ok {
				k, _ := strconv.Atoi(s)
				total += int64(k)
			}
		}
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	return dir, total
}

// freshMixedStore makes a store root whose alice@example.test INBOX holds the template's messages in
// new/ (hard links), never loaded: the first SELECT numbers them.
func freshMixedStore(b *testing.B, tmpl string) string {
	b.Helper()
	root, err := os.MkdirTemp("", "postie-imapd-cold-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(root) })
	linkMixed(b, tmpl, root)
	return root
}

// linkMixed makes alice's INBOX under root with the template's messages
// hard-linked into new/.
func linkMixed(b *testing.B, tmpl, root string) {
	b.Helper()
	inbox := filepath.Join(root, "example.test", "alice")
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(inbox, sub), 0o700); err != nil {
			b.Fatal(err)
		}
	}
	ents, err := os.ReadDir(filepath.Join(tmpl, "msgs"))
	if err != nil {
		b.Fatal(err)
	}
	for _, e := range ents {
		if err := os.Link(filepath.Join(tmpl, "msgs", e.Name()), filepath.Join(inbox, "new", e.Name())); err != nil {
			b.Fatal(err)
		}
	}
}

var mixedStoreOnce sync.Once

// mixedServer serves a loaded copy of the mixed mailbox, made once (hard links to the template) and
// kept in $TMPDIR beside it for later runs; FETCH BODY.PEEK changes nothing in it.
func mixedServer(b *testing.B) (*testServer, int64) {
	tmpl, total := mixedTemplate(b, benchSize())
	root := tmpl + "-store"
	mixedStoreOnce.Do(func() {
		if _, err := os.Stat(filepath.Join(root, "complete")); err == nil {
			return
		}
		os.RemoveAll(root)
		linkMixed(b, tmpl, root)
		u, err := maildir.NewStore(root, maildir.StoreOptions{Hostname: "bench"}).User("example.test", "alice")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := u.Mailbox("INBOX"); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "complete"), nil, 0o600); err != nil {
			b.Fatal(err)
		}
	})
	return startTestServer(b, root), total
}

// BenchmarkFetchBodyAll is FETCH 1:* BODY.PEEK[] in one session (bench/run.sh's "1 client").
func BenchmarkFetchBodyAll(b *testing.B) {
	ts, total := mixedServer(b)
	bc := dialBench(b, ts, "INBOX")
	defer bc.close()
	b.SetBytes(total)
	for b.Loop() {
		if n, _ := bc.run("FETCH 1:* BODY.PEEK[]"); n < benchSize() {
			b.Fatalf("fetched %d", n)
		}
	}
}

// BenchmarkFetchBodyAll20 is 20 sessions fetching 1:* BODY.PEEK[] at once.
func BenchmarkFetchBodyAll20(b *testing.B) {
	ts, total := mixedServer(b)
	const clients = 20
	var bcs []*benchClient
	for range clients {
		bcs = append(bcs, dialBench(b, ts, "INBOX"))
	}
	defer func() {
		for _, bc := range bcs {
			bc.close()
		}
	}()
	b.SetBytes(total * clients)
	for b.Loop() {
		var wg sync.WaitGroup
		for _, bc := range bcs {
			wg.Go(func() { bc.run("FETCH 1:* BODY.PEEK[]") })
		}
		wg.Wait()
	}
}

// BenchmarkSelectCold is the first SELECT of a Maildir nobody has numbered: every file is in new/.
func BenchmarkSelectCold(b *testing.B) {
	tmpl, _ := mixedTemplate(b, benchSize())
	for b.Loop() {
		b.StopTimer()
		root := freshMixedStore(b, tmpl)
		ts := startTestServer(b, root)
		bc := dialBench(b, ts, "")
		b.StartTimer()
		bc.run("SELECT INBOX")
		b.StopTimer()
		bc.close()
		b.StartTimer()
	}
}
