package inbound

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"unicode/utf8"
)

// The seed corpora are in testdata/fuzz/<FuzzName>.

// FuzzStripForged: the output is the input less whole fields, exactly
// those speaking in our name (Authentication-Results claiming our id, our
// verdict fields), and stripping again changes nothing.
func FuzzStripForged(f *testing.F) {
	f.Add([]byte("Authentication-Results: mx.ours.test; none\r\nA: b\r\n\r\nbody"), "mx.ours.test")
	f.Add([]byte("X-Spam-Flag: NO\r\nx-spamd-result: default\r\n\tHAM\r\nX-Spam-Status: No\r\n\r\nbody"), "mx.ours.test")
	f.Fuzz(func(t *testing.T, hdr []byte, id string) {
		orig := bytes.Clone(hdr)
		out := StripForged(hdr, id)
		if !bytes.Equal(hdr, orig) {
			t.Fatal("input modified")
		}
		in := splitFields(hdr)
		kept := splitFields(out)
		j := 0
		for _, f := range in {
			ours := isOurAuthResults(f, id) || isVerdictField(f)
			if j < len(kept) && bytes.Equal(f.raw, kept[j].raw) && !ours {
				j++
				continue
			}
			if !ours {
				t.Fatalf("field %q lost", f.raw)
			}
		}
		if j != len(kept) {
			t.Fatalf("fields added or reordered: %q → %q", hdr, out)
		}
		if !bytes.HasSuffix(out, hdr[fieldsLen(in):]) {
			t.Fatal("text after the header changed")
		}
		if again := StripForged(out, id); !bytes.Equal(again, out) {
			t.Fatalf("not idempotent: %q → %q", out, again)
		}
	})
}

func FuzzAuthservID(f *testing.F) {
	f.Add(" (c) mx.ours.test; spf=pass")
	f.Fuzz(func(t *testing.T, v string) {
		id := authservIDOf(v)
		if !strings.Contains(v, `"`) && !strings.Contains(v, id) {
			t.Fatalf("id %q not in %q", id, v)
		}
		if strings.ContainsAny(id, ";") && !strings.Contains(v, `"`) {
			t.Fatalf("id %q runs past the ';'", id)
		}
	})
}

func FuzzFromDomains(f *testing.F) {
	f.Add("Ann <ann@example.test>, b@x.test")
	f.Fuzz(func(t *testing.T, from string) {
		fi := fromDomains(splitFields([]byte("From: " + from + "\r\n\r\n")))
		if len(fi.domains) > maxFromDomains {
			t.Fatalf("%d domains", len(fi.domains))
		}
		if (fi.domain == "") == (fi.problem == "") {
			t.Fatalf("domain %q with problem %q", fi.domain, fi.problem)
		}
		for _, d := range fi.domains {
			if d == "" || strings.ContainsAny(d, " \r\n;@[") || d != strings.ToLower(d) {
				t.Fatalf("bad domain %q", d)
			}
		}
	})
}

func FuzzDKIMTags(f *testing.F) {
	f.Add("v=1; a=rsa-sha256; d=x.test; s=s; b=ab\r\n cd")
	f.Fuzz(func(t *testing.T, v string) {
		for k, val := range dkimTags(v) {
			if k == "" || strings.ContainsAny(val, " \t\r\n") || strings.Contains(k, ";") {
				t.Fatalf("tag %q=%q", k, val)
			}
		}
	})
}

// FuzzCheck: whatever the message, Check does not panic and the header
// it writes is exactly one field of four lines.
func FuzzCheck(f *testing.F) {
	f.Add([]byte("From: a@b.test\r\nDKIM-Signature: v=1; d=b.test; s=x; b=abc\r\n\r\nbody"), "x@y.test", "h.test")
	f.Fuzz(func(t *testing.T, msg []byte, mailFrom, helo string) {
		c := New(noDNS{}, Options{Hostname: ourHost, Domains: []string{"b.test"}, Logger: quiet})
		v := c.Check(context.Background(), Input{IP: clientIP, Helo: helo, MailFrom: mailFrom}, bytes.NewReader(msg), int64(len(msg)))
		lines := strings.Split(v.AuthResults, "\r\n\t")
		if len(lines) < 4 || strings.ContainsAny(v.AuthResults, "\x00") {
			t.Fatalf("Authentication-Results: %q", v.AuthResults)
		}
		for _, l := range lines {
			if strings.ContainsAny(l, "\r\n") {
				t.Fatalf("line break inside %q", l)
			}
		}
		if utf8.ValidString(mailFrom+helo) && !utf8.ValidString(v.AuthResults) && utf8.Valid(msg) {
			t.Fatalf("invalid UTF-8 out of valid input: %q", v.AuthResults)
		}
		if (v.Action == Reject || v.Action == Defer) != (v.Reply != nil) {
			t.Fatalf("action %s with reply %v", v.Action, v.Reply)
		}
	})
}

// noDNS answers every question with "not found", at once.
type noDNS struct{}

func nf(name string) error { return &net.DNSError{Err: "no such host", Name: name, IsNotFound: true} }

func (noDNS) LookupTXT(_ context.Context, n string) ([]string, error)        { return nil, nf(n) }
func (noDNS) LookupMX(_ context.Context, n string) ([]*net.MX, error)        { return nil, nf(n) }
func (noDNS) LookupIPAddr(_ context.Context, n string) ([]net.IPAddr, error) { return nil, nf(n) }
func (noDNS) LookupAddr(_ context.Context, n string) ([]string, error)       { return nil, nf(n) }
func (noDNS) LookupNetIP(_ context.Context, _, n string) ([]netip.Addr, error) {
	return nil, nf(n)
}
