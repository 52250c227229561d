package main

import (
	"crypto/x509"
	"net"
	"net/http"
	"os"

	"postie/config"
	"postie/tlsconf"
)

// acmeNames are the names [tls] acme obtains certificates for: hostname
// first (the certificate of clients that send no SNI), then for each
// domain the names clients and sending servers fetch from the [http]
// role: mta-sts., autoconfig. and autodiscover.<domain>.
func acmeNames(cfg *config.Config) []string {
	names := []string{cfg.Hostname}
	seen := map[string]bool{cfg.Hostname: true}
	for _, d := range cfg.Domains {
		for _, prefix := range []string{"mta-sts.", "autoconfig.", "autodiscover."} {
			if n := prefix + d; !seen[n] {
				seen[n] = true
				names = append(names, n)
			}
		}
	}
	return names
}

// enableACME turns automatic certificates on in s.tls when [tls] acme is
// set; serve's run then starts s.tls.RunACME once the listeners are up.
func (s *server) enableACME() error {
	cfg := s.cfg
	if !cfg.TLS.ACME {
		return nil
	}
	if len(cfg.HTTP.Listen) == 0 && len(cfg.HTTP.TLSListen) == 0 {
		s.log.Warn("tls: acme is on but [http] has no listener: the ACME server cannot validate any name")
	}
	return s.tls.EnableACME(tlsconf.ACMEOptions{
		Directory: cfg.TLS.ACMEDirectory, Email: cfg.TLS.ACMEEmail, CAFile: cfg.TLS.ACMECAFile,
		CacheDir: cfg.ACMEDir(), Names: acmeNames(cfg),
	})
}

// acmeWeb is what the [http] role needs for ACME: the http-01 handler
// (only when there is a plain HTTP listener to serve it: asking for it is
// what makes the ACME client offer http-01) and whether HTTPS offers
// acme-tls/1 for tls-alpn-01.
func (s *server) acmeWeb() (http.Handler, bool) {
	if !s.cfg.TLS.ACME {
		return nil, false
	}
	var h http.Handler
	if len(s.cfg.HTTP.Listen) > 0 {
		h = s.tls.ACMEHTTPHandler()
	}
	return h, true
}

// checkACME is check-config's part for [tls] acme: the CA file must parse;
// the ACME server must be able to reach a challenge listener, on the
// ports it validates on (80 for http-01, 443 for tls-alpn-01) when the
// configuration looks like a production one (a public hostname).
func checkACME(f *checkFindings, cfg *config.Config) {
	if !cfg.TLS.ACME {
		return
	}
	if p := cfg.TLS.ACMECAFile; p != "" {
		pem, err := os.ReadFile(p)
		if err != nil {
			f.errorf("tls.acme_ca_file: %v", err)
		} else if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			f.errorf("tls.acme_ca_file %s: no PEM certificate in it", p)
		}
	}
	h := cfg.HTTP
	switch {
	case len(h.Listen) == 0 && len(h.TLSListen) == 0:
		f.warnf("tls.acme is on but [http] has neither listen nor tls_listen: the ACME server cannot validate any name, no certificate will be issued")
		return
	case len(h.TLSListen) == 0:
		f.warnf("tls.acme: [http] has no tls_listen: each certificate order first fails a tls-alpn-01 validation, then uses http-01 on listen (failed validations count against Let's Encrypt's limits)")
	}
	if implausibleHostname(cfg.Hostname) != "" {
		return // a test or local setup: any port goes
	}
	for _, l := range []struct {
		key, port string
		addrs     []string
	}{{"http.listen", "80", h.Listen}, {"http.tls_listen", "443", h.TLSListen}} {
		for _, a := range l.addrs {
			if _, port, err := net.SplitHostPort(a); err == nil && port != l.port {
				f.warnf("%s %s: ACME servers validate on port %s only; unless port %s is forwarded here, certificates will not be issued", l.key, a, l.port, l.port)
			}
		}
	}
}
