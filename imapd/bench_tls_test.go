package imapd

import (
	"bufio"
	"crypto/tls"
	"testing"
)

// BenchmarkFetchBodyAllTLS is BenchmarkFetchBodyAll over implicit TLS: what the connection's
// buffer sizes (go-imap's connbuf.go, kept small for idle connections) cost in TLS records.
func BenchmarkFetchBodyAllTLS(b *testing.B) {
	ts, total := mixedServer(b)
	c, err := tls.Dial("tcp", ts.tlsAddr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		b.Fatal(err)
	}
	bc := &benchClient{b: b, c: c, br: bufio.NewReaderSize(c, 64<<10)}
	defer bc.close()
	bc.br.ReadString('\n')
	bc.run("LOGIN " + testUser + " " + testPass)
	bc.run("EXAMINE INBOX")
	b.SetBytes(total)
	for b.Loop() {
		if n, _ := bc.run("FETCH 1:* BODY.PEEK[]"); n < benchSize() {
			b.Fatalf("fetched %d", n)
		}
	}
}
