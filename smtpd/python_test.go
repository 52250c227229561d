package smtpd

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// pythonClient drives both roles with Python's smtplib: a second,
// independent client implementation (STARTTLS, AUTH LOGIN with an initial
// response, as Outlook does, and sendmail on the MX).
const pythonClient = `
import smtplib, ssl, sys
sub, mx = int(sys.argv[1]), int(sys.argv[2])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
msg = "From: ann@example.test\r\nTo: friend@elsewhere.example\r\nSubject: from python\r\n\r\nHi there.\r\n"

with smtplib.SMTP("127.0.0.1", sub, timeout=10) as s:
    s.ehlo("py.example.net")
    if s.has_extn("auth"):
        print("auth-before-tls")
    code, _ = s.mail("ann@example.test")
    print("mail-before-auth", code)
    s.rset()
    s.starttls(context=ctx)
    s.ehlo("py.example.net")
    s.user, s.password = "ann@example.test", "secret"
    code, _ = s.auth("LOGIN", s.auth_login)
    print("auth", code)
    s.sendmail("ann@example.test", ["friend@elsewhere.example"], msg)
    print("sub-sent")
    try:
        s.sendmail("bob@example.test", ["friend@elsewhere.example"], msg)
    except smtplib.SMTPSenderRefused as e:
        print("sender-refused", e.smtp_code)

with smtplib.SMTP("127.0.0.1", mx, timeout=10) as s:
    s.sendmail("someone@remote.example", ["ann@example.test"], "Subject: mx\r\n\r\nhello\r\n")
    print("mx-sent")
    try:
        s.sendmail("someone@remote.example", ["victim@elsewhere.example"], "Subject: relay\r\n\r\nx\r\n")
    except smtplib.SMTPRecipientsRefused as e:
        print("relay-refused", list(e.recipients.values())[0][0])
`

func TestPythonSMTPLib(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	sub := start(t, RoleSubmission, nil)
	subAddr := sub.serveAs(t, "192.0.2.9") // a remote client: STARTTLS first
	mx := start(t, RoleMX, nil)
	script := filepath.Join(t.TempDir(), "client.py")
	if err := os.WriteFile(script, []byte(pythonClient), 0o600); err != nil {
		t.Fatal(err)
	}
	_, subPort, _ := net.SplitHostPort(subAddr)
	_, mxPort, _ := net.SplitHostPort(mx.addr)
	out, err := exec.Command(py, script, subPort, mxPort).CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	want := "mail-before-auth 530\nauth 235\nsub-sent\nsender-refused 553\nmx-sent\nrelay-refused 554\n"
	if string(out) != want {
		t.Fatalf("python said:\n%s\nwant:\n%s", out, want)
	}
	d := sub.deliv.last(t)
	if d.env.Protocol != "ESMTPSA" || d.env.Helo != "py.example.net" || !strings.Contains(string(d.body), "\r\nMessage-ID: <") && !strings.HasPrefix(string(d.body), "Message-ID: <") {
		t.Errorf("submitted: %+v\n%s", d.env, d.body)
	}
	if m := mx.deliv.last(t); strings.Join(m.env.To, ",") != "ann@example.test" || !strings.Contains(string(m.body), "hello") {
		t.Errorf("MX delivery %+v", m)
	}
}
