package main

import (
	"bufio"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"postie/accounts"
	"postie/config"
	"postie/contrib"
	"postie/dkim"
	"postie/envelope"
)

// `postie init` sets a fresh machine up in one command: the config file
// (production ports, ACME on), the first account with a generated
// password and the postmaster@ and abuse@ aliases, the DKIM key, and, when
// asked, the systemd unit; then it prints the DNS records to publish and
// the settings for mail clients. It never overwrites a config file.

const (
	defaultInitConfig  = "/etc/postie/config.toml"
	defaultInitDataDir = "/var/lib/postie"
	systemdUnitDir     = "/etc/systemd/system"
	serviceUser        = "postie"
)

type initOptions struct {
	domain, hostname, user, acmeEmail string
	configPath, dataDir               string
	root                              string // a prefix for every path written (packaging, tests)
	systemd                           bool
	ips                               ipFlags
}

func cmdInit(e *env, args []string) error {
	fs := flag.NewFlagSet("init", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	var o initOptions
	fs.StringVar(&o.domain, "domain", "", "the mail `domain` (the part after @)")
	fs.StringVar(&o.hostname, "hostname", "", "this server's public host `name` (default mail.DOMAIN)")
	fs.StringVar(&o.user, "user", "", "the first account's `address` (default: your login name, else admin, @DOMAIN)")
	fs.StringVar(&o.acmeEmail, "acme-email", "", "contact `address` for Let's Encrypt (default: the first account)")
	fs.StringVar(&o.configPath, "config", defaultInitConfig, "the configuration `file` to write")
	fs.StringVar(&o.dataDir, "data-dir", defaultInitDataDir, "where mail, the queue, accounts and keys will live")
	fs.StringVar(&o.root, "root", "", "write every file under this `directory` instead of / (packaging and tests); the config names the paths without it")
	fs.BoolVar(&o.systemd, "systemd", false, "install the systemd unit in "+systemdUnitDir+" (and, as root, make the postie user and give it the data)")
	fs.Var(&o.ips, "ip", "a public `address` of the host, for the A/AAAA records printed (repeatable)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{"init takes flags only"}
	}
	if e.stdinIsTerm {
		if err := askInit(e, &o); err != nil {
			return err
		}
	}
	if err := o.complete(); err != nil {
		return err
	}
	return runInit(e, &o)
}

// askInit asks, on a terminal, for what the flags left out.
func askInit(e *env, o *initOptions) error {
	in := bufio.NewReader(e.stdin)
	ask := func(v *string, prompt, def string) error {
		if *v != "" {
			return nil
		}
		if def != "" {
			prompt += " [" + def + "]"
		}
		fmt.Fprint(e.stdout, prompt+": ")
		line, err := in.ReadString('\n')
		if err != nil && (line == "" || !errors.Is(err, io.EOF)) {
			return fmt.Errorf("reading the answer: %w", err)
		}
		if *v = strings.TrimSpace(line); *v == "" {
			*v = def
		}
		return nil
	}
	fmt.Fprintln(e.stdout, "Setting up Postie. Press Enter to take the default in brackets.")
	if err := ask(&o.domain, "Mail domain (the part after @, e.g. example.com)", ""); err != nil {
		return err
	}
	o.domain = envelope.CanonDomain(o.domain)
	if o.domain == "" {
		return usageError{"a mail domain is needed"}
	}
	if err := ask(&o.hostname, "This server's host name (its DNS name)", "mail."+o.domain); err != nil {
		return err
	}
	if err := ask(&o.user, "Your mail address (the first account)", defaultLocalPart()+"@"+o.domain); err != nil {
		return err
	}
	return ask(&o.acmeEmail, "Contact address for Let's Encrypt", o.user)
}

// complete fills the defaults and checks what was given.
func (o *initOptions) complete() error {
	o.domain = envelope.CanonDomain(o.domain)
	if o.domain == "" {
		return usageError{"init needs -domain (or run it in a terminal, which asks)"}
	}
	if o.hostname == "" {
		o.hostname = "mail." + o.domain
	}
	o.hostname = envelope.CanonDomain(o.hostname)
	if o.user == "" {
		o.user = defaultLocalPart() + "@" + o.domain
	}
	if err := envelope.Validate(o.user); err != nil {
		return usageError{fmt.Sprintf("-user %q: not a mail address", o.user)}
	}
	if _, d := envelope.Split(o.user); envelope.CanonDomain(d) != o.domain {
		return usageError{fmt.Sprintf("-user %s: not at %s", o.user, o.domain)}
	}
	if o.acmeEmail == "" {
		o.acmeEmail = o.user
	}
	var err error
	if o.root != "" {
		if o.root, err = filepath.Abs(o.root); err != nil {
			return err
		}
	}
	// Relative paths would be read against the config's directory.
	for _, p := range []*string{&o.configPath, &o.dataDir} {
		if *p, err = filepath.Abs(*p); err != nil {
			return err
		}
	}
	return nil
}

// defaultLocalPart is the login name of who runs init (through sudo too),
// when it makes a plausible address, else "admin".
func defaultLocalPart() string {
	for _, v := range []string{os.Getenv("SUDO_USER"), os.Getenv("USER")} {
		if v != "" && v != "root" && envelope.Validate(v+"@example.com") == nil && !strings.Contains(v, "+") {
			return strings.ToLower(v)
		}
	}
	return "admin"
}

// rooted is path p under the -root prefix.
func (o *initOptions) rooted(p string) string {
	if o.root == "" {
		return p
	}
	return filepath.Join(o.root, p)
}

func runInit(e *env, o *initOptions) error {
	cfgFile := o.rooted(o.configPath)
	if _, err := os.Lstat(cfgFile); err == nil {
		return fmt.Errorf("%s already exists: init never overwrites a configuration (edit it, or move it away and run init again)", cfgFile)
	}
	if err := os.MkdirAll(filepath.Dir(cfgFile), 0o755); err != nil {
		return err
	}
	if err := writeNewFile(cfgFile, []byte(initConfig(o)), 0o640); err != nil {
		return err
	}
	cfg, err := config.Load(cfgFile)
	if err != nil {
		os.Remove(cfgFile)
		return fmt.Errorf("the configuration made from your answers does not load (nothing kept): %w", err)
	}
	fmt.Fprintf(e.stdout, "wrote %s\n", cfgFile)
	// The files the server will use, under -root.
	wcfg := *cfg
	wcfg.DataDir = o.rooted(cfg.DataDir)
	if err := os.MkdirAll(wcfg.DataDir, 0o700); err != nil {
		return err
	}
	pw, err := initAccounts(e, o, &wcfg)
	if err != nil {
		return err
	}
	made, err := dkim.EnsureKeys(wcfg.DKIMDir(), cfg.Outbound.DKIMSelector, cfg.Domains)
	if err != nil {
		return fmt.Errorf("dkim keys: %w", err)
	}
	for _, k := range made {
		fmt.Fprintf(e.stdout, "made the DKIM key of %s (%s)\n", k.Domain, k.TXTName)
	}
	if o.systemd {
		if err := installService(e, o); err != nil {
			return err
		}
	}
	for _, w := range checkLoaded(&wcfg).warnings {
		fmt.Fprintf(e.stdout, "note: %s\n", w)
	}
	fmt.Fprintln(e.stdout)
	dopts, err := dnsOptions(&wcfg, o.ips, nil)
	if err != nil {
		return err
	}
	printZone(e, dopts)
	fmt.Fprintln(e.stdout)
	printClientSettings(e.stdout, cfg, o.user)
	printNextSteps(e, o)
	if pw != "" {
		fmt.Fprintf(e.stdout, "\nThe first account: %s\n  password: %s\n(shown only now: note it, or change it with `postie user passwd %s`)\n", o.user, pw, o.user)
	}
	return nil
}

// initAccounts makes the first account and the postmaster@ and abuse@
// aliases to it, and returns its password ("" when the account was
// already there: its password stays).
func initAccounts(e *env, o *initOptions, cfg *config.Config) (string, error) {
	admin := &accounts.Admin{Path: cfg.AccountsFile(), Domains: cfg.Domains}
	pw := rand.Text()
	switch err := admin.AddUser(o.user, pw, 0); {
	case errors.Is(err, accounts.ErrExists):
		fmt.Fprintf(e.stdout, "%s already exists: its password is unchanged\n", o.user)
		pw = ""
	case err != nil:
		return "", err
	default:
		fmt.Fprintf(e.stdout, "added %s\n", o.user)
	}
	for _, local := range []string{"postmaster", "abuse"} {
		alias := local + "@" + o.domain
		if envelope.Key(alias) == envelope.Key(o.user) {
			continue
		}
		if err := admin.AddAlias(alias, []string{o.user}); err != nil {
			if errors.Is(err, accounts.ErrExists) {
				continue // a user of that name: it gets its own mail
			}
			return pw, err
		}
		fmt.Fprintf(e.stdout, "%s now goes to %s\n", alias, o.user)
	}
	return pw, nil
}

// writeNewFile creates path with data; an existing file is an error.
func writeNewFile(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s already exists: init never overwrites it", path)
		}
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}

// initConfig is the configuration file init writes: production ports,
// ACME on; every other key keeps its default (config.toml.example lists
// them all).
func initConfig(o *initOptions) string {
	q := strconv.Quote
	return `# Postie configuration, written by ` + "`postie init`" + `.
# Every key not set here takes its default; config.toml.example in the
# source lists them all, with what they do. ` + "`postie check-config`" + ` checks
# this file; SIGHUP (systemctl reload postie) reloads accounts and
# certificates, anything else here needs a restart.

hostname = ` + q(o.hostname) + `        # needs A/AAAA records, and the PTR of its address
domains = [` + q(o.domain) + `]           # each needs an MX record pointing at hostname
data_dir = ` + q(o.dataDir) + `       # mail, queue, accounts, DKIM keys, certificates: back it up

[smtp]
listen = [":25"]                 # mail from other servers

[submission]
listen = [":587"]                # mail clients send here (STARTTLS), after logging in
tls_listen = [":465"]            # the same with implicit TLS

[imap]
listen = [":143"]                # STARTTLS
tls_listen = [":993"]            # implicit TLS

[pop3]
listen = [":110"]                # STARTTLS
tls_listen = [":995"]            # implicit TLS

# Client setup (Thunderbird, Outlook, Apple), the MTA-STS policy and the
# ACME challenges.
[http]
listen = [":80"]
tls_listen = [":443"]

# Certificates from Let's Encrypt, obtained and renewed by themselves once
# DNS points hostname (and autoconfig., autodiscover., mta-sts.<domain>)
# here and ports 80 and 443 are open; a self-signed one serves until then.
[tls]
acme = true
acme_email = ` + q(o.acmeEmail) + `

# Uncomment to relay outgoing mail through your provider when outbound
# port 25 is blocked (see the README):
# [outbound]
# smarthost = "smtp.provider.example:587"
# smarthost_username = "user"
# smarthost_password_file = "/etc/postie/smarthost-password"

# Prometheus metrics; keep them on loopback or a private network.
[metrics]
listen = []                      # e.g. ["127.0.0.1:9180"]
`
}

// printClientSettings prints what a mail client needs, from the first
// listener of each role.
func printClientSettings(w io.Writer, cfg *config.Config, addr string) {
	host := cfg.AdvertisedHost()
	fmt.Fprintf(w, "Mail client settings (for every account; the username is the full address, e.g. %s):\n\n", addr)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PROTOCOL\tSERVER\tPORT\tSECURITY")
	for _, r := range []struct {
		name, sec string
		listen    []string
		def       uint16
	}{
		{"IMAP (incoming)", "SSL/TLS", cfg.IMAP.TLSListen, 993},
		{"IMAP (incoming)", "STARTTLS", cfg.IMAP.Listen, 143},
		{"POP3 (incoming)", "SSL/TLS", cfg.POP3.TLSListen, 995},
		{"POP3 (incoming)", "STARTTLS", cfg.POP3.Listen, 110},
		{"SMTP (outgoing)", "SSL/TLS", cfg.Submission.TLSListen, 465},
		{"SMTP (outgoing)", "STARTTLS", cfg.Submission.Listen, 587},
	} {
		if p := firstPort(r.listen, r.def); p != 0 {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", r.name, host, p, r.sec)
		}
	}
	tw.Flush()
	fmt.Fprintln(w, "\nPassword: the account's (\"normal password\"); outgoing mail needs the login too.")
	if len(cfg.HTTP.Listen)+len(cfg.HTTP.TLSListen) > 0 && len(cfg.Domains) > 0 {
		d := cfg.Domains[0]
		fmt.Fprintf(w, "Thunderbird, Outlook and iOS/macOS Mail set themselves up from the address and password\n"+
			"once the autoconfig/autodiscover records exist; iOS profile: https://autoconfig.%s/apple/mobileconfig?email=%s\n", d, addr)
	}
}

func printNextSteps(e *env, o *initOptions) {
	fmt.Fprintf(e.stdout, "\nNext:\n"+
		"  1. Publish the DNS records above, and ask your hosting provider to set the PTR.\n"+
		"  2. Open ports 25, 587, 465, 143, 993, 110, 995, 80 and 443.\n"+
		"  3. Start it:")
	if o.systemd {
		fmt.Fprint(e.stdout, " systemctl daemon-reload && systemctl enable --now postie\n")
	} else {
		fmt.Fprintf(e.stdout, " postie serve -config %s\n", o.configPath)
	}
	fmt.Fprintln(e.stdout, "  4. Check DNS: postie dns check -config "+o.configPath)
}

// installService writes the systemd unit (with the paths of this
// install) and, as root on the real system, makes the postie user and
// gives it the data directory and read access to the config.
func installService(e *env, o *initOptions) error {
	unit := contrib.SystemdUnit
	unit = strings.ReplaceAll(unit, "-config "+defaultInitConfig, "-config "+o.configPath)
	unit = strings.ReplaceAll(unit, "ReadWritePaths="+defaultInitDataDir, "ReadWritePaths="+o.dataDir)
	dir := o.rooted(systemdUnitDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	path := filepath.Join(dir, "postie.service")
	if err := writeNewFile(path, []byte(unit), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "installed %s (it runs /usr/local/bin/postie: put the binary there)\n", path)
	if o.root != "" || os.Geteuid() != 0 {
		fmt.Fprintf(e.stdout, "as root, then: useradd --system --home-dir %s --shell /usr/sbin/nologin %s; chown -R %s: %s; chgrp %s %s\n",
			o.dataDir, serviceUser, serviceUser, o.dataDir, serviceUser, o.configPath)
		return nil
	}
	return giveToServiceUser(e, o)
}

// giveToServiceUser makes the system user postie if it is missing, and
// makes the data directory its own and the config readable by its group.
func giveToServiceUser(e *env, o *initOptions) error {
	if _, err := user.Lookup(serviceUser); err != nil {
		cmd := exec.Command("useradd", "--system", "--home-dir", o.dataDir, "--shell", "/usr/sbin/nologin", serviceUser)
		cmd.Stdout, cmd.Stderr = e.stdout, e.stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("making the user %s: %w", serviceUser, err)
		}
		fmt.Fprintf(e.stdout, "made the system user %s\n", serviceUser)
	}
	u, err := user.Lookup(serviceUser)
	if err != nil {
		return err
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("user %s: %w", serviceUser, err)
	}
	err = filepath.WalkDir(o.dataDir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		return fmt.Errorf("giving %s to %s: %w", o.dataDir, serviceUser, err)
	}
	if err := os.Chown(o.configPath, 0, gid); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s belongs to %s; %s is readable by its group\n", o.dataDir, serviceUser, o.configPath)
	return nil
}
