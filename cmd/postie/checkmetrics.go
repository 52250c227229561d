package main

import (
	"net"
	"net/netip"

	"postie/config"
)

// checkMetricsExposure warns about a [metrics] listen address that other
// machines on the Internet may reach: GET /metrics has no authentication,
// and it tells anyone traffic volumes, login failures and the queue. An
// address with no host (":9100") or "0.0.0.0"/"::" binds every interface;
// a public IP is reachable by its nature. Loopback and private addresses
// (RFC 1918, ULA, link-local) pass; so do host names, which would need DNS
// to judge.
func checkMetricsExposure(f *checkFindings, cfg *config.Config) {
	for _, a := range cfg.Metrics.Listen {
		host, _, err := net.SplitHostPort(a)
		if err != nil {
			continue // config.Load refuses it
		}
		if host == "" {
			f.warnf("metrics.listen %s listens on every interface, and /metrics has no authentication; name a loopback or private address (127.0.0.1:PORT)", a)
			continue
		}
		ip, err := netip.ParseAddr(host)
		if err != nil {
			continue
		}
		ip = ip.Unmap()
		switch {
		case ip.IsUnspecified():
			f.warnf("metrics.listen %s listens on every interface, and /metrics has no authentication; name a loopback or private address (127.0.0.1:PORT)", a)
		case !ip.IsLoopback() && !ip.IsPrivate() && !ip.IsLinkLocalUnicast():
			f.warnf("metrics.listen %s is a public address, and /metrics has no authentication; name a loopback or private address, or firewall the port", a)
		}
	}
}
