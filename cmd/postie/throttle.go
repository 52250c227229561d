package main

import (
	"log/slog"

	"postie/config"
	"postie/outbound"
	"postie/queue"
)

// newThrottle builds the per-destination throttle from [queue]
// messages_per_minute, max_per_domain and the [[queue.throttle]] rules.
// The queue paces its attempts with it and the outbound client asks it
// before each connection. Destinations are found by MX lookup through
// [outbound] resolver; through a smarthost they are the recipient domains.
func newThrottle(cfg *config.Config, log *slog.Logger) *queue.Throttle {
	o := queue.ThrottleOptions{
		MessagesPerMinute: cfg.Queue.MessagesPerMinute, Connections: cfg.Queue.MaxPerDomain, Logger: log,
	}
	for _, t := range cfg.Queue.Throttles {
		o.Rules = append(o.Rules, queue.ThrottleRule{Domain: t.Domain, MessagesPerMinute: t.MessagesPerMinute, Connections: t.Connections})
	}
	if cfg.Outbound.Smarthost == "" {
		o.MX = outbound.NewResolver(cfg.Outbound.Resolver)
	}
	return queue.NewThrottle(o)
}
