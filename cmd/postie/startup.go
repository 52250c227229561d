package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"syscall"

	"postie/config"
	"postie/dkim"
)

// ensureDKIMKeys makes, at start, the DKIM key of every domain that has
// none for the configured selector (as tlsconf makes a self-signed
// certificate), and logs the DNS TXT record to publish for each.
func ensureDKIMKeys(cfg *config.Config, log *slog.Logger) error {
	made, err := dkim.EnsureKeys(cfg.DKIMDir(), cfg.Outbound.DKIMSelector, cfg.Domains)
	for _, k := range made {
		log.Info("dkim: made a signing key; publish this DNS TXT record",
			"domain", k.Domain, "txt_name", k.TXTName, "txt_value", k.TXTValue)
	}
	if err != nil {
		return fmt.Errorf("dkim keys: %w", err)
	}
	return nil
}

// privilegedPortHint is the fix for a port below 1024 refused to a
// non-root user.
const privilegedPortHint = "ports below 1024 need root or CAP_NET_BIND_SERVICE " +
	"(the unit in contrib/postie.service grants it; or: setcap cap_net_bind_service=+ep /usr/local/bin/postie)"

// listenError describes a failed listen on addr for role, with the fix
// when the cause is a privileged port the process may not bind.
func listenError(role, addr string, err error) error {
	if errors.Is(err, syscall.EACCES) && privilegedPort(addr) {
		return fmt.Errorf("%s: listen %s: permission denied: %s: %w", role, addr, privilegedPortHint, err)
	}
	return fmt.Errorf("%s: listen on %s: %w", role, addr, err)
}

// privilegedPort reports whether addr ("host:port") names a port below
// 1024 (port 0, "any free port", is not one).
func privilegedPort(addr string) bool {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		if n, err := net.LookupPort("tcp", p); err == nil {
			return n > 0 && n < 1024
		}
		return false
	}
	return n > 0 && n < 1024
}
