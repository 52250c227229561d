package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"postie/accounts"
	"postie/config"
	"postie/dkim"
	"postie/imapd"
	"postie/inbound"
	"postie/junk"
	"postie/maildir"
	"postie/mda"
	"postie/metrics"
	"postie/outbound"
	"postie/pop3d"
	"postie/queue"
	"postie/rspamd"
	"postie/smtpd"
	"postie/suppress"
	"postie/tlsconf"
	"postie/tlsrpt"
	"postie/webconf"
)

// shutdownGrace bounds how long SIGTERM waits for transactions in flight.
const shutdownGrace = 30 * time.Second

func cmdServe(e *env, args []string) error {
	fs, cfgPath := newFlags(e, "serve")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{"serve takes no arguments"}
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	log := newLogger(e, cfg)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// Catch SIGHUP from the start: its default action would kill a server
	// still making its certificate or loading its spool.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	srv, err := newServer(cfg, log)
	if err != nil {
		return err
	}
	if err := srv.listen(); err != nil {
		srv.closeListeners()
		return err
	}
	go func() {
		for range hup {
			srv.reload()
		}
	}()
	return srv.run(ctx)
}

func newLogger(e *env, cfg *config.Config) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(e.stderr, opts))
	}
	return slog.New(slog.NewTextHandler(e.stderr, opts))
}

// server is every component of `postie serve`, wired.
type server struct {
	cfg      *config.Config
	log      *slog.Logger
	tls      *tlsconf.Manager
	accounts *accounts.DB
	store    *maildir.Store
	queue    *queue.Queue
	outbound *outbound.Client
	mda      *mda.Router
	checks   *mda.Checks  // inbound trust checks of mail from outside
	junk     *junk.Filter // nil when [spam] junk_filter is off
	suppress *suppress.List
	tlsrpt   *tlsrpt.Recorder // outbound TLS results, for the daily reports (tlsrpt.go)

	mx, submission *smtpd.Server
	imap           *imapd.Server
	pop3           *pop3d.Server
	web            *webconf.Server // the [http] role; built by listenWeb

	metrics     *metrics.Metrics // nil when [metrics] listen is empty (metrics.go)
	metricsHTTP *http.Server

	listeners []boundListener
}

type boundListener struct {
	role  string
	ln    net.Listener
	serve func(net.Listener) error
}

func newServer(cfg *config.Config, log *slog.Logger) (*server, error) {
	s := &server{cfg: cfg, log: log}
	s.newMetrics()
	for _, dir := range []string{cfg.DataDir, cfg.MailDir(), cfg.QueueDir(), cfg.SpoolTmpDir()} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create %s: %w", dir, err)
		}
	}
	var err error
	if s.tls, err = tlsconf.New(cfg.TLS.CertFile, cfg.TLS.KeyFile, cfg.TLSDir(), cfg.Hostname, log); err != nil {
		return nil, err
	}
	if err := s.enableACME(); err != nil {
		return nil, err
	}
	if s.accounts, err = accounts.Open(cfg.AccountsFile(), cfg.Domains, log); err != nil {
		return nil, err
	}
	s.store = maildir.NewStore(cfg.MailDir(), maildir.StoreOptions{Hostname: cfg.Hostname, Logger: log})
	if s.tlsrpt, err = newTLSRecorder(cfg, log); err != nil {
		return nil, err
	}
	thr := newThrottle(cfg, log) // per-destination pacing, shared by the queue and outbound (throttle.go)
	if s.outbound, err = newOutbound(cfg, log, s.tlsrpt, thr); err != nil {
		return nil, err
	}
	if s.suppress, err = openSuppress(cfg); err != nil {
		return nil, err
	}
	// The router forwards into the queue and the queue bounces through the
	// router: the queue is opened first, the router built on it, and the
	// router handed to the queue's Run.
	s.queue, err = queue.Open(queue.Options{
		Dir: cfg.QueueDir(), Hostname: cfg.Hostname,
		MinRetry: cfg.Queue.MinRetry, MaxRetry: cfg.Queue.MaxRetry, Lifetime: cfg.Queue.Lifetime, DelayWarning: cfg.Queue.DelayWarning,
		MaxConcurrency: cfg.Queue.MaxConcurrency, MaxPerDomain: cfg.Queue.MaxPerDomain,
		Deliverer: s.countDeliveries(s.outbound), Throttle: thr, Suppressor: s.suppress, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	if err := s.buildTrust(); err != nil {
		return nil, err
	}
	mopts := mda.Options{
		Hostname: cfg.Hostname, Directory: s.accounts, Store: s.store, Forwarder: s.queue,
		Postmaster: cfg.Postmaster, TmpDir: cfg.SpoolTmpDir(), Logger: log,
		Inspector: s.countInspections(s.checks),
	}
	if s.junk != nil {
		mopts.Junk = s.countJunk(s.junk)
	}
	s.mda = mda.New(mopts)
	s.buildFrontEnds()
	return s, nil
}

// buildTrust makes the inbound trust checks (SPF, DKIM, DMARC, reverse
// DNS, DNS block lists, rspamd when configured) and the junk filter. They
// resolve through [outbound] resolver, as outbound delivery does.
func (s *server) buildTrust() error {
	cfg := s.cfg
	o := mda.ChecksOptions{
		Resolver: outbound.NewResolver(cfg.Outbound.Resolver),
		Inbound: inbound.Options{
			Hostname: cfg.Hostname, Domains: cfg.Domains,
			AllowUnalignedOwnDomain: !cfg.SMTP.ProtectOwnDomains,
		},
		DNSBL: cfg.SMTP.DNSBL, Timeout: cfg.SMTP.CheckTimeout, Logger: s.log,
	}
	if cfg.Spam.RspamdURL != "" {
		rc, err := rspamd.New(rspamd.Options{
			URL: cfg.Spam.RspamdURL, ControllerURL: cfg.Spam.RspamdControllerURL,
			Password: cfg.Spam.RspamdPassword, Timeout: cfg.Spam.RspamdTimeout, Logger: s.log,
		})
		if err != nil {
			return err
		}
		o.Rspamd = rc
	}
	s.checks = mda.NewChecks(o)
	if cfg.Spam.JunkFilter {
		s.junk = junk.New(junk.Options{MinTrained: cfg.Spam.JunkMinTrained, Threshold: cfg.Spam.JunkThreshold})
	}
	return nil
}

func newOutbound(cfg *config.Config, log *slog.Logger, tlsReports outbound.TLSReporter, limiter outbound.Limiter) (*outbound.Client, error) {
	if err := ensureDKIMKeys(cfg, log); err != nil {
		return nil, err
	}
	signer, err := dkim.LoadSigner(cfg.DKIMDir(), cfg.Outbound.DKIMSelector, cfg.Domains)
	if err != nil {
		return nil, err
	}
	var password string
	if f := cfg.Outbound.SmarthostPasswordFile; f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("smarthost password: %w", err)
		}
		password = trimNewline(string(b))
	}
	opts := outbound.Options{
		Hostname: cfg.Hostname, Resolver: outbound.NewResolver(cfg.Outbound.Resolver), Port: cfg.Outbound.Port,
		ConnectTimeout: cfg.Outbound.ConnectTimeout, CommandTimeout: cfg.Outbound.CommandTimeout,
		Smarthost: cfg.Outbound.Smarthost, SmarthostTLS: cfg.Outbound.SmarthostTLS,
		SmarthostUsername: cfg.Outbound.SmarthostUsername, SmarthostPassword: password,
		LocalAddrs: localMX(cfg), Signer: signer, Logger: log, TLSReports: tlsReports, Limiter: limiter,
	}
	if err := outboundTLS(cfg, log, &opts); err != nil {
		return nil, err
	}
	return outbound.New(opts), nil
}

func (s *server) buildFrontEnds() {
	cfg, tlsCfg := s.cfg, s.tls.Config()
	auth := s.countLogins(&authAdapter{Authenticator: &accounts.Authenticator{DB: s.accounts, Throttle: accounts.NewThrottle(), Logger: s.log}, db: s.accounts})
	// RCPT TO:<Postmaster> (no domain) goes to postmaster@ the first
	// domain, which the MDA resolves like any postmaster@ address. (Load
	// requires a domain; "" would mean postmaster@hostname.)
	postmaster := ""
	if len(cfg.Domains) > 0 {
		postmaster = "postmaster@" + cfg.Domains[0]
	}
	s.mx = smtpd.NewServer(smtpd.Options{
		Role: smtpd.RoleMX, Hostname: cfg.Hostname, TLSConfig: tlsCfg,
		MaxMessageBytes: int64(cfg.SMTP.MaxMessageSize), MaxRecipients: cfg.SMTP.MaxRecipients,
		MaxConnections: cfg.SMTP.MaxConnections, MaxConnectionsPerIP: cfg.SMTP.MaxConnectionsPerIP,
		IdleTimeout: cfg.SMTP.IdleTimeout, MessagesPerMinutePerIP: cfg.SMTP.MessagesPerMinutePerIP,
		TrustedNetworks: cfg.SMTP.TrustedPrefixes(), Postmaster: postmaster, Checks: s.checks,
		Recipients: s.mda, Delivery: s.countLocal(s.mda), Metrics: s.smtpMetrics(), Logger: s.log,
	})
	s.submission = smtpd.NewServer(smtpd.Options{
		Role: smtpd.RoleSubmission, Hostname: cfg.Hostname, TLSConfig: tlsCfg,
		MaxMessageBytes: int64(cfg.Submission.MaxMessageSize), MaxRecipients: cfg.Submission.MaxRecipients,
		MaxConnections: cfg.Submission.MaxConnections, MaxConnectionsPerIP: cfg.Submission.MaxConnectionsPerIP,
		IdleTimeout: cfg.Submission.IdleTimeout, MaxMessagesPerHour: cfg.Submission.MaxMessagesPerHour,
		Postmaster: postmaster,
		Recipients: s.mda, Delivery: s.countLocal(s.mda.Relaying()), Auth: auth, Suppression: s.suppress, Metrics: s.smtpMetrics(), Logger: s.log,
	})
	s.imap = imapd.New(imapd.Options{
		Store: s.store, Auth: auth, TLSConfig: tlsCfg, Hostname: cfg.Hostname,
		AppendLimit: int64(cfg.IMAP.AppendLimit), MaxConnections: cfg.IMAP.MaxConnections,
		MaxConnectionsPerIP: cfg.IMAP.MaxConnectionsPerIP, IdleTimeout: cfg.IMAP.IdleTimeout,
		Trainer: newTrainer(cfg, s.junk, s.log), Logger: s.log.With("role", "imap"), Version: version,
	})
	s.pop3 = pop3d.New(pop3d.Options{
		Store: s.store, Auth: auth, TLSConfig: tlsCfg, Hostname: cfg.Hostname,
		MaxConnections: cfg.POP3.MaxConnections, MaxConnectionsPerIP: cfg.POP3.MaxConnectionsPerIP,
		IdleTimeout: cfg.POP3.IdleTimeout, Logger: s.log.With("role", "pop3"),
	})
}

// authAdapter gives smtpd its Auth: the shared, throttled login plus the
// sender binding.
type authAdapter struct {
	*accounts.Authenticator
	db *accounts.DB
}

func (a *authAdapter) CanSendAs(u *accounts.User, addr string) bool { return a.db.CanSendAs(u, addr) }

// listen binds every configured address before anything is served, so a
// port in use is a start-up error, not a half-started server.
func (s *server) listen() error {
	type role struct {
		name     string
		addrs    []string
		serve    func(net.Listener) error
		serveTLS func(net.Listener) error
		tlsAddrs []string
	}
	cfg := s.cfg
	roles := []role{
		{name: "smtp", addrs: cfg.SMTP.Listen, serve: s.mx.Serve},
		{name: "submission", addrs: cfg.Submission.Listen, serve: s.submission.Serve, tlsAddrs: cfg.Submission.TLSListen, serveTLS: s.submission.ServeTLS},
		{name: "imap", addrs: cfg.IMAP.Listen, serve: s.imap.Serve, tlsAddrs: cfg.IMAP.TLSListen, serveTLS: s.imap.ServeTLS},
		{name: "pop3", addrs: cfg.POP3.Listen, serve: s.pop3.Serve, tlsAddrs: cfg.POP3.TLSListen, serveTLS: s.pop3.ServeTLS},
	}
	for _, r := range roles {
		for _, a := range r.addrs {
			if err := s.bind(r.name, a, r.serve); err != nil {
				return err
			}
		}
		for _, a := range r.tlsAddrs {
			if err := s.bind(r.name+"s", a, r.serveTLS); err != nil {
				return err
			}
		}
	}
	if err := s.listenWeb(); err != nil {
		return err
	}
	return s.listenMetrics()
}

func (s *server) bind(role, addr string, serve func(net.Listener) error) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return listenError(role, addr, err)
	}
	ln = s.countConnections(role, ln)
	s.listeners = append(s.listeners, boundListener{role: role, ln: ln, serve: serve})
	return nil
}

func (s *server) closeListeners() {
	for _, l := range s.listeners {
		l.ln.Close()
	}
}

// run serves until ctx is cancelled (SIGTERM), then drains: listeners stop
// accepting, transactions in flight get shutdownGrace to finish.
func (s *server) run(ctx context.Context) error {
	qctx, cancelQueue := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := s.queue.Run(qctx, s.countBounces(s.mda.Relaying())); err != nil && !errors.Is(err, context.Canceled) {
			s.log.Error("queue stopped", "err", err)
		}
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.runTLSReports(qctx)
	}()
	serveErr := make(chan error, len(s.listeners))
	for _, l := range s.listeners {
		s.log.Info("listening", "role", l.role, "addr", l.ln.Addr().String())
		go func() {
			if err := l.serve(l.ln); err != nil && !isClosedErr(err) {
				serveErr <- fmt.Errorf("%s on %s: %w", l.role, l.ln.Addr(), err)
			}
		}()
	}
	go s.tls.RunACME(ctx) // once the challenge listeners are up; returns at once when ACME is off
	var runErr error
	select {
	case <-ctx.Done():
		s.log.Info("shutting down", "grace", shutdownGrace)
	case runErr = <-serveErr:
		s.log.Error("listener failed, shutting down", "err", runErr)
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	var swg sync.WaitGroup
	for _, sh := range []func(context.Context) error{s.mx.Shutdown, s.submission.Shutdown, s.imap.Shutdown, s.pop3.Shutdown, s.web.Shutdown, s.shutdownMetrics} {
		swg.Add(1)
		go func() {
			defer swg.Done()
			if err := sh(sctx); err != nil && !isClosedErr(err) {
				s.log.Warn("shutdown", "err", err)
			}
		}()
	}
	swg.Wait()
	cancelQueue()
	wg.Wait()
	if err := s.queue.Close(); err != nil {
		s.log.Warn("close queue", "err", err)
	}
	s.outbound.Close()
	s.log.Info("stopped")
	return runErr
}

func (s *server) reload() {
	s.log.Info("SIGHUP: reloading accounts and certificates")
	if err := s.accounts.Reload(); err != nil {
		s.log.Error("reload accounts", "err", err)
	}
	if err := s.tls.Reload(); err != nil {
		s.log.Error("reload certificates", "err", err)
	}
}

func isClosedErr(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, context.Canceled) ||
		errors.Is(err, smtpd.ErrServerClosed) || errors.Is(err, imapd.ErrServerClosed) || errors.Is(err, pop3d.ErrServerClosed)
}

// localMX returns the test outbound uses to skip an MX that is this very
// server: an address our MX role listens on, at the port outbound dials.
// (A loopback MX is not ours by itself: tests stand remote MTAs up there.)
func localMX(cfg *config.Config) func(ip net.IP) bool {
	return func(ip net.IP) bool {
		for _, a := range cfg.SMTP.Listen {
			host, port, err := net.SplitHostPort(a)
			if err != nil || port != strconv.Itoa(cfg.Outbound.Port) {
				continue
			}
			lip := net.ParseIP(host)
			if lip == nil || lip.IsUnspecified() {
				if isInterfaceAddr(ip) {
					return true
				}
				continue
			}
			if lip.Equal(ip) {
				return true
			}
		}
		return false
	}
}

func isInterfaceAddr(ip net.IP) bool {
	if ip.IsLoopback() {
		return true
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
			return true
		}
	}
	return false
}

func trimNewline(s string) string {
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == '\r') {
		s = s[:len(s)-1]
	}
	return s
}
