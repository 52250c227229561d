package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"postie/accounts"
	"postie/config"
	"postie/outbound"
	"postie/tlsrpt"
)

// tlsrptDir is where the TLS results of outbound sessions are kept until
// they are reported: data_dir/tlsrpt.
func tlsrptDir(cfg *config.Config) string { return filepath.Join(cfg.DataDir, "tlsrpt") }

// reportFrom is the address TLS reports come from: postmaster at our
// first domain, whose DKIM key signs them.
func reportFrom(cfg *config.Config) string {
	if len(cfg.Domains) > 0 {
		return "postmaster@" + cfg.Domains[0]
	}
	return "postmaster@" + cfg.Hostname
}

// newTLSRecorder opens the recorder outbound delivery reports each TLS
// session to.
func newTLSRecorder(cfg *config.Config, log *slog.Logger) (*tlsrpt.Recorder, error) {
	return tlsrpt.NewRecorder(tlsrpt.Options{Dir: tlsrptDir(cfg), Logger: log})
}

// newTLSReporter builds the daily report sender; mailer is the router's
// relaying delivery.
func newTLSReporter(cfg *config.Config, log *slog.Logger, mailer tlsrpt.Mailer) (*tlsrpt.Reporter, error) {
	return tlsrpt.NewReporter(tlsrpt.ReporterOptions{
		Dir: tlsrptDir(cfg), Hostname: cfg.Hostname, From: reportFrom(cfg),
		Resolver: outbound.NewResolver(cfg.Outbound.Resolver), Mailer: mailer, Logger: log,
	})
}

// runTLSReports records and reports until ctx ends (server.run's goroutine).
func (s *server) runTLSReports(ctx context.Context) {
	rep, err := newTLSReporter(s.cfg, s.log, s.mda.Relaying())
	if err != nil {
		s.log.Error("tlsrpt: no daily reports", "err", err)
	}
	tlsrpt.Run(ctx, s.tlsrpt, rep)
}

// cmdTLSRPT is `postie tlsrpt send [-today]`: send the TLS reports of the
// days that are over now, rather than at the server's next hourly check;
// -today also reports the current day so far (then that day's later
// sessions to the same domains go unreported).
func cmdTLSRPT(e *env, args []string) error {
	if len(args) == 0 || args[0] != "send" {
		return usageError{"tlsrpt needs a subcommand: send"}
	}
	fs, cfgPath := newFlags(e, "tlsrpt send")
	today := fs.Bool("today", false, "also report the current UTC day so far")
	pos, err := parseFlags(fs, args[1:])
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageError{"tlsrpt send takes no arguments"}
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	log := newLogger(e, cfg)
	db, err := accounts.Open(cfg.AccountsFile(), cfg.Domains, log)
	if err != nil {
		return err
	}
	m, done := oneShotRouter(cfg, db, log)
	defer done()
	if err := os.MkdirAll(tlsrptDir(cfg), 0o700); err != nil {
		return err
	}
	rep, err := newTLSReporter(cfg, log, m.Relaying())
	if err != nil {
		return err
	}
	n, err := rep.Send(context.Background(), *today)
	fmt.Fprintf(e.stdout, "%d report(s) sent\n", n)
	return err
}
