package webconf

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The documents exactly as the clients read them. The other tests decode
// the answers into this package's own structs, so a misspelt element name
// (socketType, LoginName, ...) would pass them: these compare the bytes.
// Checked against what the clients parse: Thunderbird's readFromXML
// (clientConfig v1.1: emailProvider id, domain, incomingServer and
// outgoingServer type, hostname, port, socketType SSL or STARTTLS,
// username, authentication password-cleartext), Outlook's POX response
// (the 2006 and 2006a namespaces, Account, AccountType email, Action
// settings, Protocol with Type, Server, Port, LoginName, SPA, SSL,
// Encryption SSL for implicit TLS and TLS for STARTTLS, AuthRequired; the
// same fields Thunderbird's own autodiscover reader takes), and Apple's
// com.apple.mail.managed payload keys.

const goldenAutoconfig = `<?xml version="1.0" encoding="UTF-8"?>
<clientConfig version="1.1">
  <emailProvider id="other.test">
    <domain>example.test</domain>
    <domain>other.test</domain>
    <displayName>other.test</displayName>
    <displayShortName>other.test</displayShortName>
    <incomingServer type="imap">
      <hostname>mail.example.test</hostname>
      <port>993</port>
      <socketType>SSL</socketType>
      <username>%EMAILADDRESS%</username>
      <authentication>password-cleartext</authentication>
    </incomingServer>
    <incomingServer type="imap">
      <hostname>mail.example.test</hostname>
      <port>143</port>
      <socketType>STARTTLS</socketType>
      <username>%EMAILADDRESS%</username>
      <authentication>password-cleartext</authentication>
    </incomingServer>
    <incomingServer type="pop3">
      <hostname>mail.example.test</hostname>
      <port>995</port>
      <socketType>SSL</socketType>
      <username>%EMAILADDRESS%</username>
      <authentication>password-cleartext</authentication>
    </incomingServer>
    <outgoingServer type="smtp">
      <hostname>mail.example.test</hostname>
      <port>587</port>
      <socketType>STARTTLS</socketType>
      <username>%EMAILADDRESS%</username>
      <authentication>password-cleartext</authentication>
    </outgoingServer>
  </emailProvider>
</clientConfig>
`

const goldenAutodiscover = `<?xml version="1.0" encoding="UTF-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006">
  <Response xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a">
    <Account>
      <AccountType>email</AccountType>
      <Action>settings</Action>
      <Protocol>
        <Type>IMAP</Type>
        <Server>mail.example.test</Server>
        <Port>993</Port>
        <LoginName>User.Name@example.test</LoginName>
        <DomainRequired>off</DomainRequired>
        <SPA>off</SPA>
        <SSL>on</SSL>
        <Encryption>SSL</Encryption>
        <AuthRequired>on</AuthRequired>
      </Protocol>
      <Protocol>
        <Type>POP3</Type>
        <Server>mail.example.test</Server>
        <Port>995</Port>
        <LoginName>User.Name@example.test</LoginName>
        <DomainRequired>off</DomainRequired>
        <SPA>off</SPA>
        <SSL>on</SSL>
        <Encryption>SSL</Encryption>
        <AuthRequired>on</AuthRequired>
      </Protocol>
      <Protocol>
        <Type>SMTP</Type>
        <Server>mail.example.test</Server>
        <Port>587</Port>
        <LoginName>User.Name@example.test</LoginName>
        <DomainRequired>off</DomainRequired>
        <SPA>off</SPA>
        <SSL>on</SSL>
        <Encryption>TLS</Encryption>
        <AuthRequired>on</AuthRequired>
      </Protocol>
    </Account>
  </Response>
</Autodiscover>
`

const goldenMobileconfig = `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
<key>PayloadContent</key>
<array>
<dict>
<key>EmailAccountDescription</key>
<string>jo@example.test</string>
<key>EmailAccountName</key>
<string>jo@example.test</string>
<key>EmailAccountType</key>
<string>EmailTypeIMAP</string>
<key>EmailAddress</key>
<string>jo@example.test</string>
<key>IncomingMailServerAuthentication</key>
<string>EmailAuthPassword</string>
<key>IncomingMailServerHostName</key>
<string>mail.example.test</string>
<key>IncomingMailServerPortNumber</key>
<integer>993</integer>
<key>IncomingMailServerUseSSL</key>
<true/>
<key>IncomingMailServerUsername</key>
<string>jo@example.test</string>
<key>OutgoingMailServerAuthentication</key>
<string>EmailAuthPassword</string>
<key>OutgoingMailServerHostName</key>
<string>mail.example.test</string>
<key>OutgoingMailServerPortNumber</key>
<integer>587</integer>
<key>OutgoingMailServerUseSSL</key>
<true/>
<key>OutgoingMailServerUsername</key>
<string>jo@example.test</string>
<key>OutgoingPasswordSameAsIncomingPassword</key>
<true/>
<key>PayloadDescription</key>
<string>Mail account jo@example.test</string>
<key>PayloadDisplayName</key>
<string>jo@example.test</string>
<key>PayloadIdentifier</key>
<string>test.example.mail.postie.mail.006c327f8a2c7a47.account</string>
<key>PayloadType</key>
<string>com.apple.mail.managed</string>
<key>PayloadUUID</key>
<string>82B07A92-0E22-8798-842C-29A91F684FD9</string>
<key>PayloadVersion</key>
<integer>1</integer>
</dict>
</array>
<key>PayloadDescription</key>
<string>Mail settings for jo@example.test at mail.example.test</string>
<key>PayloadDisplayName</key>
<string>Mail: jo@example.test</string>
<key>PayloadIdentifier</key>
<string>test.example.mail.postie.mail.006c327f8a2c7a47</string>
<key>PayloadRemovalDisallowed</key>
<false/>
<key>PayloadType</key>
<string>Configuration</string>
<key>PayloadUUID</key>
<string>006C327F-8A2C-8A47-B184-24C1AE111F58</string>
<key>PayloadVersion</key>
<integer>1</integer>
</dict>
</plist>
`

func TestGoldenDocuments(t *testing.T) {
	ts := testServer(t, func(o *Options) { o.POP3.STARTTLS = 0; o.Submission.TLS = 0 })
	for _, c := range []struct{ method, path, body, want string }{
		{"GET", "/mail/config-v1.1.xml?emailaddress=jo%40other.test", "", goldenAutoconfig},
		{"POST", "/autodiscover/autodiscover.xml", poxRequest, goldenAutodiscover},
		{"GET", "/apple/mobileconfig?email=jo%40example.test", "", goldenMobileconfig},
	} {
		code, _, got := do(t, c.method, ts.URL+c.path, c.body)
		if code != 200 || got != c.want {
			t.Errorf("%s %s: %d\n%s", c.method, c.path, code, lineDiff(got, c.want))
		}
	}
	// Apple wants PayloadUUID in the 8-4-4-4-12 upper-case hex form: in
	// the golden document and in the profile of any other address.
	uuidRE := regexp.MustCompile(`<key>PayloadUUID</key>\n<string>[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}</string>`)
	for _, addr := range []string{"", "Some.One%2Btag%40other.test", "x%40example.test"} {
		doc := goldenMobileconfig
		if addr != "" {
			var code int
			code, _, doc = do(t, "GET", ts.URL+"/apple/mobileconfig?email="+addr, "")
			if code != 200 {
				t.Errorf("mobileconfig for %s: %d", addr, code)
			}
		}
		if n := len(uuidRE.FindAllString(doc, -1)); n != 2 {
			t.Errorf("mobileconfig %q: %d well-formed PayloadUUIDs, want 2", addr, n)
		}
	}
}

// lineDiff names the first line where got and want differ.
func lineDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := range max(len(g), len(w)) {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return "line " + strconv.Itoa(i+1) + ":\n got " + gl + "\nwant " + wl
		}
	}
	return "(same lines)"
}
