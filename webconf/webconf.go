// Package webconf is the [http] role: the documents mail clients and
// sending servers fetch over HTTP(S) to find this server.
//
// For every domain in Options.Domains, on any Host name, it serves:
//
//   - Thunderbird autoconfig (clientConfig v1.1) at
//     GET /.well-known/autoconfig/mail/config-v1.1.xml and
//     GET /mail/config-v1.1.xml, with or without ?emailaddress=;
//   - Outlook autodiscover: POST (or GET) /autodiscover/autodiscover.xml
//     (any case of the path) answering the POX request with the "outlook"
//     response schema (2006a; a request for another schema, such as
//     ActiveSync's mobilesync, is 404), and the JSON form
//     GET /autodiscover/autodiscover.json?Email=...&Protocol=AutodiscoverV1
//     and /autodiscover/autodiscover.json/v1.0/{address};
//   - an Apple configuration profile, GET /apple/mobileconfig?email=ADDRESS
//     (unsigned, com.apple.mail.managed);
//   - the MTA-STS policy, GET /.well-known/mta-sts.txt;
//   - ACME http-01 challenges, when Options.ACMEChallenge is set (and
//     tls-alpn-01 on ServeTLS with Options.ACMETLSALPN).
//
// What is advertised is Options.Host and the ports in Options: implicit TLS
// first, then STARTTLS, a kind with port 0 left out. Any other path is 404;
// addresses outside Options.Domains are 404; a malformed address or request
// body is 400. Request bodies are bounded (MaxBodyBytes), and the server
// has header, read, write and idle timeouts and a header size limit. (The
// house connection tracker, netconn, is not used: net/http owns its
// connections; its own timeouts and limits stand in.)
package webconf

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"postie/mtasts"
)

// acmeALPN is the ALPN protocol of ACME tls-alpn-01 validations.
const acmeALPN = "acme-tls/1"

// MaxBodyBytes bounds a request body (an autodiscover request is < 1 KB).
const MaxBodyBytes = 64 << 10

// Ports are the advertised ports of one protocol; 0 leaves that form out.
type Ports struct {
	TLS      int // implicit TLS ("SSL")
	STARTTLS int
}

// Options configure a Server. Zero values are documented per field.
type Options struct {
	// Host is the name clients are told to connect to (advertise_host, or
	// hostname). Required.
	Host string
	// MX is the host named in the MTA-STS policy's mx line; "" means Host.
	MX string
	// Domains are our mail domains, lower case; at least one.
	Domains []string

	IMAP, POP3, Submission Ports

	// MTASTSMode is the policy mode: "testing" (the default for ""),
	// "enforce" or "none".
	MTASTSMode string
	// MTASTSMaxAge is the policy's max_age; 0 means one week.
	MTASTSMaxAge time.Duration

	// ACMEChallenge, when set, answers /.well-known/acme-challenge/...
	// (ACME http-01, e.g. autocert.Manager.HTTPHandler(nil)); nil: 404.
	ACMEChallenge http.Handler
	// ACMETLSALPN makes ServeTLS offer the "acme-tls/1" protocol, so that
	// TLSConfig's GetCertificate can answer ACME tls-alpn-01 validations
	// (RFC 8737); false offers only HTTP/1.1.
	ACMETLSALPN bool

	// TLSConfig is used by ServeTLS; nil makes ServeTLS fail.
	TLSConfig *tls.Config
	// Logger gets one line per bad request at debug level; nil discards.
	Logger *slog.Logger
}

// Server serves the documents on any number of listeners.
type Server struct {
	opts Options
	http *http.Server
	log  *slog.Logger
}

// New returns a Server for opts.
func New(opts Options) *Server {
	if opts.MX == "" {
		opts.MX = opts.Host
	}
	if opts.MTASTSMode == "" {
		opts.MTASTSMode = "testing"
	}
	if opts.MTASTSMaxAge <= 0 {
		opts.MTASTSMaxAge = 7 * 24 * time.Hour
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Server{opts: opts, log: log}
	s.http = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return s
}

// Serve answers plain HTTP on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error { return s.http.Serve(ln) }

// ServeTLS answers HTTPS on ln, with Options.TLSConfig, until Shutdown.
func (s *Server) ServeTLS(ln net.Listener) error {
	if s.opts.TLSConfig == nil {
		return errors.New("webconf: ServeTLS without a TLS configuration")
	}
	cfg := s.opts.TLSConfig.Clone()
	cfg.NextProtos = []string{"http/1.1"}
	if s.opts.ACMETLSALPN {
		cfg.NextProtos = append(cfg.NextProtos, acmeALPN)
	}
	return s.http.Serve(tls.NewListener(ln, cfg))
}

// Shutdown stops every listener and waits for requests in flight.
func (s *Server) Shutdown(ctx context.Context) error { return s.http.Shutdown(ctx) }

// ServeHTTP routes a request to its document.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	path := r.URL.Path
	lower := strings.ToLower(path)
	switch {
	case path == "/.well-known/autoconfig/mail/config-v1.1.xml" || path == "/mail/config-v1.1.xml":
		if getOnly(w, r) {
			s.autoconfig(w, r)
		}
	case lower == "/autodiscover/autodiscover.xml":
		if r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodPost {
			w.Header().Set("Allow", "GET, HEAD, POST")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		s.autodiscover(w, r)
	case lower == "/autodiscover/autodiscover.json" || strings.HasPrefix(lower, "/autodiscover/autodiscover.json/"):
		if getOnly(w, r) {
			s.autodiscoverJSON(w, r)
		}
	case path == "/apple/mobileconfig":
		if getOnly(w, r) {
			s.mobileconfig(w, r)
		}
	case strings.HasPrefix(path, "/.well-known/acme-challenge/") && s.opts.ACMEChallenge != nil:
		s.opts.ACMEChallenge.ServeHTTP(w, r)
	case path == "/.well-known/mta-sts.txt":
		if getOnly(w, r) {
			s.mtaSTS(w)
		}
	default:
		http.NotFound(w, r)
	}
}

// getOnly answers 405 to anything but GET and HEAD, and reports whether
// the request may go on.
func getOnly(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	return false
}

// ours reports whether dom is one of our domains.
func (s *Server) ours(dom string) bool { return slices.Contains(s.opts.Domains, dom) }

// errBadAddress and errNotOurs are parseAddress's two refusals.
var (
	errBadAddress = errors.New("malformed address")
	errNotOurs    = errors.New("not at one of our domains")
)

// parseAddress checks that addr is local@domain with domain ours, and
// returns it with the domain lower-cased, and the domain.
func (s *Server) parseAddress(addr string) (string, string, error) {
	addr = strings.TrimSpace(addr)
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 || len(addr) > 254 || strings.ContainsAny(addr, " \t\r\n<>\"") {
		return "", "", errBadAddress
	}
	dom := strings.TrimSuffix(strings.ToLower(addr[at+1:]), ".")
	if !s.ours(dom) {
		return "", "", errNotOurs
	}
	return addr[:at] + "@" + dom, dom, nil
}

// addressError answers 400 for a malformed address, 404 for one that is
// not ours.
func (s *Server) addressError(w http.ResponseWriter, r *http.Request, addr string, err error) {
	s.log.Debug("http: refused address", "remote", r.RemoteAddr, "addr", addr, "err", err)
	if errors.Is(err, errNotOurs) {
		http.Error(w, "no such domain here", http.StatusNotFound)
		return
	}
	http.Error(w, "malformed address", http.StatusBadRequest)
}

// domainFor picks the domain a request without an address is about: the
// Host name's parent when it is autoconfig.<ours> or similar, else the
// first domain.
func (s *Server) domainFor(r *http.Request) string {
	host := strings.ToLower(r.Host)
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(host, ".")
	for host != "" {
		if s.ours(host) {
			return host
		}
		i := strings.IndexByte(host, '.')
		if i < 0 {
			break
		}
		host = host[i+1:]
	}
	return s.opts.Domains[0]
}

// mtaSTS serves the RFC 8461 policy, lines ending in CRLF.
func (s *Server) mtaSTS(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	io.WriteString(w, MTASTSPolicy(s.opts.MTASTSMode, s.opts.MX, s.opts.MTASTSMaxAge))
}

// MTASTSPolicy is the text of the policy file.
func MTASTSPolicy(mode, mx string, maxAge time.Duration) string {
	return mtasts.Format(mtasts.Mode(mode), []string{mx}, maxAge)
}
