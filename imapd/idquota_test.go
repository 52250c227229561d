package imapd

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// ID (RFC 2971): the server names itself and its version, before and after login, and logs what
// the client said.
func TestID(t *testing.T) {
	var logs bytes.Buffer
	ts := newTestServer(t, func(o *Options) {
		o.Version = "1.2.3"
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	c, err := imapclient.DialInsecure(ts.addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !c.Caps().Has(imap.CapID) {
		t.Errorf("ID not advertised before login: %v", c.Caps())
	}
	got, err := c.ID(&imap.IDData{Name: "Thunderbird", Version: "128.5"}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "Postie" || got.Version != "1.2.3" {
		t.Errorf("ID answered %+v", got)
	}
	if !strings.Contains(logs.String(), "client.name=Thunderbird") || !strings.Contains(logs.String(), "client.version=128.5") {
		t.Errorf("client's ID not logged: %s", logs.String())
	}

	// RFC 2971 §4's examples, raw; NIL; the limits of §3.3; after login as well.
	r := ts.raw(false)
	lines := r.cmd(`a023 ID ("name" "sodr" "version" "19.34" "vendor" "Pink Floyd Music Limited")`)
	if len(lines) != 2 || lines[0] != "* ID (\"name\" \"Postie\" \"version\" \"1.2.3\")\r\n" || !strings.HasPrefix(lines[1], "a023 OK") {
		t.Errorf("ID: %q", lines)
	}
	if l := r.cmd(`a1 ID NIL`); len(l) != 2 || !strings.HasPrefix(l[0], "* ID (") || !strings.HasPrefix(l[1], "a1 OK") {
		t.Errorf("ID NIL: %q", l)
	}
	if l := r.cmd(`a2 ID ("name" NIL)`); !strings.HasPrefix(last(l), "a2 OK") {
		t.Errorf("ID with a NIL value: %q", l)
	}
	if l := r.cmd(`a3 ID ("` + strings.Repeat("k", 31) + `" "v")`); !strings.HasPrefix(last(l), "a3 BAD") {
		t.Errorf("ID with a 31-octet field name: %q", l)
	}
	if l := r.cmd(`a4 ID ("name")`); !strings.HasPrefix(last(l), "a4 BAD") {
		t.Errorf("ID without a value: %q", l)
	}
	if l := r.cmd(`a5 ID`); !strings.HasPrefix(last(l), "a5 BAD") {
		t.Errorf("ID without an argument: %q", l)
	}
	r.cmd("a6 LOGIN " + testUser + " " + testPass)
	if l := r.cmd(`a7 ID NIL`); len(l) != 2 || !strings.Contains(l[0], `"Postie"`) {
		t.Errorf("ID after login: %q", l)
	}

	ts2 := newTestServer(t)
	if l := ts2.raw(false).cmd(`b ID NIL`); !strings.Contains(l[0], `"version" "dev"`) {
		t.Errorf("ID without a version: %q", l)
	}
}

// QUOTA (RFC 9208): the account's byte quota as the root "" over every folder, STORAGE in KiB.
func TestQuota(t *testing.T) {
	qa := &quotaAuth{quota: 10 * 1024}
	ts := newTestServer(t, func(o *Options) { qa.fakeAuth = o.Auth.(*fakeAuth); o.Auth = qa })
	msg := testMessage(1, "quota")
	ts.deliver(msg)
	c := ts.dial(nil)
	for _, cp := range []imap.Cap{imap.CapQuota, "QUOTA=RES-STORAGE"} {
		if !c.Caps().Has(cp) {
			t.Errorf("%s not advertised: %v", cp, c.Caps())
		}
	}
	if c.Caps().Has("QUOTA=RES-MESSAGE") || c.Caps().Has(imap.CapQuotaSet) {
		t.Errorf("MESSAGE or QUOTASET advertised: %v", c.Caps())
	}
	wantUsage := int64((len(msg) + 1023) / 1024)
	q, err := c.GetQuota("").Wait()
	if err != nil {
		t.Fatal(err)
	}
	if q.Root != "" || q.Resources[imap.QuotaResourceStorage].Usage != wantUsage || q.Resources[imap.QuotaResourceStorage].Limit != 10 {
		t.Errorf("GETQUOTA: %+v, want usage %d limit 10", q, wantUsage)
	}
	roots, err := c.GetQuotaRoot("Sent").Wait()
	if err != nil || len(roots) != 1 || roots[0].Resources[imap.QuotaResourceStorage].Limit != 10 {
		t.Errorf("GETQUOTAROOT Sent: %+v, %v", roots, err)
	}

	// Raw exchanges after RFC 9208 §4.2's examples.
	r := ts.raw(true)
	l := r.cmd(`G GETQUOTAROOT INBOX`)
	want := []string{"* QUOTAROOT INBOX \"\"\r\n", "* QUOTA \"\" (STORAGE 1 10)\r\n"}
	if len(l) != 3 || l[0] != want[0] || l[1] != want[1] || !strings.HasPrefix(l[2], "G OK") {
		t.Errorf("GETQUOTAROOT INBOX: %q, want %q and OK", l, want)
	}
	if l := r.cmd(`G GETQUOTA "nosuch"`); !strings.HasPrefix(last(l), "G NO [NONEXISTENT]") {
		t.Errorf("GETQUOTA of an unknown root: %q", l)
	}
	if l := r.cmd(`G GETQUOTAROOT nosuch`); !strings.HasPrefix(last(l), "G NO [NONEXISTENT]") {
		t.Errorf("GETQUOTAROOT of an unknown mailbox: %q", l)
	}
	if l := r.cmd(`S SETQUOTA "" (STORAGE 512)`); !strings.HasPrefix(last(l), "S NO [NOPERM]") || !strings.Contains(last(l), "postie") {
		t.Errorf("SETQUOTA: %q", l)
	}
	if l := r.cmd(`S SETQUOTA "" (STORAGE)`); !strings.HasPrefix(last(l), "S BAD") {
		t.Errorf("malformed SETQUOTA: %q", l)
	}
	if l := ts.raw(false).cmd(`G GETQUOTA ""`); !strings.HasPrefix(last(l), "G BAD") {
		t.Errorf("GETQUOTA before login: %q", l)
	}

	// Over the quota: APPEND and COPY answer NO [OVERQUOTA], and the usage shows it.
	big := strings.Repeat("x", 9*1024)
	if l := r.cmd("A APPEND INBOX {" + itoa(len(big)+4) + "+}\r\n\r\n\r\n" + big); !strings.HasPrefix(last(l), "A OK") {
		t.Fatalf("APPEND within quota: %q", l)
	}
	if l := r.cmd("A APPEND INBOX {" + itoa(len(big)+4) + "+}\r\n\r\n\r\n" + big); !strings.HasPrefix(last(l), "A NO [OVERQUOTA]") {
		t.Errorf("APPEND over quota: %q", l)
	}
	r.cmd("s SELECT INBOX")
	if l := r.cmd("C COPY 1:* Sent"); !strings.HasPrefix(last(l), "C NO [OVERQUOTA]") {
		t.Errorf("COPY over quota: %q", l)
	}
	if l := r.cmd(`G GETQUOTA ""`); len(l) != 2 || !strings.HasPrefix(l[0], "* QUOTA \"\" (STORAGE 10 10)") {
		t.Errorf("GETQUOTA when full: %q", l)
	}

	// Without a quota there is no root.
	ts2 := newTestServer(t)
	l = ts2.raw(true).cmd(`G GETQUOTAROOT INBOX`)
	if len(l) != 2 || l[0] != "* QUOTAROOT INBOX\r\n" {
		t.Errorf("GETQUOTAROOT without a quota: %q", l)
	}
}
