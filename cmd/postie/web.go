package main

import (
	"errors"
	"net"
	"net/http"

	"postie/webconf"
)

// listenWeb binds the [http] role's listeners and builds its server, which
// advertises the ports actually bound: the first listener of each role,
// implicit TLS and STARTTLS (so it must run after the mail roles bind).
func (s *server) listenWeb() error {
	serve := func(f func(net.Listener) error) func(net.Listener) error {
		return func(ln net.Listener) error {
			if err := f(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		}
	}
	for _, a := range s.cfg.HTTP.Listen {
		if err := s.bind("http", a, serve(func(ln net.Listener) error { return s.web.Serve(ln) })); err != nil {
			return err
		}
	}
	for _, a := range s.cfg.HTTP.TLSListen {
		if err := s.bind("https", a, serve(func(ln net.Listener) error { return s.web.ServeTLS(ln) })); err != nil {
			return err
		}
	}
	port := func(role string) int {
		for _, l := range s.listeners {
			if l.role == role {
				if a, ok := l.ln.Addr().(*net.TCPAddr); ok {
					return a.Port
				}
			}
		}
		return 0
	}
	acmeHTTP, acmeALPN := s.acmeWeb()
	s.web = webconf.New(webconf.Options{
		Host: s.cfg.AdvertisedHost(), MX: s.cfg.Hostname, Domains: s.cfg.Domains,
		ACMEChallenge: acmeHTTP, ACMETLSALPN: acmeALPN,
		IMAP:         webconf.Ports{TLS: port("imaps"), STARTTLS: port("imap")},
		POP3:         webconf.Ports{TLS: port("pop3s"), STARTTLS: port("pop3")},
		Submission:   webconf.Ports{TLS: port("submissions"), STARTTLS: port("submission")},
		MTASTSMode:   s.cfg.HTTP.MTASTSMode,
		MTASTSMaxAge: s.cfg.HTTP.MTASTSMaxAge,
		TLSConfig:    s.tls.Config(),
		Logger:       s.log.With("role", "http"),
	})
	return nil
}
