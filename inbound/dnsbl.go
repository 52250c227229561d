package inbound

import (
	"container/list"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"postie/envelope"
	"postie/internal/dnsutil"
)

// DNSBLOptions configure a DNSBL.
type DNSBLOptions struct {
	// Zones are the block lists, e.g. "zen.spamhaus.org"; none means no
	// address is ever listed.
	Zones []string
	// TTL is how long an answer (listed or not) is kept. The Resolver
	// interface does not carry DNS TTLs, so this one stands for them.
	// Zero means 10 minutes. Temporary failures are not kept.
	TTL time.Duration
	// MaxEntries bounds the cache (zone and address pairs); the least
	// recently used entry goes first. Zero means 10000.
	MaxEntries int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives temporary failures. Nil means slog.Default().
	Logger *slog.Logger
}

// DNSBL checks client addresses against DNS block lists (RFC 5782). It is
// safe for concurrent use; build one per server and share it.
type DNSBL struct {
	r Resolver
	o DNSBLOptions

	mu    sync.Mutex
	lru   *list.List // of *blEntry, most recent first
	byKey map[string]*list.Element
}

type blEntry struct {
	key     string
	listing *Listing // nil: not listed
	expires time.Time
}

// Listing says that an address is on a list.
type Listing struct {
	IP     netip.Addr
	Zone   string
	Codes  []netip.Addr // the 127.0.0.x answers
	Reason string       // the zone's TXT text, cleaned and cut; may be empty
}

// Reply is the SMTP refusal for a listed client: 554 5.7.1 naming the
// zone and its reason.
func (l *Listing) Reply() *envelope.Error {
	msg := fmt.Sprintf("client [%s] is listed in %s", l.IP, l.Zone)
	if l.Reason != "" {
		msg += ": " + l.Reason
	}
	return envelope.Errorf(554, 5, 7, 1, "%s", msg)
}

// NewDNSBL returns a checker for o.Zones that resolves through r.
func NewDNSBL(r Resolver, o DNSBLOptions) *DNSBL {
	if o.TTL <= 0 {
		o.TTL = 10 * time.Minute
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = 10000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	zones := make([]string, 0, len(o.Zones))
	for _, z := range o.Zones {
		if z = strings.Trim(strings.ToLower(z), "."); z != "" {
			zones = append(zones, z)
		}
	}
	o.Zones = zones
	return &DNSBL{r: r, o: o, lru: list.New(), byKey: map[string]*list.Element{}}
}

// Check asks every zone (in parallel) about ip and returns the listing of
// the first zone, in configured order, that lists it; nil if none does.
// A zone that cannot be asked counts as not listing (mail is not refused
// for a block list's trouble) and is logged.
func (b *DNSBL) Check(ctx context.Context, ip netip.Addr) *Listing {
	ip = ip.Unmap()
	if !ip.IsValid() || len(b.o.Zones) == 0 {
		return nil
	}
	results := make([]*Listing, len(b.o.Zones))
	var wg sync.WaitGroup
	for i, zone := range b.o.Zones {
		if l, ok := b.cached(zone, ip); ok {
			results[i] = l
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = b.query(ctx, zone, ip)
		}()
	}
	wg.Wait()
	for _, l := range results {
		if l != nil {
			return l
		}
	}
	return nil
}

// query asks one zone and caches a definite answer.
func (b *DNSBL) query(ctx context.Context, zone string, ip netip.Addr) *Listing {
	name := QueryName(ip, zone)
	addrs, err := b.r.LookupNetIP(ctx, "ip4", name)
	if err != nil && !dnsutil.NotFound(err) {
		b.o.Logger.Warn("inbound: dnsbl lookup failed", "zone", zone, "remote", ip.String(), "err", err)
		return nil
	}
	var codes []netip.Addr
	for _, a := range addrs {
		a = a.Unmap()
		// 127.0.0.0/8 lists; 127.255.255.0/24 is how lists like Spamhaus
		// report errors (refused resolver, over quota), not listings.
		if a.Is4() && a.As4()[0] == 127 && !(a.As4()[1] == 255 && a.As4()[2] == 255) {
			codes = append(codes, a)
		} else {
			b.o.Logger.Warn("inbound: dnsbl answer ignored", "zone", zone, "remote", ip.String(), "answer", a.String())
		}
	}
	var l *Listing
	if len(codes) > 0 {
		l = &Listing{IP: ip, Zone: zone, Codes: codes}
		if txts, err := b.r.LookupTXT(ctx, name); err == nil {
			l.Reason = sanitize(strings.Join(txts, "; "))
		}
	}
	b.store(zone, ip, l)
	return l
}

// QueryName is the DNSBL name for ip in zone (RFC 5782 §2.1, §2.4): the
// IPv4 octets, or the IPv6 nibbles, reversed, then the zone.
func QueryName(ip netip.Addr, zone string) string {
	ip = ip.Unmap()
	var b strings.Builder
	if ip.Is4() {
		a := ip.As4()
		for i := 3; i >= 0; i-- {
			fmt.Fprintf(&b, "%d.", a[i])
		}
	} else {
		a := ip.As16()
		const hex = "0123456789abcdef"
		for i := 15; i >= 0; i-- {
			b.WriteByte(hex[a[i]&0xf])
			b.WriteByte('.')
			b.WriteByte(hex[a[i]>>4])
			b.WriteByte('.')
		}
	}
	b.WriteString(zone)
	return b.String()
}

func (b *DNSBL) cached(zone string, ip netip.Addr) (*Listing, bool) {
	key := zone + " " + ip.String()
	b.mu.Lock()
	defer b.mu.Unlock()
	el, ok := b.byKey[key]
	if !ok {
		return nil, false
	}
	e := el.Value.(*blEntry)
	if !b.o.Now().Before(e.expires) {
		b.lru.Remove(el)
		delete(b.byKey, key)
		return nil, false
	}
	b.lru.MoveToFront(el)
	return e.listing, true
}

func (b *DNSBL) store(zone string, ip netip.Addr, l *Listing) {
	key := zone + " " + ip.String()
	b.mu.Lock()
	defer b.mu.Unlock()
	e := &blEntry{key: key, listing: l, expires: b.o.Now().Add(b.o.TTL)}
	if el, ok := b.byKey[key]; ok {
		el.Value = e
		b.lru.MoveToFront(el)
		return
	}
	b.byKey[key] = b.lru.PushFront(e)
	for b.lru.Len() > b.o.MaxEntries {
		old := b.lru.Back()
		b.lru.Remove(old)
		delete(b.byKey, old.Value.(*blEntry).key)
	}
}
