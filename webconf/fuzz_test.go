package webconf

import (
	"encoding/xml"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzRequest sends whatever a client may send (a method, a path with its
// query, a Host header, a body) to the handler: it never panics, answers a status it
// means (200, 400, 404, 405, 413), and every 200 has a body.
func FuzzRequest(f *testing.F) {
	f.Add("POST", "/autodiscover/autodiscover.xml", "", poxRequest)
	f.Add("GET", "/AutoDiscover/AutoDiscover.XML", "", "")
	f.Add("POST", "/autodiscover/autodiscover.xml", "", "<Autodiscover><Request><EMailAddress>a@&#0;</EMailAddress></Request></Autodiscover>")
	f.Add("GET", "/autodiscover/autodiscover.json/v1.0/a%40example.test?Protocol=AutodiscoverV1", "", "")
	f.Add("GET", "/autodiscover/autodiscover.json?Email=%00@example.test&Protocol=ActiveSync", "", "")
	f.Add("GET", "/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=%ff%fe@example.test", "", "")
	f.Add("GET", "/mail/config-v1.1.xml", "", "")
	f.Add("GET", "/apple/mobileconfig?email=<x>@example.test", "", "")
	f.Add("GET", "/.well-known/mta-sts.txt", "", "")
	f.Add("DELETE", "/../../etc/passwd", "", "")
	f.Add("GET", "/mail/config-v1.1.xml", "autoconfig.EXAMPLE.test.:8080", "")
	f.Add("GET", "/.well-known/autoconfig/mail/config-v1.1.xml", "[::1]:80", "")
	f.Add("GET", "/autodiscover/autodiscover.xml", ".", "")
	o := Options{
		Host: "mail.example.test", Domains: []string{"example.test", "other.test"},
		IMAP: Ports{TLS: 993, STARTTLS: 143}, POP3: Ports{TLS: 995},
		Submission: Ports{TLS: 465, STARTTLS: 587},
	}
	h := New(o)
	f.Fuzz(func(t *testing.T, method, target, host, body string) {
		if !validMethod(method) {
			return
		}
		u, err := url.ParseRequestURI(target)
		if err != nil {
			return
		}
		req := httptest.NewRequest(http.MethodGet, "/", strings.NewReader(body))
		req.Method, req.URL, req.RequestURI, req.Host = method, u, target, host
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case 200:
			if rec.Body.Len() == 0 && method != http.MethodHead {
				t.Fatalf("%s %s: 200 with no body", method, target)
			}
			var cc ClientConfig
			if strings.HasSuffix(u.Path, "config-v1.1.xml") && method != http.MethodHead {
				if err := xml.Unmarshal(rec.Body.Bytes(), &cc); err != nil || !h.ours(cc.Provider.ID) {
					t.Fatalf("%s %s Host %q: provider %q (%v)", method, target, host, cc.Provider.ID, err)
				}
			}
		case 400, 404, 405, 413:
		default:
			t.Fatalf("%s %s: status %d", method, target, rec.Code)
		}
	})
}

// validMethod is what net/http lets through as a method: a token.
func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for _, c := range m {
		if c <= ' ' || c >= 0x7f || strings.ContainsRune("()<>@,;:\\\"/[]?={}", c) {
			return false
		}
	}
	return true
}
