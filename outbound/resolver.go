package outbound

import (
	"context"
	"net"
	"time"
)

// Resolver is the part of *net.Resolver that delivery needs. Tests inject
// a fake; production uses net.DefaultResolver or NewResolver.
type Resolver interface {
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
}

// NewResolver returns a resolver that asks the DNS server at addr
// ("host:port") for every query, or the system's resolver when addr is "".
// Every DNS user of the server (delivery, the inbound checks, `postie dns
// check`) asks through one of these, so `[outbound] resolver` points them
// all at the same server.
func NewResolver(addr string) *net.Resolver {
	if addr == "" {
		return net.DefaultResolver
	}
	d := net.Dialer{Timeout: 10 * time.Second}
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
	}
}
