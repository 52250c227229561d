package main

import (
	"errors"
	"log/slog"
	"net"
	"path/filepath"

	"postie/config"
	"postie/dane"
	"postie/mtasts"
	"postie/outbound"
)

// resolvConf is where the system's resolver is named; DANE uses its first
// nameserver when [outbound] resolver is not set and it is on loopback.
const resolvConf = "/etc/resolv.conf"

// outboundTLS fills in the transport security of outbound delivery:
// [outbound] ca_file's roots, the source addresses, MTA-STS (policies
// cached under data_dir/mta-sts) and DANE when a trusted validating
// resolver is known.
func outboundTLS(cfg *config.Config, log *slog.Logger, o *outbound.Options) error {
	roots, err := outbound.LoadRoots(cfg.Outbound.CAFile)
	if err != nil {
		return err
	}
	o.RootCAs = roots
	o.SourceIP = net.ParseIP(cfg.Outbound.SourceIP)     // validated by config; nil when ""
	o.SourceIPv6 = net.ParseIP(cfg.Outbound.SourceIPv6) //
	o.STS = mtasts.New(mtasts.Options{
		Resolver: outbound.NewResolver(cfg.Outbound.Resolver), RootCAs: roots,
		Dir: filepath.Join(cfg.DataDir, "mta-sts"), Logger: log,
	})
	dr, err := dane.NewResolver(cfg.Outbound.Resolver, resolvConf)
	switch {
	case errors.Is(err, dane.ErrNoResolver):
		log.Info("outbound: DANE is off: no trusted validating resolver; set [outbound] resolver to one (e.g. unbound on 127.0.0.1:53)")
	case err != nil:
		return err
	default:
		o.DANE = dr
	}
	return nil
}
