package inbound

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestStripForged(t *testing.T) {
	in := "Received: from a\r\n" +
		"Authentication-Results: MX.OURS.TEST; spf=pass smtp.mailfrom=x@y.test\r\n" + // forged, other case
		"Authentication-Results: mx.elsewhere.test; dkim=pass header.d=y.test\r\n" + // another host's: kept
		"authentication-results : (forged)\r\n (still) mx.ours.test.;\r\n\tdmarc=pass\r\n" + // folded, comments, final dot
		"Authentication-Results: \"mx.ours.test\"; none\r\n" + // quoted
		"Authentication-Results: mx.ours.testing; none\n" + // a longer name, LF only: kept
		"X-Authentication-Results: mx.ours.test; none\r\n" + // another field: kept
		"X-Spam-Flag: NO\r\n" + // verdicts in our name: gone
		"x-spam-score: 0.000\r\n" +
		"X-Spam-Reason: known sender\r\n" +
		"X-Spamd-Result: default: False [0.00 / 15.00];\r\n\tHAM(-9)\r\n" +
		"X-Spam-Status: No\r\n" + // another filter's field: kept
		"Subject: hi\r\n" +
		"\r\n" +
		"Authentication-Results: mx.ours.test; in the body, kept\r\n"
	want := "Received: from a\r\n" +
		"Authentication-Results: mx.elsewhere.test; dkim=pass header.d=y.test\r\n" +
		"Authentication-Results: mx.ours.testing; none\n" +
		"X-Authentication-Results: mx.ours.test; none\r\n" +
		"X-Spam-Status: No\r\n" +
		"Subject: hi\r\n" +
		"\r\n" +
		"Authentication-Results: mx.ours.test; in the body, kept\r\n"
	if got := string(StripForged([]byte(in), "mx.ours.test")); got != want {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}
	// Nothing to remove: the same slice back.
	clean := []byte("From: a@b.test\r\nSubject: x\r\n\r\nbody")
	if got := StripForged(clean, ourHost); &got[0] != &clean[0] || !bytes.Equal(got, clean) {
		t.Error("clean header not returned as is")
	}
	// Header without a final blank line, last field forged.
	if got := string(StripForged([]byte("A: b\r\nAuthentication-Results: mx.ours.test; none"), ourHost)); got != "A: b\r\n" {
		t.Errorf("unterminated: %q", got)
	}
}

func TestAuthservIDOf(t *testing.T) {
	for in, want := range map[string]string{
		" mx.ours.test; spf=pass":           "mx.ours.test",
		"mx.ours.test 1; none":              "mx.ours.test",
		" (a (nested) comment) mx.x; none":  "mx.x",
		` "quoted\"id"; none`:               `quoted"id`,
		` "unterminated`:                    "",
		"":                                  "",
		" (open comment":                    "",
		" ;none":                            "",
		"\tmx.ours.test(comment); none":     "mx.ours.test",
		" mx.ours.test\r\n\tfolded; none":   "mx.ours.test",
		" \\(not a comment) x":              "",
		" mx.ours.test=; spf=pass":          "mx.ours.test",
		" (c \\) still comment) mx.y; none": "mx.y",
	} {
		if got := authservIDOf(in); got != want {
			t.Errorf("authservIDOf(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestReadHeader(t *testing.T) {
	for _, tc := range []struct{ msg, hdr string }{
		{"A: b\r\n\r\nbody", "A: b\r\n\r\n"},
		{"A: b\n\nbody", "A: b\n\n"},
		{"\r\nbody", "\r\n"},
		{"A: b\r\n", "A: b\r\n"},
		{"", ""},
	} {
		got, err := ReadHeader(strings.NewReader(tc.msg), int64(len(tc.msg)))
		if err != nil || string(got) != tc.hdr {
			t.Errorf("ReadHeader(%q) = %q, %v; want %q", tc.msg, got, err, tc.hdr)
		}
	}
	// Longer than the first read, and longer than the bound.
	long := strings.Repeat("X-Filler: "+strings.Repeat("y", 90)+"\r\n", 2000) + "\r\nbody"
	got, err := ReadHeader(strings.NewReader(long), int64(len(long)))
	if err != nil || len(got) != len(long)-4 {
		t.Errorf("200 KB header: %d bytes, %v", len(got), err)
	}
	huge := strings.Repeat("X-Filler: "+strings.Repeat("y", 90)+"\r\n", 20000) + "\r\nbody"
	got, err = ReadHeader(strings.NewReader(huge), int64(len(huge)))
	if err == nil || len(got) > maxHeader || !bytes.HasSuffix(got, []byte("\r\n")) {
		t.Errorf("2 MB header: %d bytes, %v", len(got), err)
	}
}

func TestFromDomains(t *testing.T) {
	for _, tc := range []struct {
		from, domain, problem string
	}{
		{"Ann <ann@Example.TEST>", "example.test", ""},
		{"=?iso-2022-jp?B?GyRCJUYlOSVIGyhC?= <ann@example.test>", "example.test", ""}, // any charset
		{"ann@bücher.test", "xn--bcher-kva.test", ""},
		{"a@x.test, b@x.test", "x.test", ""},
		{"a@x.test, b@y.test", "", "several From: domains"},
		{"undisclosed:;", "", "no From: address"},
		{"a@[192.0.2.1]", "", "bad From: domain"},
		{"<<<", "", "unparseable From: field"},
	} {
		fi := fromDomains(splitFields([]byte("From: " + tc.from + "\r\n\r\n")))
		if fi.domain != tc.domain || fi.problem != tc.problem {
			t.Errorf("From: %s → %q %q, want %q %q", tc.from, fi.domain, fi.problem, tc.domain, tc.problem)
		}
	}
	// Unparseable: the domains are still seen, for the own-domain rule.
	fi := fromDomains(splitFields([]byte("From: \"x <boss@ours.test> y@z.test\r\n\r\n")))
	if fi.domain != "" || strings.Join(fi.domains, ",") != "ours.test,z.test" {
		t.Errorf("lenient: %+v", fi)
	}
}

func TestDKIMTags(t *testing.T) {
	tags := dkimTags(" v=1; a=rsa-sha256; d=Example.test;\r\n\t s=sel; b=abc\r\n def=; bh=x; d=second; broken; =x")
	if tags["d"] != "Example.test" || tags["s"] != "sel" || tags["b"] != "abcdef=" || tags["v"] != "1" || len(tags) != 6 {
		t.Errorf("tags = %v", tags)
	}
}

func TestSanitize(t *testing.T) {
	long := strings.Repeat("a", 199) + "é" + "b"
	if got := sanitize(long); got != strings.Repeat("a", 199) || !utf8.ValidString(got) {
		t.Errorf("cut inside a character: %q", got[190:])
	}
	if got := sanitize("a\"b\\c\x01d\u0085e\xffg"); got != "a?b?c?d?e?g" {
		t.Errorf("sanitize = %q", got)
	}
}
