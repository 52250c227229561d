package smtpd

import (
	"io"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"postie/envelope"
)

// The DSN parameters (RFC 3461) are taken on both roles, decoded, and
// reach the delivery with the envelope, each recipient's with it.
func TestDSNParamsCarried(t *testing.T) {
	for _, role := range []Role{RoleMX, RoleSubmission} {
		t.Run(role.String(), func(t *testing.T) {
			f := start(t, role, nil)
			r := dialRaw(t, f.addr)
			ehlo := r.cmd(250, "EHLO client.example.net")
			if !strings.Contains(ehlo, "\nDSN") {
				t.Fatalf("EHLO does not advertise DSN:\n%s", ehlo)
			}
			if strings.Contains(ehlo, "REQUIRETLS") {
				t.Fatalf("EHLO advertises REQUIRETLS without TLS:\n%s", ehlo)
			}
			from := "someone@example.net"
			if role == RoleSubmission {
				r.cmd(235, "AUTH PLAIN AGFubkBleGFtcGxlLnRlc3QAc2VjcmV0") // ann@example.test / secret
				from = "ann@example.test"
			}
			r.cmd(250, "MAIL FROM:<%s> RET=HDRS ENVID=QQ+2Bid-7", from)
			r.cmd(250, "RCPT TO:<bob@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Bob+2Bx@example.org")
			r.cmd(250, "RCPT TO:<carol@example.test>")
			r.cmd(250, "RCPT TO:<dave@example.test> NOTIFY=never")
			r.cmd(354, "DATA")
			r.cmd(250, "%s.", simpleMsg)
			got := f.deliv.last(t).env
			if want := (envelope.Params{Ret: "HDRS", EnvID: "QQ+id-7"}); got.Params != want {
				t.Errorf("Params = %+v, want %+v", got.Params, want)
			}
			want := []envelope.RcptParams{
				{Notify: envelope.NotifySuccess | envelope.NotifyFailure, ORcptType: "rfc822", ORcpt: "Bob+x@example.org"},
				{},
				{Notify: envelope.NotifyNever},
			}
			if len(got.RcptParams) != len(want) {
				t.Fatalf("RcptParams = %+v, want %+v", got.RcptParams, want)
			}
			for i := range want {
				if got.RcptParams[i] != want[i] {
					t.Errorf("RcptParams[%d] (%s) = %+v, want %+v", i, got.To[i], got.RcptParams[i], want[i])
				}
			}
			// The next transaction starts without them.
			r.cmd(250, "MAIL FROM:<%s>", from)
			r.cmd(250, "RCPT TO:<bob@example.test>")
			r.cmd(354, "DATA")
			r.cmd(250, "%s.", simpleMsg)
			if got := f.deliv.last(t).env; got.Params != (envelope.Params{}) || got.RcptParam(0) != (envelope.RcptParams{}) {
				t.Errorf("second transaction kept parameters: %+v %+v", got.Params, got.RcptParams)
			}
		})
	}
}

func TestDSNParamsRefused(t *testing.T) {
	f := start(t, RoleMX, nil)
	r := dialRaw(t, f.addr)
	r.cmd(250, "EHLO client.example.net")
	r.cmd(501, "MAIL FROM:<a@example.net> ENVID=%s", strings.Repeat("x", 101))
	r.cmd(501, "MAIL FROM:<a@example.net> RET=BODY")
	r.cmd(250, "MAIL FROM:<a@example.net>")
	r.cmd(501, "RCPT TO:<bob@example.test> NOTIFY=NEVER,SUCCESS")
	r.cmd(501, "RCPT TO:<bob@example.test> ORCPT=rfc822;a+0Db@example.org")
	r.cmd(501, "RCPT TO:<bob@example.test> ORCPT=x400;whatever")
	r.cmd(501, "RCPT TO:<bob@example.test> ORCPT=utf-8;b\xffob@example.org")                               // not UTF-8
	r.cmd(501, "RCPT TO:<bob@example.test> ORCPT=rfc822;%s@example.org", strings.Repeat("b", maxORcptLen)) // our bound
	r.cmd(250, "RCPT TO:<bob@example.test> ORCPT=utf-8;b\u00f6b@example.org")
}

// REQUIRETLS (RFC 8689) is advertised and taken only on a TLS session.
func TestRequireTLS(t *testing.T) {
	f := start(t, RoleMX, nil)
	r := dialRaw(t, f.addr)
	r.cmd(250, "EHLO client.example.net")
	r.cmd(530, "MAIL FROM:<a@example.net> REQUIRETLS")

	c := dialStartTLS(t, f.addr)
	if ok, _ := c.Extension("REQUIRETLS"); !ok {
		t.Fatal("REQUIRETLS not advertised after STARTTLS")
	}
	wantCode(t, "MAIL REQUIRETLS", c.Mail("a@example.net", &smtp.MailOptions{RequireTLS: true}), 0, "")
	wantCode(t, "RCPT", c.Rcpt("bob@example.test", nil), 0, "")
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, simpleMsg)
	_, err = w.CloseWithResponse()
	wantCode(t, "DATA", err, 0, "")
	if got := f.deliv.last(t).env; !got.Params.RequireTLS {
		t.Errorf("Params.RequireTLS not set: %+v", got.Params)
	}
}
