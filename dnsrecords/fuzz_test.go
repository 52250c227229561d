package dnsrecords

import (
	"net/netip"
	"strings"
	"testing"
)

// FuzzTXT feeds the TXT parsers what a DNS server may answer: they never
// panic, and an SPF record is only taken as covering us when it names a
// mechanism for us and ends in -all or ~all.
func FuzzTXT(f *testing.F) {
	f.Add("v=spf1 mx -all")
	f.Add("v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 ~all")
	f.Add("v=spf1 +a:mail.example.test -all")
	f.Add("v=DKIM1; k=rsa; p=MIIB")
	f.Add("v=DMARC1;p=quarantine;rua=mailto:x@y")
	f.Add("v=STSv1; id=abc;;=;")
	f.Add("v=spf1 ip4:999.1.1.1 ip6:::ffff:/200 -all")
	ips := []netip.Addr{netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("2001:db8::7")}
	f.Fuzz(func(t *testing.T, txt string) {
		for _, tag := range []string{"v", "p", "id", "rua"} {
			if v := tagValue(txt, tag); strings.ContainsAny(v, " \t\n;") {
				t.Fatalf("tagValue(%q, %s) = %q: not one value", txt, tag, v)
			}
		}
		if spfCovers(txt, "mail.example.test", ips) {
			terms := strings.Fields(strings.ToLower(txt))
			if terms[0] != "v=spf1" || (terms[len(terms)-1] != "-all" && terms[len(terms)-1] != "~all") {
				t.Fatalf("spfCovers(%q) without v=spf1 ... -all", txt)
			}
		}
	})
}
