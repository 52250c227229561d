// Package config reads Postie's one TOML file: the schema, the defaults, and
// a validation that reports every mistake with the file, line and key.
package config

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"
)

// Config is the whole configuration. Load returns it with defaults filled
// in, relative paths made absolute and every value validated.
type Config struct {
	Path string `toml:"-"` // the file it was loaded from (absolute)

	Hostname string   `toml:"hostname"` // banner, HELO, Received; lower case
	DataDir  string   `toml:"data_dir"`
	Domains  []string `toml:"domains"` // lower case, at least one

	// Postmaster receives postmaster@<any of our domains> when no user or
	// alias has that address. "" means the first user of that domain.
	Postmaster string `toml:"postmaster"`

	Log        Log        `toml:"log"`
	SMTP       SMTP       `toml:"smtp"`
	Submission Submission `toml:"submission"`
	IMAP       IMAP       `toml:"imap"`
	POP3       POP3       `toml:"pop3"`
	TLS        TLS        `toml:"tls"`
	Queue      Queue      `toml:"queue"`
	Outbound   Outbound   `toml:"outbound"`
	Spam       Spam       `toml:"spam"`
	HTTP       HTTP       `toml:"http"`
	Metrics    Metrics    `toml:"metrics"`
}

// Metrics is the Prometheus endpoint.
type Metrics struct {
	// Listen serves GET /metrics (Prometheus text format) on each address;
	// empty (the default) serves none. Keep it on loopback or a private
	// network: the figures are not secret, but they are not for the world.
	Listen []string `toml:"listen"`
}

// HTTP is the web role: client autoconfiguration (Thunderbird, Outlook,
// Apple) and the MTA-STS policy, served by package webconf.
type HTTP struct {
	Listen    []string `toml:"listen"`     // plain HTTP; production [":80"]
	TLSListen []string `toml:"tls_listen"` // HTTPS with [tls]'s certificate; production [":443"]
	// AdvertiseHost is the host name the documents tell clients to
	// connect to; "" means Hostname (set it only for NAT and the like).
	AdvertiseHost string `toml:"advertise_host"`
	// MTASTSMode is the MTA-STS policy's mode: "testing" (default),
	// "enforce" or "none".
	MTASTSMode string `toml:"mta_sts_mode"`
	// MTASTSMaxAge is the policy's max_age (default 168h, one week; at
	// most 31557600 seconds, RFC 8461).
	MTASTSMaxAge time.Duration `toml:"mta_sts_max_age"`
}

// AdvertisedHost is the host name client documents name:
// http.advertise_host, else hostname.
func (c *Config) AdvertisedHost() string {
	if c.HTTP.AdvertiseHost != "" {
		return c.HTTP.AdvertiseHost
	}
	return c.Hostname
}

// Spam configures the junk filter and the optional rspamd.
type Spam struct {
	// JunkFilter turns the built-in per-user classifier on (default true).
	JunkFilter bool `toml:"junk_filter"`
	// JunkThreshold is the spam probability above which a message from a
	// sender with no history goes to Junk (default 0.95).
	JunkThreshold float64 `toml:"junk_threshold"`
	// JunkMinTrained is how many messages of each kind (junk and not) a
	// user must have trained before the word statistics decide (default 30).
	JunkMinTrained int `toml:"junk_min_trained"`
	// RspamdURL is rspamd's normal worker ("http://127.0.0.1:11333"); ""
	// leaves rspamd out.
	RspamdURL string `toml:"rspamd_url"`
	// RspamdControllerURL is its controller, for learning
	// ("http://127.0.0.1:11334"); "" leaves learning out.
	RspamdControllerURL string `toml:"rspamd_controller_url"`
	// RspamdPassword is the controller's password, if it has one.
	RspamdPassword string `toml:"rspamd_password"`
	// RspamdTimeout bounds one rspamd request (default 10s); a slow or
	// absent rspamd never refuses mail.
	RspamdTimeout time.Duration `toml:"rspamd_timeout"`
}

// Log configures the process log.
type Log struct {
	Level  string `toml:"level"`  // "debug", "info", "warn" or "error"
	Format string `toml:"format"` // "text" or "json"
}

// SMTP is the MX role: mail from other servers to our domains.
type SMTP struct {
	Listen                 []string      `toml:"listen"`
	MaxMessageSize         Size          `toml:"max_message_size"`
	MaxRecipients          int           `toml:"max_recipients"`
	MaxConnections         int           `toml:"max_connections"`
	MaxConnectionsPerIP    int           `toml:"max_connections_per_ip"`
	IdleTimeout            time.Duration `toml:"idle_timeout"`
	MessagesPerMinutePerIP int           `toml:"messages_per_minute_per_ip"` // 0: no limit
	// TrustedNetworks are client networks ("192.0.2.0/24", "::1/128", or
	// a single address) exempt from MessagesPerMinutePerIP. Load writes
	// them in canonical form; TrustedPrefixes parses them.
	TrustedNetworks []string `toml:"trusted_networks"`
	// DNSBL lists DNS blocklist zones ("zen.spamhaus.org"); a client listed
	// in any is refused at RCPT. Never applied to trusted networks.
	DNSBL []string `toml:"dnsbl"`
	// ProtectOwnDomains refuses mail from outside whose From: is at one of
	// our domains and does not pass DMARC alignment, record or not (our
	// users send through submission). Default true.
	ProtectOwnDomains bool `toml:"protect_own_domains"`
	// CheckTimeout bounds the DNS work of the checks on one message
	// (SPF, DKIM, DMARC); what is not answered by then is a temperror.
	CheckTimeout time.Duration `toml:"check_timeout"`
}

// TrustedPrefixes returns TrustedNetworks parsed (after Load they are all
// valid; anything unparsable is left out).
func (s *SMTP) TrustedPrefixes() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(s.TrustedNetworks))
	for _, n := range s.TrustedNetworks {
		if p, err := parseNetwork(n); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// Submission is the role our users send through (RFC 6409, RFC 8314).
type Submission struct {
	Listen              []string      `toml:"listen"`     // STARTTLS
	TLSListen           []string      `toml:"tls_listen"` // implicit TLS
	MaxMessageSize      Size          `toml:"max_message_size"`
	MaxRecipients       int           `toml:"max_recipients"`
	MaxConnections      int           `toml:"max_connections"`
	MaxConnectionsPerIP int           `toml:"max_connections_per_ip"`
	IdleTimeout         time.Duration `toml:"idle_timeout"`
	MaxMessagesPerHour  int           `toml:"max_messages_per_hour"` // per user, 0: no limit; users may override
}

// IMAP is the IMAP4 front-end.
type IMAP struct {
	Listen              []string      `toml:"listen"`
	TLSListen           []string      `toml:"tls_listen"`
	MaxConnections      int           `toml:"max_connections"`
	MaxConnectionsPerIP int           `toml:"max_connections_per_ip"`
	AppendLimit         Size          `toml:"append_limit"`
	IdleTimeout         time.Duration `toml:"idle_timeout"`
}

// POP3 is the POP3 front-end.
type POP3 struct {
	Listen              []string      `toml:"listen"`
	TLSListen           []string      `toml:"tls_listen"`
	MaxConnections      int           `toml:"max_connections"`
	MaxConnectionsPerIP int           `toml:"max_connections_per_ip"`
	IdleTimeout         time.Duration `toml:"idle_timeout"`
}

// TLS names the server certificate. Both empty: a self-signed certificate
// under TLSDir(); otherwise both must be set.
//
// With ACME on, certificates for hostname and, for each domain,
// mta-sts.<domain>, autoconfig.<domain> and autodiscover.<domain> are
// obtained and renewed from the ACME server; until one exists the
// configured or self-signed certificate is served.
type TLS struct {
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
	// ACME turns automatic certificates on (default false).
	ACME bool `toml:"acme"`
	// ACMEEmail is the contact address given to the ACME server ("" for none).
	ACMEEmail string `toml:"acme_email"`
	// ACMEDirectory is the ACME server's directory URL; the default is
	// Let's Encrypt's production directory (DefaultACMEDirectory).
	ACMEDirectory string `toml:"acme_directory"`
	// ACMECAFile is a PEM file of root certificates to trust for the ACME
	// server's own HTTPS (a private ACME server; tests use Pebble's); ""
	// means the system's roots.
	ACMECAFile string `toml:"acme_ca_file"`
}

// DefaultACMEDirectory is Let's Encrypt's production ACME directory.
const DefaultACMEDirectory = "https://acme-v02.api.letsencrypt.org/directory"

// Queue tunes the outbound spool's scheduler.
type Queue struct {
	MinRetry       time.Duration `toml:"min_retry"`     // first retry; doubles each attempt
	MaxRetry       time.Duration `toml:"max_retry"`     // ceiling of the backoff
	Lifetime       time.Duration `toml:"lifetime"`      // then the sender gets a bounce
	DelayWarning   time.Duration `toml:"delay_warning"` // 0: never
	MaxConcurrency int           `toml:"max_concurrency"`
	MaxPerDomain   int           `toml:"max_per_domain"` // connections per destination unless a throttle says otherwise
	// MessagesPerMinute is the default cap on messages per minute to one
	// destination domain (and to one MX host); 0 means no cap.
	MessagesPerMinute int `toml:"messages_per_minute"`
	// Throttles override the defaults for named destinations.
	Throttles []Throttle `toml:"throttle"`
}

// Throttle limits delivery to one destination: [[queue.throttle]].
type Throttle struct {
	// Domain is a recipient domain ("gmail.com") or an MX host name
	// ("gmail-smtp-in.l.google.com"); a leading "." matches every name
	// below it (".google.com"). Lower case.
	Domain string `toml:"domain"`
	// MessagesPerMinute caps messages per minute; 0 means no cap.
	MessagesPerMinute int `toml:"messages_per_minute"`
	// Connections caps concurrent connections; 0 means queue.max_per_domain.
	Connections int `toml:"connections"`
}

// Outbound configures delivery to remote servers.
type Outbound struct {
	Resolver              string        `toml:"resolver"`      // "host:port" of a DNS server, "" for the system's
	Smarthost             string        `toml:"smarthost"`     // "host:port", "" for direct MX delivery
	SmarthostTLS          string        `toml:"smarthost_tls"` // "starttls" or "tls"
	SmarthostUsername     string        `toml:"smarthost_username"`
	SmarthostPasswordFile string        `toml:"smarthost_password_file"`
	DKIMSelector          string        `toml:"dkim_selector"`
	ConnectTimeout        time.Duration `toml:"connect_timeout"`
	CommandTimeout        time.Duration `toml:"command_timeout"`
	Port                  int           `toml:"port"` // the remote SMTP port; changed only by tests and odd networks
	// CAFile is a PEM file of extra root certificates trusted when
	// verifying remote servers (MTA-STS, DANE-TA, smarthost): for tests
	// and private networks. "" means the system's roots only.
	CAFile string `toml:"ca_file"`
	// SourceIP and SourceIPv6 bind outgoing SMTP connections to one local
	// address of each family ("" lets the system choose). The PTR of each
	// should name hostname.
	SourceIP   string `toml:"source_ip"`
	SourceIPv6 string `toml:"source_ipv6"`
	// SuppressFor is how long a recipient that hard-bounced is refused at
	// submission (default 720h, 30 days; 0 turns the suppression list off).
	SuppressFor time.Duration `toml:"suppress_for"`
}

// Default returns a configuration with every default set, hostname
// "localhost", no domains and no listeners: a base for tests.
func Default() *Config {
	c := defaults()
	c.Hostname = "localhost"
	return c
}

// defaults is what Load starts from; hostname and domains are required, so
// they stay empty.
func defaults() *Config {
	return &Config{
		DataDir: "./data",
		Log:     Log{Level: "info", Format: "text"},
		SMTP: SMTP{
			MaxMessageSize:         25 * MB,
			MaxRecipients:          100,
			MaxConnections:         200,
			MaxConnectionsPerIP:    20,
			IdleTimeout:            5 * time.Minute,
			MessagesPerMinutePerIP: 120,
			TrustedNetworks:        []string{"127.0.0.1/32", "::1/128"},
			DNSBL:                  []string{},
			ProtectOwnDomains:      true,
			CheckTimeout:           20 * time.Second,
		},
		Submission: Submission{
			MaxMessageSize:      25 * MB,
			MaxRecipients:       100,
			MaxConnections:      100,
			MaxConnectionsPerIP: 20,
			IdleTimeout:         5 * time.Minute,
			MaxMessagesPerHour:  200,
		},
		IMAP: IMAP{
			MaxConnections:      1000,
			MaxConnectionsPerIP: 50,
			AppendLimit:         64 * MB,
			IdleTimeout:         30 * time.Minute,
		},
		POP3: POP3{
			MaxConnections:      200,
			MaxConnectionsPerIP: 20,
			IdleTimeout:         10 * time.Minute,
		},
		Queue: Queue{
			MinRetry:          5 * time.Minute,
			MaxRetry:          time.Hour,
			Lifetime:          120 * time.Hour,
			DelayWarning:      4 * time.Hour,
			MaxConcurrency:    20,
			MaxPerDomain:      4,
			MessagesPerMinute: 60,
			Throttles:         []Throttle{},
		},
		Spam: Spam{
			JunkFilter:     true,
			JunkThreshold:  0.95,
			JunkMinTrained: 30,
			RspamdTimeout:  10 * time.Second,
		},
		TLS: TLS{ACMEDirectory: DefaultACMEDirectory},
		HTTP: HTTP{
			MTASTSMode:   "testing",
			MTASTSMaxAge: 7 * 24 * time.Hour,
		},
		Outbound: Outbound{
			SmarthostTLS:   "starttls",
			DKIMSelector:   "postie",
			ConnectTimeout: 30 * time.Second,
			CommandTimeout: 5 * time.Minute,
			Port:           25,
			SuppressFor:    30 * 24 * time.Hour,
		},
		Metrics: Metrics{Listen: []string{}},
	}
}

// maxFileSize bounds what Load reads; a real configuration is a few KB.
const maxFileSize = 1 << 20

// Load reads the file at path, fills in defaults, resolves relative paths
// against the file's directory and validates the result. The error, if
// any, joins one *Error per problem found, in line order.
func Load(path string) (*Config, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("config: %s: larger than %d bytes", path, maxFileSize)
	}
	return parse(path, abs, string(data))
}

// parse does Load's work on the file's text; file is the name used in
// errors, abs the absolute path.
func parse(file, abs, text string) (*Config, error) {
	c := defaults()
	c.Path = abs
	d := newDecoder(file, text)
	if !d.decode(c) {
		return nil, d.err()
	}
	c.resolvePaths(filepath.Dir(abs))
	d.validate(c)
	if err := d.err(); err != nil {
		return nil, err
	}
	return c, nil
}

// resolvePaths makes the configured paths absolute, relative to dir.
func (c *Config) resolvePaths(dir string) {
	for _, p := range []*string{&c.DataDir, &c.TLS.CertFile, &c.TLS.KeyFile, &c.TLS.ACMECAFile,
		&c.Outbound.SmarthostPasswordFile, &c.Outbound.CAFile} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
}

// MailDir is the root of the mail store: data_dir/mail.
func (c *Config) MailDir() string { return filepath.Join(c.DataDir, "mail") }

// QueueDir is the outbound spool: data_dir/queue.
func (c *Config) QueueDir() string { return filepath.Join(c.DataDir, "queue") }

// TLSDir holds the self-signed certificate: data_dir/tls.
func (c *Config) TLSDir() string { return filepath.Join(c.DataDir, "tls") }

// ACMEDir caches ACME accounts and certificates: data_dir/acme.
func (c *Config) ACMEDir() string { return filepath.Join(c.DataDir, "acme") }

// DKIMDir holds the per-domain signing keys: data_dir/dkim.
func (c *Config) DKIMDir() string { return filepath.Join(c.DataDir, "dkim") }

// AccountsFile is the users and aliases file: data_dir/accounts.toml.
func (c *Config) AccountsFile() string { return filepath.Join(c.DataDir, "accounts.toml") }

// SpoolTmpDir is scratch space for messages being received: data_dir/tmp.
func (c *Config) SpoolTmpDir() string { return filepath.Join(c.DataDir, "tmp") }

// Error is one problem in a configuration file.
type Error struct {
	File string // the path as given to Load
	Line int    // 1-based; 0 when the problem is not on any line (a missing key)
	Key  string // the dotted key, such as "smtp.max_recipients"; "" for syntax errors
	Msg  string
}

// msgUnknownKey is the Msg of an Error for a key the schema does not have.
const msgUnknownKey = "unknown key"

func (e *Error) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc = fmt.Sprintf("%s:%d", e.File, e.Line)
	}
	switch {
	case e.Key == "":
		return loc + ": " + e.Msg
	case e.Msg == msgUnknownKey:
		return fmt.Sprintf("%s: unknown key %q", loc, e.Key)
	default:
		return loc + ": " + e.Key + ": " + e.Msg
	}
}

// Errors returns the individual *Error values inside an error from Load.
func Errors(err error) []*Error {
	var out []*Error
	var walk func(error)
	walk = func(err error) {
		if e, ok := err.(*Error); ok {
			out = append(out, e)
			return
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		if e := errors.Unwrap(err); e != nil {
			walk(e)
		}
	}
	walk(err)
	return out
}
