package inbound

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"postie/internal/dnstest"
)

func TestQueryName(t *testing.T) {
	for ip, want := range map[string]string{
		"192.0.2.99":       "99.2.0.192.bl.test",
		"::ffff:192.0.2.1": "1.2.0.192.bl.test",
		"2001:db8:1:2::ab": "b.a.0.0.0.0.0.0.0.0.0.0.0.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.bl.test",
	} {
		if got := QueryName(netip.MustParseAddr(ip), "bl.test"); got != want {
			t.Errorf("QueryName(%s) = %s, want %s", ip, got, want)
		}
	}
}

func TestDNSBL(t *testing.T) {
	s := dnstest.New(t)
	now := time.Unix(1_800_000_000, 0)
	bl := NewDNSBL(s.Resolver(), DNSBLOptions{
		Zones:  []string{"first.test", "Second.Test."},
		TTL:    time.Minute,
		Now:    func() time.Time { return now },
		Logger: quiet,
	})
	v4 := netip.MustParseAddr("192.0.2.99")
	v6 := netip.MustParseAddr("2001:db8::99")
	s.A(QueryName(v4, "second.test"), "127.0.0.2")
	s.TXT(QueryName(v4, "second.test"), "Listed: see https://bl.test/q?192.0.2.99\r\nX-Evil: 1")
	s.A(QueryName(v6, "first.test"), "127.0.0.4", "127.0.0.10")
	s.A(QueryName(netip.MustParseAddr("192.0.2.7"), "first.test"), "127.255.255.254") // "you may not query": not a listing
	s.A(QueryName(netip.MustParseAddr("192.0.2.8"), "first.test"), "192.0.2.1")       // not in 127/8
	s.ServFail(QueryName(netip.MustParseAddr("192.0.2.9"), "first.test"))

	l := bl.Check(testCtx(t), v4)
	if l == nil || l.Zone != "second.test" || !strings.HasPrefix(l.Reason, "Listed: see https://bl.test/q?192.0.2.99") || strings.ContainsAny(l.Reason, "\r\n") {
		t.Fatalf("v4 listing = %+v", l)
	}
	r := l.Reply()
	if r.Code != 554 || r.Enhanced != [3]int{5, 7, 1} || !strings.Contains(r.Message, "second.test") || !strings.Contains(r.Message, "Listed: see") {
		t.Errorf("reply = %v", r)
	}
	l = bl.Check(testCtx(t), v6)
	if l == nil || l.Zone != "first.test" || len(l.Codes) != 2 || l.Reason != "" {
		t.Errorf("v6 listing = %+v", l)
	}
	for _, ip := range []string{"192.0.2.1", "192.0.2.7", "192.0.2.8", "192.0.2.9"} {
		if l := bl.Check(testCtx(t), netip.MustParseAddr(ip)); l != nil {
			t.Errorf("%s listed: %+v", ip, l)
		}
	}

	// Cached: no query until the TTL runs out; temporary failures are not kept.
	name := QueryName(v4, "second.test")
	failName := QueryName(netip.MustParseAddr("192.0.2.9"), "first.test")
	before, failBefore := s.Count(name, "A"), s.Count(failName, "A")
	for range 3 {
		bl.Check(testCtx(t), v4)
		bl.Check(testCtx(t), netip.MustParseAddr("192.0.2.9"))
	}
	if n := s.Count(name, "A"); n != before {
		t.Errorf("cached answer asked again: %d queries, want %d", n, before)
	}
	if n := s.Count(failName, "A"); n == failBefore {
		t.Error("temporary failure was cached")
	}
	now = now.Add(time.Minute)
	if bl.Check(testCtx(t), v4) == nil || s.Count(name, "A") != before+1 {
		t.Errorf("after the TTL: %d queries, want %d", s.Count(name, "A"), before+1)
	}
}

func TestDNSBLCacheBound(t *testing.T) {
	s := dnstest.New(t)
	bl := NewDNSBL(s.Resolver(), DNSBLOptions{Zones: []string{"bl.test"}, MaxEntries: 2, Logger: quiet})
	a, b, c := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3")
	for _, ip := range []netip.Addr{a, b, a, c} { // a is used again, so b goes
		bl.Check(testCtx(t), ip)
	}
	if len(bl.byKey) != 2 || bl.lru.Len() != 2 {
		t.Fatalf("cache holds %d/%d entries, want 2", len(bl.byKey), bl.lru.Len())
	}
	na, nb := s.Count(QueryName(a, "bl.test"), "A"), s.Count(QueryName(b, "bl.test"), "A")
	bl.Check(testCtx(t), a)
	bl.Check(testCtx(t), b)
	if s.Count(QueryName(a, "bl.test"), "A") != na || s.Count(QueryName(b, "bl.test"), "A") == nb {
		t.Error("least recently used entry was not the one evicted")
	}
}

func TestReverseDNS(t *testing.T) {
	s := dnstest.New(t)
	r := s.Resolver()
	s.PTR("192.0.2.10", "mail.sender.test")
	s.A("mail.sender.test", "192.0.2.10")
	s.PTR("192.0.2.11", "liar.test", "Also.Sender.test.") // second name confirms
	s.A("liar.test", "198.51.100.1")
	s.A("also.sender.test", "192.0.2.11")
	s.PTR("192.0.2.12", "forged.test") // forward does not match
	s.A("forged.test", "198.51.100.2")
	s.PTR("2001:db8::10", "v6.sender.test")
	s.AAAA("v6.sender.test", "2001:db8::10")
	s.PTR("192.0.2.14", "slow.test")
	s.ServFail("slow.test")
	for _, tc := range []struct {
		ip, name string
		result   Result
	}{
		{"192.0.2.10", "mail.sender.test", Pass},
		{"192.0.2.11", "also.sender.test", Pass},
		{"192.0.2.12", "", Fail},
		{"2001:db8::10", "v6.sender.test", Pass},
		{"192.0.2.13", "", PermError}, // no PTR
		{"192.0.2.14", "", TempError},
	} {
		got := ReverseDNS(testCtx(t), r, netip.MustParseAddr(tc.ip))
		if got.Result != tc.result || got.Name != tc.name {
			t.Errorf("ReverseDNS(%s) = %+v, want %s %q", tc.ip, got, tc.result, tc.name)
		}
	}
}
