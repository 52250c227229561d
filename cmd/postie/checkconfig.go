package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"postie/config"
	"postie/dkim"
)

// checkFindings is what check-config found beyond the file's syntax:
// errors are what `serve` would refuse to start with; warnings are what
// it would start with but probably should not.
type checkFindings struct {
	warnings []string
	errs     []error
}

func (f *checkFindings) warnf(format string, args ...any) {
	f.warnings = append(f.warnings, fmt.Sprintf(format, args...))
}

func (f *checkFindings) errorf(format string, args ...any) {
	f.errs = append(f.errs, fmt.Errorf(format, args...))
}

// checkLoaded checks what config.Load cannot: the files the configuration
// names, and whether its names and ports suit a server on the Internet.
func checkLoaded(cfg *config.Config) *checkFindings {
	f := &checkFindings{}
	if w := implausibleHostname(cfg.Hostname); w != "" {
		f.warnf("hostname %q %s; other servers and clients look it up by this name", cfg.Hostname, w)
	}
	checkCertificate(f, cfg)
	checkACME(f, cfg)
	checkMetricsExposure(f, cfg)
	if p := cfg.Outbound.SmarthostPasswordFile; p != "" {
		if _, err := os.ReadFile(p); err != nil {
			f.errorf("outbound.smarthost_password_file: %v", err)
		}
	}
	if fi, err := os.Stat(cfg.DataDir); err == nil && !fi.IsDir() {
		f.errorf("data_dir %s: not a directory", cfg.DataDir)
	}
	// Key files that exist must parse; missing ones serve makes at start.
	if _, err := dkim.LoadSigner(cfg.DKIMDir(), cfg.Outbound.DKIMSelector, cfg.Domains); err != nil {
		f.errorf("%v", err)
	}
	if os.Geteuid() != 0 {
		for _, a := range allListeners(cfg) {
			if privilegedPort(a) {
				f.warnf("listen %s: %s", a, privilegedPortHint)
				break
			}
		}
	}
	return f
}

// checkCertificate loads tls.cert_file and tls.key_file as a pair, as
// serve does, and warns about a certificate that has expired or does not
// name the hostname.
func checkCertificate(f *checkFindings, cfg *config.Config) {
	if cfg.TLS.CertFile == "" {
		return // serve makes and uses a self-signed certificate
	}
	pair, err := tls.LoadX509KeyPair(cfg.TLS.CertFile, cfg.TLS.KeyFile)
	if err != nil {
		f.errorf("tls.cert_file %s and tls.key_file %s: %v", cfg.TLS.CertFile, cfg.TLS.KeyFile, err)
		return
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		f.errorf("tls.cert_file %s: %v", cfg.TLS.CertFile, err)
		return
	}
	if now := time.Now(); now.After(leaf.NotAfter) {
		f.warnf("tls.cert_file %s expired on %s", cfg.TLS.CertFile, leaf.NotAfter.UTC().Format(time.DateOnly))
	}
	if err := leaf.VerifyHostname(cfg.Hostname); err != nil {
		f.warnf("tls.cert_file %s is not valid for hostname %s: %v", cfg.TLS.CertFile, cfg.Hostname, err)
	}
}

// implausibleHostname says why name cannot be a public host name, or "".
func implausibleHostname(name string) string {
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	if net.ParseIP(strings.Trim(name, "[]")) != nil {
		return "is an IP address, not a host name"
	}
	if name == "localhost" || strings.HasSuffix(name, ".localhost") {
		return "is this machine's local name"
	}
	dot := strings.LastIndexByte(name, '.')
	if dot < 0 {
		return "is a single label, not a fully qualified name"
	}
	switch tld := name[dot+1:]; tld {
	case "local", "test", "example", "invalid", "internal", "lan", "home", "localdomain":
		return fmt.Sprintf("is under .%s, which is not a public top-level domain", tld)
	}
	return ""
}

// allListeners is every address serve would bind.
func allListeners(cfg *config.Config) []string {
	var all []string
	for _, l := range [][]string{
		cfg.SMTP.Listen, cfg.Submission.Listen, cfg.Submission.TLSListen,
		cfg.IMAP.Listen, cfg.IMAP.TLSListen, cfg.POP3.Listen, cfg.POP3.TLSListen,
		cfg.HTTP.Listen, cfg.HTTP.TLSListen,
	} {
		all = append(all, l...)
	}
	return all
}

// report prints the warnings to stderr and returns the errors, joined.
func (f *checkFindings) report(e *env) error {
	for _, w := range f.warnings {
		fmt.Fprintf(e.stderr, "warning: %s\n", w)
	}
	return errors.Join(f.errs...)
}
