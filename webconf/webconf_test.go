package webconf

import (
	"encoding/json"
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"
)

func testServer(t *testing.T, mod func(*Options)) *httptest.Server {
	t.Helper()
	o := Options{
		Host: "mail.example.test", Domains: []string{"example.test", "other.test"},
		IMAP: Ports{TLS: 993, STARTTLS: 143}, POP3: Ports{TLS: 995, STARTTLS: 110},
		Submission: Ports{TLS: 465, STARTTLS: 587},
	}
	if mod != nil {
		mod(&o)
	}
	ts := httptest.NewServer(New(o))
	t.Cleanup(ts.Close)
	return ts
}

func do(t *testing.T, method, url, body string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "text/xml")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

func sc(typ string, port int, socket string) ServerConfig {
	return ServerConfig{Type: typ, Hostname: "mail.example.test", Port: port, SocketType: socket,
		Username: "%EMAILADDRESS%", Authentication: "password-cleartext"}
}

func TestAutoconfig(t *testing.T) {
	ts := testServer(t, nil)
	for _, path := range []string{
		"/.well-known/autoconfig/mail/config-v1.1.xml",
		"/mail/config-v1.1.xml",
		"/mail/config-v1.1.xml?emailaddress=someone%40Other.test",
		"/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=someone@example.test",
	} {
		code, h, body := do(t, "GET", ts.URL+path, "")
		if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "application/xml") {
			t.Fatalf("%s: %d %q %s", path, code, h.Get("Content-Type"), body)
		}
		var got ClientConfig
		if err := xml.Unmarshal([]byte(body), &got); err != nil {
			t.Fatalf("%s: %v\n%s", path, err, body)
		}
		id := "example.test"
		if strings.Contains(path, "Other") {
			id = "other.test"
		}
		want := ClientConfig{
			XMLName: xml.Name{Local: "clientConfig"}, Version: "1.1",
			Provider: EmailProvider{
				ID: id, Domains: []string{"example.test", "other.test"}, DisplayName: id, DisplayShortName: id,
				Incoming: []ServerConfig{sc("imap", 993, "SSL"), sc("imap", 143, "STARTTLS"), sc("pop3", 995, "SSL"), sc("pop3", 110, "STARTTLS")},
				Outgoing: []ServerConfig{sc("smtp", 465, "SSL"), sc("smtp", 587, "STARTTLS")},
			},
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %+v\nwant %+v", path, got, want)
		}
	}
}

func TestAutoconfigOmitsMissingListeners(t *testing.T) {
	ts := testServer(t, func(o *Options) { o.POP3 = Ports{}; o.IMAP.STARTTLS = 0; o.Submission.TLS = 0 })
	_, _, body := do(t, "GET", ts.URL+"/mail/config-v1.1.xml", "")
	var got ClientConfig
	if err := xml.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Provider.Incoming, []ServerConfig{sc("imap", 993, "SSL")}) ||
		!reflect.DeepEqual(got.Provider.Outgoing, []ServerConfig{sc("smtp", 587, "STARTTLS")}) {
		t.Errorf("got %+v", got.Provider)
	}
}

const poxRequest = `<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">
  <Request>
    <EMailAddress>User.Name@Example.test</EMailAddress>
    <AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema>
  </Request>
</Autodiscover>`

func TestAutodiscoverPOX(t *testing.T) {
	ts := testServer(t, nil)
	proto := func(typ string, port int, enc, login string) Protocol {
		return Protocol{Type: typ, Server: "mail.example.test", Port: port, LoginName: login,
			DomainRequired: "off", SPA: "off", SSL: "on", Encryption: enc, AuthRequired: "on"}
	}
	for _, c := range []struct{ method, path, body, login string }{
		{"POST", "/autodiscover/autodiscover.xml", poxRequest, "User.Name@example.test"},
		{"POST", "/Autodiscover/Autodiscover.xml", poxRequest, "User.Name@example.test"},
		{"POST", "/AUTODISCOVER/AUTODISCOVER.XML", poxRequest, "User.Name@example.test"},
		{"GET", "/autodiscover/autodiscover.xml", "", ""},
		{"GET", "/autodiscover/autodiscover.xml?Email=a@other.test", "", "a@other.test"},
	} {
		code, h, body := do(t, c.method, ts.URL+c.path, c.body)
		if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "application/xml") {
			t.Fatalf("%s %s: %d %s", c.method, c.path, code, body)
		}
		var got AutodiscoverResponse
		if err := xml.Unmarshal([]byte(body), &got); err != nil {
			t.Fatalf("%s %s: %v\n%s", c.method, c.path, err, body)
		}
		want := AutodiscoverResponse{
			XMLName: xml.Name{Space: NSAutodiscover, Local: "Autodiscover"}, Xmlns: NSAutodiscover,
			Response: OutlookResponse{XMLName: xml.Name{Space: NSOutlook, Local: "Response"}, Xmlns: NSOutlook, Account: Account{AccountType: "email", Action: "settings", Protocols: []Protocol{
				proto("IMAP", 993, "SSL", c.login), proto("POP3", 995, "SSL", c.login), proto("SMTP", 465, "SSL", c.login),
			}}},
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s %s:\n got %+v\nwant %+v", c.method, c.path, got, want)
		}
		// The namespaces as clients match them, literally, declared once.
		for _, s := range []string{`<Autodiscover xmlns="` + NSAutodiscover + `">`, `<Response xmlns="` + NSOutlook + `">`,
			"<Account>", "<Protocol>", "<Type>IMAP</Type>", "<Encryption>SSL</Encryption>"} {
			if !strings.Contains(body, s) {
				t.Errorf("%s %s: no %s in\n%s", c.method, c.path, s, body)
			}
		}
	}

	// Without implicit TLS, the STARTTLS port with Encryption TLS.
	ts2 := testServer(t, func(o *Options) { o.IMAP.TLS, o.POP3 = 0, Ports{} })
	_, _, body := do(t, "POST", ts2.URL+"/autodiscover/autodiscover.xml", poxRequest)
	var got AutodiscoverResponse
	if err := xml.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	l := "User.Name@example.test"
	if want := []Protocol{proto("IMAP", 143, "TLS", l), proto("SMTP", 465, "SSL", l)}; !reflect.DeepEqual(got.Response.Account.Protocols, want) {
		t.Errorf("got %+v", got.Response.Account.Protocols)
	}
}

func TestAutodiscoverBadRequests(t *testing.T) {
	ts := testServer(t, nil)
	for _, c := range []struct {
		method, body string
		want         int
	}{
		{"POST", "", 400},
		{"POST", "not xml at all", 400},
		{"POST", "<Autodiscover><Request><EMailAddress>", 400},
		{"POST", "<Other><Request><EMailAddress>a@example.test</EMailAddress></Request></Other>", 400},
		{"POST", strings.Replace(poxRequest, "User.Name@Example.test", "no-at-sign", 1), 400},
		{"POST", strings.Replace(poxRequest, "User.Name@Example.test", "someone@elsewhere.test", 1), 404},
		{"POST", "<Autodiscover>" + strings.Repeat("<x>", 30000) + strings.Repeat("</x>", 30000), 413},
		{"PUT", poxRequest, 405},
		{"POST", strings.Replace(poxRequest, "outlook/responseschema/2006a", "mobilesync/responseschema/2006", 1), 404},
	} {
		code, _, body := do(t, c.method, ts.URL+"/autodiscover/autodiscover.xml", c.body)
		if code != c.want {
			t.Errorf("%s %.40q: %d, want %d (%s)", c.method, c.body, code, c.want, body)
		}
	}
}

func TestAutodiscoverJSON(t *testing.T) {
	ts := testServer(t, nil)
	const ok = `{"Protocol":"AutodiscoverV1","Url":"https://mail.example.test/autodiscover/autodiscover.xml"}` + "\n"
	for _, c := range []struct {
		path string
		code int
		body string
	}{
		{"/autodiscover/autodiscover.json?Email=a%40example.test&Protocol=AutodiscoverV1", 200, ok},
		{"/autodiscover/autodiscover.json?Email=a%40example.test&Protocol=autodiscoverv1", 200, ok},
		{"/Autodiscover/Autodiscover.json/v1.0/a@example.test?Protocol=AutodiscoverV1", 200, ok},
		{"/autodiscover/autodiscover.json/v1.0/a@other.test", 200, ok},
		{"/autodiscover/autodiscover.json/v1.0/a@example.test?Protocol=Ews", 404,
			`{"ErrorCode":"InvalidProtocol","ErrorMessage":"The given protocol value 'Ews' is invalid. Supported values are 'AutodiscoverV1'"}` + "\n"},
		{"/autodiscover/autodiscover.json/v1.0/a@elsewhere.test", 404, "no such domain here\n"},
		{"/autodiscover/autodiscover.json/v2.0/a@example.test", 404, "404 page not found\n"},
	} {
		code, h, body := do(t, "GET", ts.URL+c.path, "")
		if code != c.code || body != c.body {
			t.Errorf("%s: %d %q, want %d %q", c.path, code, body, c.code, c.body)
		}
		if code == 200 {
			var got AutodiscoverJSON
			if err := json.Unmarshal([]byte(body), &got); err != nil || !strings.HasPrefix(h.Get("Content-Type"), "application/json") {
				t.Errorf("%s: %v %q", c.path, err, h.Get("Content-Type"))
			}
		}
	}
}

func TestMobileconfig(t *testing.T) {
	ts := testServer(t, nil)
	code, h, body := do(t, "GET", ts.URL+"/apple/mobileconfig?email=Jo%40Example.test", "")
	if code != 200 || h.Get("Content-Type") != "application/x-apple-aspen-config" {
		t.Fatalf("%d %q %s", code, h.Get("Content-Type"), body)
	}
	top, err := decodePlist(body)
	if err != nil {
		t.Fatalf("%v\n%s", err, body)
	}
	content, _ := top["PayloadContent"].([]any)
	if len(content) != 1 {
		t.Fatalf("PayloadContent %#v", top["PayloadContent"])
	}
	acct := content[0].(map[string]any)
	for k, v := range map[string]any{
		"EmailAccountType": "EmailTypeIMAP", "EmailAddress": "Jo@example.test", "PayloadType": "com.apple.mail.managed",
		"IncomingMailServerHostName": "mail.example.test", "IncomingMailServerPortNumber": 993, "IncomingMailServerUseSSL": true,
		"IncomingMailServerUsername": "Jo@example.test", "IncomingMailServerAuthentication": "EmailAuthPassword",
		"OutgoingMailServerHostName": "mail.example.test", "OutgoingMailServerPortNumber": 465, "OutgoingMailServerUseSSL": true,
		"OutgoingMailServerUsername": "Jo@example.test", "OutgoingMailServerAuthentication": "EmailAuthPassword",
		"OutgoingPasswordSameAsIncomingPassword": true, "PayloadVersion": 1,
	} {
		if acct[k] != v {
			t.Errorf("account %s = %#v, want %#v", k, acct[k], v)
		}
	}
	for k, v := range map[string]any{"PayloadType": "Configuration", "PayloadVersion": 1, "PayloadRemovalDisallowed": false} {
		if top[k] != v {
			t.Errorf("profile %s = %#v, want %#v", k, top[k], v)
		}
	}
	// Stable per address, distinct between addresses.
	_, _, again := do(t, "GET", ts.URL+"/apple/mobileconfig?email=Jo%40Example.test", "")
	_, _, other := do(t, "GET", ts.URL+"/apple/mobileconfig?email=Al%40example.test", "")
	o, err := decodePlist(other)
	if err != nil {
		t.Fatal(err)
	}
	if again != body || o["PayloadUUID"] == top["PayloadUUID"] || o["PayloadIdentifier"] == top["PayloadIdentifier"] ||
		len(top["PayloadUUID"].(string)) != 36 || acct["PayloadUUID"] == top["PayloadUUID"] {
		t.Errorf("identifiers: %v %v / %v %v", top["PayloadUUID"], top["PayloadIdentifier"], o["PayloadUUID"], o["PayloadIdentifier"])
	}

	for q, want := range map[string]int{"": 400, "?email=": 400, "?email=nobody": 400, "?email=a%40elsewhere.test": 404, "?email=%3Cx%3E%40example.test": 400} {
		if code, _, body := do(t, "GET", ts.URL+"/apple/mobileconfig"+q, ""); code != want {
			t.Errorf("%q: %d, want %d (%s)", q, code, want, body)
		}
	}
}

// decodePlist reads the subset of the XML property list that profiles
// use: dict, array, string, integer, true, false.
func decodePlist(s string) (map[string]any, error) {
	d := xml.NewDecoder(strings.NewReader(s))
	d.Strict = true
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, err
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "dict" {
			v, err := plistValue(d, se)
			if err != nil {
				return nil, err
			}
			return v.(map[string]any), nil
		}
	}
}

func plistValue(d *xml.Decoder, se xml.StartElement) (any, error) {
	switch se.Name.Local {
	case "dict":
		m := map[string]any{}
		key := ""
		for {
			tok, err := d.Token()
			if err != nil {
				return nil, err
			}
			switch t := tok.(type) {
			case xml.EndElement:
				return m, nil
			case xml.StartElement:
				if t.Name.Local == "key" {
					if err := d.DecodeElement(&key, &t); err != nil {
						return nil, err
					}
					continue
				}
				v, err := plistValue(d, t)
				if err != nil {
					return nil, err
				}
				m[key] = v
			}
		}
	case "array":
		var a []any
		for {
			tok, err := d.Token()
			if err != nil {
				return nil, err
			}
			switch t := tok.(type) {
			case xml.EndElement:
				return a, nil
			case xml.StartElement:
				v, err := plistValue(d, t)
				if err != nil {
					return nil, err
				}
				a = append(a, v)
			}
		}
	case "true", "false":
		return se.Name.Local == "true", d.Skip()
	case "integer":
		var n int
		return n, d.DecodeElement(&n, &se)
	default:
		var s string
		return s, d.DecodeElement(&s, &se)
	}
}

func TestMTASTS(t *testing.T) {
	ts := testServer(t, func(o *Options) { o.MX = "mx.example.test" })
	code, h, body := do(t, "GET", ts.URL+"/.well-known/mta-sts.txt", "")
	if want := "version: STSv1\r\nmode: testing\r\nmx: mx.example.test\r\nmax_age: 604800\r\n"; code != 200 || body != want ||
		!strings.HasPrefix(h.Get("Content-Type"), "text/plain") {
		t.Errorf("%d %q %q", code, h.Get("Content-Type"), body)
	}
	ts2 := testServer(t, func(o *Options) { o.MTASTSMode = "enforce"; o.MTASTSMaxAge = 24 * time.Hour })
	if _, _, body := do(t, "GET", ts2.URL+"/.well-known/mta-sts.txt", ""); body != "version: STSv1\r\nmode: enforce\r\nmx: mail.example.test\r\nmax_age: 86400\r\n" {
		t.Errorf("%q", body)
	}
}

func TestUnknownAndMethods(t *testing.T) {
	ts := testServer(t, nil)
	for _, c := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/", 404},
		{"GET", "/.well-known/autoconfig/mail/config-v1.0.xml", 404},
		{"GET", "/MAIL/CONFIG-V1.1.XML", 404},
		{"GET", "/autodiscover/autodiscover.xml/extra", 404},
		{"POST", "/.well-known/mta-sts.txt", 405},
		{"DELETE", "/mail/config-v1.1.xml", 405},
		{"OPTIONS", "/autodiscover/autodiscover.xml", 405},
		{"HEAD", "/autodiscover/autodiscover.xml", 200},
		{"HEAD", "/mail/config-v1.1.xml", 200},
		{"HEAD", "/nothing", 404},
		{"GET", "/../../etc/passwd", 404},
		{"GET", "/autodiscover/autodİscover.json/v1.0/a@example.test", 404}, // folding changes the length
	} {
		code, h, body := do(t, c.method, ts.URL+c.path, "")
		if code != c.want {
			t.Errorf("%s %s: %d, want %d (%s)", c.method, c.path, code, c.want, body)
		}
		// A 405 names the methods that are allowed (RFC 9110 15.5.6).
		if allow := h.Get("Allow"); code == 405 && !strings.Contains(allow, "GET") {
			t.Errorf("%s %s: 405 with Allow %q", c.method, c.path, allow)
		}
	}
}

func TestACMEChallenge(t *testing.T) {
	ts := testServer(t, nil)
	if code, _, _ := do(t, "GET", ts.URL+"/.well-known/acme-challenge/tok", ""); code != 404 {
		t.Errorf("without a handler: %d, want 404", code)
	}
	ts = testServer(t, func(o *Options) {
		o.ACMEChallenge = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "key-auth "+r.URL.Path) })
	})
	if code, _, body := do(t, "GET", ts.URL+"/.well-known/acme-challenge/tok", ""); code != 200 || body != "key-auth /.well-known/acme-challenge/tok" {
		t.Errorf("with a handler: %d %q", code, body)
	}
}

// TestAutoconfigByHost: without ?emailaddress= the domain is the one the
// Host name is under (autoconfig.<domain>, or the domain itself for the
// .well-known form), else the first.
func TestAutoconfigByHost(t *testing.T) {
	ts := testServer(t, nil)
	for host, want := range map[string]string{
		"autoconfig.other.test":        "other.test",
		"Other.TEST.:8080":             "other.test",
		"autoconfig.example.test":      "example.test",
		"mail.example.test":            "example.test",
		"autoconfig.elsewhere.test":    "example.test",
		"127.0.0.1:80":                 "example.test",
		"a.b.autoconfig.other.test:80": "other.test",
	} {
		req, err := http.NewRequest("GET", ts.URL+"/.well-known/autoconfig/mail/config-v1.1.xml", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var got ClientConfig
		err = xml.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		if err != nil || got.Provider.ID != want {
			t.Errorf("Host %q: provider %q (%v), want %q", host, got.Provider.ID, err, want)
		}
	}
}

// TestServerLimits: the server reached from the Internet has every
// timeout and a header limit (a slow or idle client cannot hold a
// connection for ever).
func TestServerLimits(t *testing.T) {
	h := New(Options{Host: "mail.example.test", Domains: []string{"example.test"}}).http
	if h.ReadHeaderTimeout <= 0 || h.ReadTimeout <= 0 || h.WriteTimeout <= 0 || h.IdleTimeout <= 0 ||
		h.MaxHeaderBytes <= 0 || h.MaxHeaderBytes > 64<<10 {
		t.Errorf("ReadHeaderTimeout %v ReadTimeout %v WriteTimeout %v IdleTimeout %v MaxHeaderBytes %d",
			h.ReadHeaderTimeout, h.ReadTimeout, h.WriteTimeout, h.IdleTimeout, h.MaxHeaderBytes)
	}
}
