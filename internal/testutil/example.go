package testutil

import (
	"os"
	"regexp"
	"testing"
)

// examplePortsRE finds the sentence of the README's quick start that
// promises config.toml.example's ports.
var examplePortsRE = regexp.MustCompile(`\(SMTP (\d+),\s+submission (\d+) and (\d+), IMAP (\d+) and (\d+), POP3 (\d+) and (\d+), HTTP (\d+)\s+and HTTPS (\d+)`)

// ExampleListeners returns the loopback addresses that the README (at
// readme) promises the shipped config.toml.example listens on, by config
// key ("smtp.listen", "imap.tls_listen"...). Tests read them from the
// README rather than naming the ports, so that no test holds a port a
// quick-start server may be using, and the README and the example cannot
// drift apart unnoticed.
func ExampleListeners(t testing.TB, readme string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	m := examplePortsRE.FindStringSubmatch(string(b))
	if m == nil {
		t.Fatalf("%s: the quick start no longer lists the example's ports", readme)
	}
	keys := []string{"smtp.listen", "submission.listen", "submission.tls_listen", "imap.listen", "imap.tls_listen",
		"pop3.listen", "pop3.tls_listen", "http.listen", "http.tls_listen"}
	out := make(map[string]string, len(keys))
	for i, k := range keys {
		out[k] = "127.0.0.1:" + m[i+1]
	}
	return out
}
