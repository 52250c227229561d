package config

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"postie/envelope"
)

// validate checks the decoded values, normalising some of them (lower-case
// names and enumerations), and records an error for each bad one.
func (d *decoder) validate(c *Config) {
	d.validateNames(c)
	d.validateLog(&c.Log)
	d.validateListeners(c)
	d.validateLimits(c)
	d.validateQueue(&c.Queue)
	d.validateTLS(&c.TLS)
	d.validateOutbound(&c.Outbound)
	d.validateChecks(&c.SMTP)
	d.validateSpam(&c.Spam)
	d.validateHTTP(&c.HTTP)
	d.validateMetrics(&c.Metrics)
}

// validateMetrics checks the metrics listeners (host and port required:
// metrics belong on loopback or a private address, never on every one by
// accident).
func (d *decoder) validateMetrics(m *Metrics) {
	for i, addr := range m.Listen {
		if _, err := hostPort(addr, false); err != nil {
			d.errf(fmt.Sprintf("metrics.listen[%d]", i), "%v", err)
		}
	}
}

// maxMTASTSAge is RFC 8461's ceiling on max_age: 31557600 seconds.
const maxMTASTSAge = 31557600 * time.Second

// validateHTTP checks the web role's settings (its listeners are checked
// with the others, in validateListeners).
func (d *decoder) validateHTTP(h *HTTP) {
	if h.AdvertiseHost != "" {
		h.AdvertiseHost = normalDomain(h.AdvertiseHost)
		if err := validDomain(h.AdvertiseHost); err != nil {
			d.errf("http.advertise_host", "%v", err)
		}
	}
	h.MTASTSMode = strings.ToLower(h.MTASTSMode)
	switch h.MTASTSMode {
	case "testing", "enforce", "none":
	default:
		d.errf("http.mta_sts_mode", "%q: want \"testing\", \"enforce\" or \"none\"", h.MTASTSMode)
	}
	switch {
	case h.MTASTSMaxAge < time.Second:
		d.errf("http.mta_sts_max_age", "must be at least 1s, like \"168h\"")
	case h.MTASTSMaxAge > maxMTASTSAge:
		d.errf("http.mta_sts_max_age", "%s: at most 31557600s (about a year, RFC 8461)", fmtDuration(h.MTASTSMaxAge))
	}
}

// validateChecks checks the MX's trust settings.
func (d *decoder) validateChecks(s *SMTP) {
	for i, zone := range s.DNSBL {
		key := fmt.Sprintf("smtp.dnsbl[%d]", i)
		zone = normalDomain(zone)
		s.DNSBL[i] = zone
		if err := validDomain(zone); err != nil {
			d.errf(key, "%v", err)
		}
	}
	if s.CheckTimeout <= 0 {
		d.errf("smtp.check_timeout", "must be positive, like \"20s\"")
	}
}

// validateSpam checks the junk filter's and rspamd's settings.
func (d *decoder) validateSpam(s *Spam) {
	if s.JunkThreshold <= 0 || s.JunkThreshold >= 1 {
		d.errf("spam.junk_threshold", "%v: want a probability between 0 and 1, like 0.95", s.JunkThreshold)
	}
	if s.JunkMinTrained < 1 {
		d.errf("spam.junk_min_trained", "%d: want at least 1", s.JunkMinTrained)
	}
	for _, u := range []struct{ key, val string }{{"spam.rspamd_url", s.RspamdURL}, {"spam.rspamd_controller_url", s.RspamdControllerURL}} {
		if u.val == "" {
			continue
		}
		if !strings.HasPrefix(u.val, "http://") && !strings.HasPrefix(u.val, "https://") {
			d.errf(u.key, "%q: want an http:// or https:// URL, like \"http://127.0.0.1:11333\"", u.val)
		}
	}
	if s.RspamdTimeout <= 0 {
		d.errf("spam.rspamd_timeout", "must be positive, like \"10s\"")
	}
}

func (d *decoder) validateNames(c *Config) {
	switch {
	case !d.has("hostname"):
		d.errf("hostname", "required: the name this server answers as, like \"mail.example.org\"")
	case c.Hostname == "":
		d.errf("hostname", "must not be empty")
	default:
		c.Hostname = normalDomain(c.Hostname)
		if err := validDomain(c.Hostname); err != nil {
			d.errf("hostname", "%v", err)
		}
	}

	switch {
	case !d.has("domains"):
		d.errf("domains", "required: the mail domains this server receives for, like [\"example.org\"]")
	case len(c.Domains) == 0:
		d.errf("domains", "must list at least one domain")
	}
	ours := map[string]bool{}
	for i, dom := range c.Domains {
		key := fmt.Sprintf("domains[%d]", i)
		dom = normalDomain(dom)
		c.Domains[i] = dom
		if err := validDomain(dom); err != nil {
			d.errf(key, "%v", err)
		} else if ours[dom] {
			d.errf(key, "%q is listed twice", dom)
		}
		ours[dom] = true
	}

	if c.Postmaster != "" {
		addr, err := envelope.Normalize(c.Postmaster)
		_, dom := envelope.Split(addr)
		switch {
		case err != nil:
			d.errf("postmaster", "%v", err)
		case !ours[dom]:
			d.errf("postmaster", "%q is not at one of our domains", addr)
		default:
			c.Postmaster = addr
		}
	}

	if c.DataDir == "" {
		d.errf("data_dir", "must not be empty")
	}
}

// normalDomain lower-cases a domain and drops a trailing dot.
func normalDomain(s string) string {
	return envelope.CanonDomain(strings.TrimSpace(s))
}

// validDomain accepts a domain name, not an address literal.
func validDomain(s string) error {
	if strings.HasPrefix(s, "[") {
		return fmt.Errorf("%q: want a domain name, not an address literal", s)
	}
	if err := envelope.ValidateDomain(s); err != nil {
		return fmt.Errorf("%q: %w", s, err)
	}
	return nil
}

func (d *decoder) validateLog(l *Log) {
	l.Level = strings.ToLower(l.Level)
	switch l.Level {
	case "debug", "info", "warn", "error":
	default:
		d.errf("log.level", "%q: want \"debug\", \"info\", \"warn\" or \"error\"", l.Level)
	}
	l.Format = strings.ToLower(l.Format)
	if l.Format != "text" && l.Format != "json" {
		d.errf("log.format", "%q: want \"text\" or \"json\"", l.Format)
	}
}

// validateListeners checks every listen address, and that no two roles
// claim the same one (port 0 excepted: each gets its own port).
func (d *decoder) validateListeners(c *Config) {
	lists := []struct {
		key   string
		addrs []string
	}{
		{"smtp.listen", c.SMTP.Listen},
		{"submission.listen", c.Submission.Listen},
		{"submission.tls_listen", c.Submission.TLSListen},
		{"imap.listen", c.IMAP.Listen},
		{"imap.tls_listen", c.IMAP.TLSListen},
		{"pop3.listen", c.POP3.Listen},
		{"pop3.tls_listen", c.POP3.TLSListen},
		{"http.listen", c.HTTP.Listen},
		{"http.tls_listen", c.HTTP.TLSListen},
	}
	seen := map[string]string{} // address → key of its first use
	for _, l := range lists {
		for i, addr := range l.addrs {
			key := fmt.Sprintf("%s[%d]", l.key, i)
			port, err := hostPort(addr, false)
			if err != nil {
				d.errf(key, "%v", err)
				continue
			}
			if prev, ok := seen[addr]; ok && port != 0 {
				d.errf(key, "%q is already used by %s", addr, prev)
				continue
			}
			seen[addr] = key
		}
	}
}

// hostPort checks a "host:port" address and returns the port. The host may
// be empty (all addresses) unless needHost.
func hostPort(addr string, needHost bool) (int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, fmt.Errorf("%q: want \"host:port\", like \"127.0.0.1:25\" or \"[::1]:25\"", addr)
	}
	if needHost && host == "" {
		return 0, fmt.Errorf("%q: the host is missing", addr)
	}
	if strings.ContainsAny(host, " \t") {
		return 0, fmt.Errorf("%q: bad host", addr)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 || needHost && n == 0 {
		return 0, fmt.Errorf("%q: bad port %q", addr, port)
	}
	return n, nil
}

func (d *decoder) validateLimits(c *Config) {
	s, sub, im, p := &c.SMTP, &c.Submission, &c.IMAP, &c.POP3
	d.positiveSize("smtp.max_message_size", s.MaxMessageSize)
	d.positive("smtp.max_recipients", s.MaxRecipients)
	d.positive("smtp.max_connections", s.MaxConnections)
	d.positive("smtp.max_connections_per_ip", s.MaxConnectionsPerIP)
	d.positiveDuration("smtp.idle_timeout", s.IdleTimeout)
	d.notNegative("smtp.messages_per_minute_per_ip", s.MessagesPerMinutePerIP)
	for i, n := range s.TrustedNetworks {
		p, err := parseNetwork(n)
		if err != nil {
			d.errf(fmt.Sprintf("smtp.trusted_networks[%d]", i), "%v", err)
			continue
		}
		s.TrustedNetworks[i] = p.String()
	}

	d.positiveSize("submission.max_message_size", sub.MaxMessageSize)
	d.positive("submission.max_recipients", sub.MaxRecipients)
	d.positive("submission.max_connections", sub.MaxConnections)
	d.positive("submission.max_connections_per_ip", sub.MaxConnectionsPerIP)
	d.positiveDuration("submission.idle_timeout", sub.IdleTimeout)
	d.notNegative("submission.max_messages_per_hour", sub.MaxMessagesPerHour)

	d.positive("imap.max_connections", im.MaxConnections)
	d.positive("imap.max_connections_per_ip", im.MaxConnectionsPerIP)
	d.positiveSize("imap.append_limit", im.AppendLimit)
	d.positiveDuration("imap.idle_timeout", im.IdleTimeout)

	d.positive("pop3.max_connections", p.MaxConnections)
	d.positive("pop3.max_connections_per_ip", p.MaxConnectionsPerIP)
	d.positiveDuration("pop3.idle_timeout", p.IdleTimeout)
}

func (d *decoder) validateQueue(q *Queue) {
	d.positiveDuration("queue.min_retry", q.MinRetry)
	d.positiveDuration("queue.max_retry", q.MaxRetry)
	if q.MinRetry > 0 && q.MaxRetry > 0 && q.MinRetry > q.MaxRetry {
		d.errf(d.pick("queue.min_retry", "queue.max_retry"), "queue.min_retry (%s) must not exceed queue.max_retry (%s)",
			fmtDuration(q.MinRetry), fmtDuration(q.MaxRetry))
	}
	d.positiveDuration("queue.lifetime", q.Lifetime)
	if q.DelayWarning < 0 {
		d.errf("queue.delay_warning", "must be >= 0 (0 turns the warning off)")
	} else if q.DelayWarning > 0 && q.Lifetime > 0 && q.DelayWarning >= q.Lifetime {
		d.errf(d.pick("queue.delay_warning", "queue.lifetime"),
			"queue.delay_warning (%s) must be shorter than queue.lifetime (%s), or 0 for no warning",
			fmtDuration(q.DelayWarning), fmtDuration(q.Lifetime))
	}
	d.positive("queue.max_concurrency", q.MaxConcurrency)
	d.positive("queue.max_per_domain", q.MaxPerDomain)
	d.notNegative("queue.messages_per_minute", q.MessagesPerMinute)
	seen := map[string]bool{}
	for i := range q.Throttles {
		t := &q.Throttles[i]
		key := fmt.Sprintf("queue.throttle[%d]", i)
		t.Domain = normalDomain(t.Domain)
		if err := validDomain(strings.TrimPrefix(t.Domain, ".")); err != nil {
			d.errf(key+".domain", "%v", err)
		} else if seen[t.Domain] {
			d.errf(key+".domain", "%q is listed twice", t.Domain)
		}
		seen[t.Domain] = true
		d.notNegative(key+".messages_per_minute", t.MessagesPerMinute)
		d.notNegative(key+".connections", t.Connections)
	}
}

func (d *decoder) validateTLS(t *TLS) {
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		d.errf("tls.key_file", "required when tls.cert_file is set")
	case t.CertFile == "" && t.KeyFile != "":
		d.errf("tls.cert_file", "required when tls.key_file is set")
	}
	if !strings.HasPrefix(t.ACMEDirectory, "https://") && !strings.HasPrefix(t.ACMEDirectory, "http://") {
		d.errf("tls.acme_directory", "%q: want the ACME server's directory URL, like %q", t.ACMEDirectory, DefaultACMEDirectory)
	}
	if t.ACMEEmail != "" {
		if err := envelope.Validate(t.ACMEEmail); err != nil {
			d.errf("tls.acme_email", "%q: not a mail address", t.ACMEEmail)
		}
	}
}

func (d *decoder) validateOutbound(o *Outbound) {
	if o.Resolver != "" {
		if _, err := hostPort(o.Resolver, true); err != nil {
			d.errf("outbound.resolver", "%v", err)
		}
	}
	if o.Smarthost != "" {
		if _, err := hostPort(o.Smarthost, true); err != nil {
			d.errf("outbound.smarthost", "%v", err)
		}
	}
	o.SmarthostTLS = strings.ToLower(o.SmarthostTLS)
	if o.SmarthostTLS != "starttls" && o.SmarthostTLS != "tls" {
		d.errf("outbound.smarthost_tls", "%q: want \"starttls\" or \"tls\"", o.SmarthostTLS)
	}
	switch {
	case o.SmarthostUsername != "" && o.Smarthost == "":
		d.errf("outbound.smarthost_username", "set, but outbound.smarthost is empty")
	case o.SmarthostUsername != "" && o.SmarthostPasswordFile == "":
		d.errf("outbound.smarthost_password_file", "required when outbound.smarthost_username is set")
	case o.SmarthostUsername == "" && o.SmarthostPasswordFile != "":
		d.errf("outbound.smarthost_password_file", "set, but outbound.smarthost_username is empty")
	}
	if o.DKIMSelector == "" {
		d.errf("outbound.dkim_selector", "must not be empty")
	} else if err := validDomain(o.DKIMSelector); err != nil {
		d.errf("outbound.dkim_selector", "%v", err)
	}
	d.positiveDuration("outbound.connect_timeout", o.ConnectTimeout)
	d.positiveDuration("outbound.command_timeout", o.CommandTimeout)
	if o.Port < 1 || o.Port > 65535 {
		d.errf("outbound.port", "must be a port number, 1 to 65535")
	}
	for _, s := range []struct {
		key, val string
		v4       bool
	}{{"outbound.source_ip", o.SourceIP, true}, {"outbound.source_ipv6", o.SourceIPv6, false}} {
		if s.val == "" {
			continue
		}
		a, err := netip.ParseAddr(s.val)
		switch {
		case err != nil:
			d.errf(s.key, "%q: not an IP address", s.val)
		case s.v4 && !a.Unmap().Is4():
			d.errf(s.key, "%q: want an IPv4 address (IPv6 goes in outbound.source_ipv6)", s.val)
		case !s.v4 && (a.Is4() || a.Is4In6()):
			d.errf(s.key, "%q: want an IPv6 address (IPv4 goes in outbound.source_ip)", s.val)
		}
	}
	if o.SuppressFor < 0 {
		d.errf("outbound.suppress_for", "must be >= 0 (0 turns the suppression list off)")
	}
}

func (d *decoder) positive(key string, n int) {
	if n <= 0 {
		d.errf(key, "must be > 0")
	}
}

func (d *decoder) notNegative(key string, n int) {
	if n < 0 {
		d.errf(key, "must be >= 0 (0: no limit)")
	}
}

func (d *decoder) positiveSize(key string, n Size) {
	if n <= 0 {
		d.errf(key, "must be > 0")
	}
}

func (d *decoder) positiveDuration(key string, t time.Duration) {
	if t <= 0 {
		d.errf(key, "must be > 0")
	}
}

// pick returns the first of keys the file sets, for an error about values
// that conflict: the one the user wrote is the one to point at.
func (d *decoder) pick(keys ...string) string {
	for _, k := range keys {
		if _, ok := d.lines[k]; ok {
			return k
		}
	}
	return keys[0]
}

// fmtDuration writes "1h" and "5m" rather than "1h0m0s" and "5m0s".
func fmtDuration(t time.Duration) string {
	s := t.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// parseNetwork reads a network in CIDR form ("192.0.2.0/24",
// "2001:db8::/32") or a single address, which is its own network.
func parseNetwork(s string) (netip.Prefix, error) {
	want := fmt.Errorf("%q: want a network like \"192.0.2.0/24\" or \"2001:db8::/32\", or one address", s)
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, want
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, want
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	switch {
	case p.Addr().Is4In6():
		return netip.Prefix{}, fmt.Errorf("%q: write IPv4 networks in IPv4 form, like \"192.0.2.0/24\"", s)
	case p.Masked() != p:
		return netip.Prefix{}, fmt.Errorf("%q has address bits set past the prefix length: did you mean %q?", s, p.Masked().String())
	}
	return p, nil
}
