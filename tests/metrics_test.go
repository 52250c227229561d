package tests

// [metrics] listen: after real traffic (mail from outside over port 25, a
// refused recipient, a submission delivered to a remote MX through the
// queue, IMAP logins with a wrong and a right password) a scrape of GET
// /metrics shows each counted exactly, and the gauges read live state.

import (
	"bufio"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
)

// scrapeMetrics fetches /metrics and returns each sample line as
// "name{labels}" → value.
func scrapeMetrics(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /metrics: %s, %q: %s", resp.Status, resp.Header.Get("Content-Type"), b)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad sample %q", line)
		}
		out[line[:i]] = v
	}
	return out
}

func TestMetricsAfterTraffic(t *testing.T) {
	w := newRemoteWorld(t)
	in := newInstance(t, w.extraConf+"\n[metrics]\nlisten = [\"127.0.0.1:0\"]\n")
	in.extraRoles = []string{"metrics"}
	in.addUser("ann@example.test")
	in.start()
	addr := in.ports["metrics"]

	// Mail from outside (127.0.0.2 is not a trusted network): checked,
	// filed by the junk filter, stored.
	c, err := dialFrom("127.0.0.2", in.ports["smtp"], "mail.sender.test")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("bob@sender.test", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("nobody@example.test", nil); !strings.HasPrefix(replyCode(err), "550 ") {
		t.Fatalf("RCPT to an unknown user: %v, want 550", err)
	}
	if err := c.Rcpt("ann@example.test", nil); err != nil {
		t.Fatal(err)
	}
	wc, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(wc, "From: bob@sender.test\r\nTo: ann@example.test\r\nSubject: metrics\r\n\r\nhello\r\n")
	if err := wc.Close(); err != nil {
		t.Fatal(err)
	}
	c.Quit()

	// A submission to a remote recipient, delivered by the queue.
	if err := submit(t, in, "ann@example.test", []string{"carol@remote.test"}, "From: ann@example.test\r\nTo: carol@remote.test\r\nSubject: out\r\n\r\nhi\r\n"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the remote delivery", 20*time.Second, func() bool { return len(w.backup.messages()) == 1 })

	// IMAP: a wrong password, then the right one; the session stays open.
	bad, err := imapclient.DialInsecure(in.ports["imap"], nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := bad.Login("ann@example.test", "wrong").Wait(); err == nil {
		t.Fatal("IMAP login with a wrong password succeeded")
	}
	bad.Close()
	imapLogin(t, in, "ann@example.test")

	want := map[string]float64{
		`postie_messages_received_total{role="mx"}`:                                        1,
		`postie_messages_received_total{role="submission"}`:                                1,
		`postie_messages_refused_total{reason="unknown_recipient",role="mx",stage="rcpt"}`: 1,
		`postie_messages_delivered_total{destination="local"}`:                             1,
		`postie_messages_delivered_total{destination="remote"}`:                            1,
		`postie_deliveries_total{result="delivered"}`:                                      1,
		`postie_deliveries_total{result="failed"}`:                                         0,
		`postie_bounces_total`:                                                             0,
		`postie_logins_total{protocol="imap",result="failed"}`:                             1,
		`postie_logins_total{protocol="imap",result="ok"}`:                                 1,
		`postie_logins_total{protocol="submission",result="ok"}`:                           1,
		`postie_logins_total{protocol="pop3",result="ok"}`:                                 0,
		`postie_connections_total{role="smtp"}`:                                            1,
		`postie_connections_total{role="submission"}`:                                      1,
		`postie_connections_total{role="imap"}`:                                            2,
		`postie_connections_open{role="imap"}`:                                             1,
		`postie_junk_verdicts_total{verdict="not_junk"}`:                                   1,
		`postie_inbound_verdicts_total{action="accept"}`:                                   1,
		`postie_queue_messages`:                                                            0,
		`postie_queue_oldest_age_seconds`:                                                  0,
	}
	var got map[string]float64
	// The queue drops a delivered message just after the sink has it.
	waitFor(t, "an empty queue", 10*time.Second, func() bool {
		got = scrapeMetrics(t, addr)
		return got["postie_queue_messages"] == 0
	})
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present: %v), want %v", k, g, ok, v)
		}
	}
	// Label values are bounded sets: no address, user or IP from the
	// traffic above becomes a label (one series per sender would grow
	// without end).
	for k := range got {
		if strings.ContainsAny(k, "@") || strings.Contains(k, "127.0.0.") || strings.Contains(k, "sender.test") || strings.Contains(k, "remote.test") {
			t.Errorf("a label value from the traffic: %s", k)
		}
	}
	// The served certificate: here the self-signed one serve made.
	pemBytes, err := os.ReadFile(filepath.Join(in.dir, "data", "tls", "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		t.Fatal("cert.pem: no PEM block")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if exp := got["postie_tls_certificate_expiry_timestamp_seconds"]; exp != float64(cert.NotAfter.Unix()) {
		t.Errorf("certificate expiry %v, want %v (%v)", exp, cert.NotAfter.Unix(), cert.NotAfter)
	}
	if t.Failed() {
		t.Logf("server log:\n%s", in.log())
	}
}
