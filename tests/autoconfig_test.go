package tests

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/xml"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"postie/webconf"
)

// TestAutoconfig runs the [http] role of the real binary: Thunderbird's
// autoconfig over plain HTTP and Outlook's autodiscover over HTTPS (with
// the server's own certificate) advertise exactly the ports the server
// bound, and the MTA-STS policy names the hostname.
func TestAutoconfig(t *testing.T) {
	in := newInstance(t, "\n[http]\nlisten = [\"127.0.0.1:0\"]\ntls_listen = [\"127.0.0.1:0\"]\nmta_sts_mode = \"enforce\"\n")
	in.extraRoles = []string{"http", "https"}
	in.start()
	port := func(role string) int {
		_, p, err := net.SplitHostPort(in.ports[role])
		if err != nil {
			t.Fatalf("%s: %v", role, err)
		}
		n, _ := strconv.Atoi(p)
		return n
	}

	// Thunderbird, plain HTTP.
	client := &http.Client{Timeout: 10 * time.Second}
	body := httpFetch(t, client, "GET", "http://"+in.ports["http"]+"/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=jo%40other.test", "")
	var cc webconf.ClientConfig
	if err := xml.Unmarshal([]byte(body), &cc); err != nil {
		t.Fatalf("%v\n%s", err, body)
	}
	p := cc.Provider
	if p.ID != "other.test" || strings.Join(p.Domains, " ") != "example.test other.test" {
		t.Errorf("provider %q domains %v", p.ID, p.Domains)
	}
	type adv struct {
		typ, socket string
		port        int
	}
	var got []adv
	for _, s := range append(append([]webconf.ServerConfig{}, p.Incoming...), p.Outgoing...) {
		if s.Hostname != "mx.example.test" || s.Username != "%EMAILADDRESS%" || s.Authentication != "password-cleartext" {
			t.Errorf("server %+v", s)
		}
		got = append(got, adv{s.Type, s.SocketType, s.Port})
	}
	want := []adv{
		{"imap", "SSL", port("imaps")}, {"imap", "STARTTLS", port("imap")},
		{"pop3", "SSL", port("pop3s")}, {"pop3", "STARTTLS", port("pop3")},
		{"smtp", "SSL", port("submissions")}, {"smtp", "STARTTLS", port("submission")},
	}
	if len(got) != len(want) {
		t.Fatalf("advertised %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("advertised %v, want %v", got[i], want[i])
		}
	}

	// Outlook, HTTPS, trusting only the server's self-signed certificate.
	pem, err := os.ReadFile(filepath.Join(in.dir, "data", "tls", "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatal("no certificate in cert.pem")
	}
	tlsClient := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "mx.example.test"},
	}}
	base := "https://" + in.ports["https"]
	js := httpFetch(t, tlsClient, "GET", base+"/autodiscover/autodiscover.json?Email=jo%40example.test&Protocol=AutodiscoverV1", "")
	if want := `{"Protocol":"AutodiscoverV1","Url":"https://mx.example.test/autodiscover/autodiscover.xml"}` + "\n"; js != want {
		t.Errorf("json: %q, want %q", js, want)
	}
	req := `<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"><Request><EMailAddress>jo@example.test</EMailAddress><AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema></Request></Autodiscover>`
	body = httpFetch(t, tlsClient, "POST", base+"/Autodiscover/Autodiscover.xml", req)
	var ad webconf.AutodiscoverResponse
	if err := xml.Unmarshal([]byte(body), &ad); err != nil {
		t.Fatalf("%v\n%s", err, body)
	}
	var protos []string
	for _, pr := range ad.Response.Account.Protocols {
		if pr.Server != "mx.example.test" || pr.LoginName != "jo@example.test" || pr.SSL != "on" || pr.Encryption != "SSL" || pr.AuthRequired != "on" {
			t.Errorf("protocol %+v", pr)
		}
		protos = append(protos, pr.Type+":"+strconv.Itoa(pr.Port))
	}
	wantProtos := "IMAP:" + strconv.Itoa(port("imaps")) + " POP3:" + strconv.Itoa(port("pop3s")) + " SMTP:" + strconv.Itoa(port("submissions"))
	if strings.Join(protos, " ") != wantProtos || ad.Response.Account.AccountType != "email" || ad.Response.Account.Action != "settings" {
		t.Errorf("autodiscover %+v, want %s", ad.Response.Account, wantProtos)
	}

	if sts := httpFetch(t, client, "GET", "http://"+in.ports["http"]+"/.well-known/mta-sts.txt", ""); sts != "version: STSv1\r\nmode: enforce\r\nmx: mx.example.test\r\nmax_age: 604800\r\n" {
		t.Errorf("mta-sts: %q", sts)
	}
	if err := in.stop(); err != nil {
		t.Errorf("stop: %v\n%s", err, in.log())
	}
}

func httpFetch(t *testing.T, c *http.Client, method, url, body string) string {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%s %s: %d %v\n%s", method, url, resp.StatusCode, err, b)
	}
	return string(b)
}
