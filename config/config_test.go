package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"postie/internal/testutil"
)

// minimal is the least a valid file holds.
const minimal = `hostname = "mail.example.test"
domains = ["example.test"]
`

// load writes text to dir/config.toml and loads it as "config.toml" from
// dir, so errors read like the ones users see.
func load(t *testing.T, text string) (*Config, error) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	return Load("config.toml")
}

func TestDefaults(t *testing.T) {
	c, err := load(t, minimal)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(c.Path)
	want := defaults()
	want.Path = filepath.Join(dir, "config.toml")
	want.Hostname = "mail.example.test"
	want.Domains = []string{"example.test"}
	want.DataDir = filepath.Join(dir, "data")
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Load(minimal) =\n%+v\nwant\n%+v", c, want)
	}
	// Spot checks, so that a wrong default in defaults() is caught too.
	checks := []struct {
		name      string
		got, want any
	}{
		{"smtp.max_message_size", c.SMTP.MaxMessageSize, Size(25_000_000)},
		{"smtp.max_recipients", c.SMTP.MaxRecipients, 100},
		{"smtp.messages_per_minute_per_ip", c.SMTP.MessagesPerMinutePerIP, 120},
		{"smtp.trusted_networks", strings.Join(c.SMTP.TrustedNetworks, " "), "127.0.0.1/32 ::1/128"},
		{"submission.max_messages_per_hour", c.Submission.MaxMessagesPerHour, 200},
		{"imap.append_limit", c.IMAP.AppendLimit, Size(64_000_000)},
		{"imap.idle_timeout", c.IMAP.IdleTimeout, 30 * time.Minute},
		{"pop3.idle_timeout", c.POP3.IdleTimeout, 10 * time.Minute},
		{"queue.lifetime", c.Queue.Lifetime, 120 * time.Hour},
		{"queue.delay_warning", c.Queue.DelayWarning, 4 * time.Hour},
		{"outbound.smarthost_tls", c.Outbound.SmarthostTLS, "starttls"},
		{"outbound.dkim_selector", c.Outbound.DKIMSelector, "postie"},
		{"outbound.port", c.Outbound.Port, 25},
		{"log.level", c.Log.Level, "info"},
		{"log.format", c.Log.Format, "text"},
		{"smtp.listen", len(c.SMTP.Listen), 0},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}

	paths := map[string]string{
		c.MailDir():      "mail",
		c.QueueDir():     "queue",
		c.TLSDir():       "tls",
		c.DKIMDir():      "dkim",
		c.AccountsFile(): "accounts.toml",
		c.SpoolTmpDir():  "tmp",
	}
	for got, name := range paths {
		if want := filepath.Join(dir, "data", name); got != want {
			t.Errorf("path helper = %s, want %s", got, want)
		}
	}
}

func TestDefault(t *testing.T) {
	c := Default()
	if c.Hostname != "localhost" || len(c.Domains) != 0 || c.DataDir != "./data" {
		t.Errorf("Default() = hostname %q, domains %v, data_dir %q", c.Hostname, c.Domains, c.DataDir)
	}
	// Default with a domain must pass validation: other packages' tests
	// rely on it being a sound configuration.
	c.Domains = []string{"example.test"}
	d := newDecoder("x", "")
	d.raw = map[string]any{"hostname": c.Hostname, "domains": c.Domains}
	d.validate(c)
	if err := d.err(); err != nil {
		t.Errorf("Default() does not validate: %v", err)
	}
}

func TestExampleFile(t *testing.T) {
	c, err := Load("../config.toml.example")
	if err != nil {
		t.Fatalf("the shipped example does not load:\n%v", err)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if c.Hostname != "mail.example.test" || !slices.Equal(c.Domains, []string{"example.test"}) {
		t.Errorf("hostname %q domains %v", c.Hostname, c.Domains)
	}
	if want := filepath.Join(root, "data"); c.DataDir != want {
		t.Errorf("data_dir = %q, want %q", c.DataDir, want)
	}
	listeners := map[string][]string{
		"smtp.listen":           c.SMTP.Listen,
		"submission.listen":     c.Submission.Listen,
		"submission.tls_listen": c.Submission.TLSListen,
		"imap.listen":           c.IMAP.Listen,
		"imap.tls_listen":       c.IMAP.TLSListen,
		"pop3.listen":           c.POP3.Listen,
		"pop3.tls_listen":       c.POP3.TLSListen,
		"http.listen":           c.HTTP.Listen,
		"http.tls_listen":       c.HTTP.TLSListen,
	}
	want := testutil.ExampleListeners(t, "../README.md")
	for k, got := range listeners {
		if !slices.Equal(got, []string{want[k]}) {
			t.Errorf("%s = %v, want [%s]", k, got, want[k])
		}
	}
	if c.TLS.CertFile != "" || c.TLS.KeyFile != "" {
		t.Errorf("tls = %+v, want both empty (self-signed)", c.TLS)
	}
	// Every value the example spells out must equal the default it claims.
	c.Path, c.Hostname, c.Domains, c.DataDir = "", "", nil, "./data"
	c.SMTP.Listen, c.Submission.Listen, c.Submission.TLSListen = nil, nil, nil
	c.IMAP.Listen, c.IMAP.TLSListen, c.POP3.Listen, c.POP3.TLSListen = nil, nil, nil, nil
	c.HTTP.Listen, c.HTTP.TLSListen = nil, nil
	if d := defaults(); !reflect.DeepEqual(c, d) {
		t.Errorf("example values differ from the defaults:\n%+v\n%+v", c, d)
	}
}

// TestExampleDocumentsEveryKey keeps config.toml.example complete: each
// key of the schema appears in it.
func TestExampleDocumentsEveryKey(t *testing.T) {
	text, err := os.ReadFile("../config.toml.example")
	if err != nil {
		t.Fatal(err)
	}
	lines := keyLines(string(text))
	var walk func(reflect.Type, string)
	walk = func(typ reflect.Type, prefix string) {
		for f := range typ.Fields() {
			tag := f.Tag.Get("toml")
			if tag == "-" {
				continue
			}
			key := prefix + tag
			if _, ok := lines[key]; !ok {
				t.Errorf("config.toml.example does not document %s", key)
			}
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[time.Duration]() {
				walk(f.Type, key+".")
			}
		}
	}
	walk(reflect.TypeFor[Config](), "")
}

// TestSchemaTypes checks that every field has a toml tag and a type the
// decoder handles, by decoding a document that sets all of them.
func TestSchemaTypes(t *testing.T) {
	raw := map[string]any{}
	var fill func(reflect.Type, map[string]any)
	fill = func(typ reflect.Type, m map[string]any) {
		for f := range typ.Fields() {
			tag := f.Tag.Get("toml")
			switch {
			case tag == "-":
				continue
			case tag == "":
				t.Errorf("field %s.%s has no toml tag", typ.Name(), f.Name)
				continue
			case tag != strings.ToLower(tag):
				t.Errorf("tag %q is not snake_case", tag)
			}
			switch {
			case f.Type == durationType:
				m[tag] = "1s"
			case f.Type == sizeType:
				m[tag] = int64(1)
			case f.Type.Kind() == reflect.String:
				m[tag] = "x"
			case f.Type.Kind() == reflect.Int:
				m[tag] = int64(1)
			case f.Type.Kind() == reflect.Bool:
				m[tag] = true
			case f.Type.Kind() == reflect.Float64:
				m[tag] = 0.5
			case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct:
				sub := map[string]any{}
				fill(f.Type.Elem(), sub)
				m[tag] = []map[string]any{sub}
			case f.Type.Kind() == reflect.Slice:
				m[tag] = []any{"x"}
			case f.Type.Kind() == reflect.Struct:
				sub := map[string]any{}
				fill(f.Type, sub)
				m[tag] = sub
			default:
				m[tag] = nil
			}
		}
	}
	fill(reflect.TypeFor[Config](), raw)
	d := newDecoder("x", "")
	d.bindTable(raw, reflect.ValueOf(defaults()).Elem(), nil)
	if err := d.err(); err != nil {
		t.Errorf("decoding every field: %v", err)
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name string
		text string
		want []string // the lines of the error, in order
	}{
		{"syntax", minimal + "[smtp\nlisten = []\n",
			[]string{`config.toml:3: invalid TOML: expected '.' or ']' to end table name`}},
		{"syntax: no value", minimal + "[smtp]\nmax_recipients =\nlisten = []\n",
			[]string{`config.toml:4: invalid TOML: expected value but found '\n' instead`}},
		{"syntax: inside a multi-line string", minimal + "postmaster = \"\"\"\n\nx\\q\n\"\"\"\n",
			[]string{`config.toml:5: invalid TOML: invalid escape in string '\q'`}},
		{"syntax: duplicate key", minimal + "[smtp]\nmax_recipients = 1\nmax_recipients = 2\n",
			[]string{`config.toml:5: invalid TOML: Key 'smtp.max_recipients' has already been defined.`}},
		{"unknown top-level key", "hostname = \"a.test\"\ndomains = [\"a.test\"]\nhostnme = \"x\"\n",
			[]string{`config.toml:3: unknown key "hostnme"`}},
		{"unknown table", minimal + "\n[smpt]\nlisten = []\n",
			[]string{`config.toml:4: unknown key "smpt"`}},
		{"unknown key in table", minimal + "[smtp]\nmax_recipients = 5\n  lisen = []\n",
			[]string{`config.toml:5: unknown key "smtp.lisen"`}},
		{"unknown quoted key", minimal + "[imap]\n\"a.b\" = 1\n",
			[]string{`config.toml:4: unknown key "imap.\"a.b\""`}},
		{"missing hostname", "domains = [\"a.test\"]\n",
			[]string{`config.toml: hostname: required: the name this server answers as, like "mail.example.org"`}},
		{"missing domains", "hostname = \"a.test\"\n",
			[]string{`config.toml: domains: required: the mail domains this server receives for, like ["example.org"]`}},
		{"no domains", "hostname = \"a.test\"\n\ndomains = []\n",
			[]string{`config.toml:3: domains: must list at least one domain`}},
		{"bad domain", "hostname = \"a.test\"\ndomains = [\n  \"a.test\",\n  \"b..test\",\n]\n",
			[]string{`config.toml:4: domains[1]: "b..test": bad domain label in "b..test"`}},
		{"duplicate domain", "hostname = \"a.test\"\ndomains = [\"a.test\", \"A.test\"]\n",
			[]string{`config.toml:2: domains[1]: "a.test" is listed twice`}},
		{"bad hostname", "hostname = \"[1.2.3.4]\"\ndomains = [\"a.test\"]\n",
			[]string{`config.toml:1: hostname: "[1.2.3.4]": want a domain name, not an address literal`}},
		{"string for int", minimal + "[smtp]\n\nmax_recipients = \"ten\"\n",
			[]string{`config.toml:5: smtp.max_recipients: must be an integer, not a string`}},
		{"int for string", minimal + "postmaster = 7\n",
			[]string{`config.toml:3: postmaster: must be a string, not an integer`}},
		{"scalar for table", minimal + "smtp = 5\n",
			[]string{`config.toml:3: smtp: must be a table, not an integer`}},
		{"string for list", minimal + "[imap]\nlisten = \"127.0.0.1:143\"\n",
			[]string{`config.toml:4: imap.listen: must be an array of strings, not a string`}},
		{"bad list element", minimal + "[pop3]\nlisten = [\n  \"127.0.0.1:110\",\n  110,\n]\n",
			[]string{`config.toml:6: pop3.listen[1]: must be a string, not an integer`}},
		{"must be > 0", minimal + "[smtp]\nmax_recipients = 0\n",
			[]string{`config.toml:4: smtp.max_recipients: must be > 0`}},
		{"negative", minimal + "[submission]\nmax_messages_per_hour = -1\n",
			[]string{`config.toml:4: submission.max_messages_per_hour: must be >= 0 (0: no limit)`}},
		{"bad duration", minimal + "[queue]\nlifetime = \"5 days\"\n",
			[]string{`config.toml:4: queue.lifetime: bad duration "5 days": want a number and a unit, like "30s", "5m" or "120h"`}},
		{"duration without unit", minimal + "[pop3]\nidle_timeout = 600\n",
			[]string{`config.toml:4: pop3.idle_timeout: bad duration 600: want a string with a unit, like "30s", "5m" or "120h"`}},
		{"zero duration", minimal + "[imap]\nidle_timeout = \"0s\"\n",
			[]string{`config.toml:4: imap.idle_timeout: must be > 0`}},
		{"bad size", minimal + "[smtp]\nmax_message_size = \"25 parsecs\"\n",
			[]string{`config.toml:4: smtp.max_message_size: bad size "25 parsecs": unknown unit "parsecs" (use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)`}},
		{"negative size", minimal + "[imap]\nappend_limit = -5\n",
			[]string{`config.toml:4: imap.append_limit: must be > 0`}},
		{"bad listen", minimal + "[smtp]\nlisten = [\"127.0.0.1\"]\n",
			[]string{`config.toml:4: smtp.listen[0]: "127.0.0.1": want "host:port", like "127.0.0.1:25" or "[::1]:25"`}},
		{"bad port", minimal + "[smtp]\nlisten = [\":smtp\"]\n",
			[]string{`config.toml:4: smtp.listen[0]: ":smtp": bad port "smtp"`}},
		{"listen used twice", minimal + "[smtp]\nlisten = [\":25\"]\n[submission]\nlisten = [\":25\"]\n",
			[]string{`config.toml:6: submission.listen[0]: ":25" is already used by smtp.listen[0]`}},
		{"log level", minimal + "[log]\nlevel = \"loud\"\n",
			[]string{`config.toml:4: log.level: "loud": want "debug", "info", "warn" or "error"`}},
		{"tls half", minimal + "[tls]\ncert_file = \"c.pem\"\n",
			[]string{`config.toml:3: tls.key_file: required when tls.cert_file is set`}},
		{"trusted network", minimal + "[smtp]\ntrusted_networks = [\n  \"10.0.0.0/8\",\n  \"localhost\",\n  \"10.1.2.3/8\",\n  \"::ffff:10.0.0.0/104\",\n  \"fe80::1%eth0\",\n  \"10.0.0.0/33\",\n]\n",
			[]string{
				`config.toml:6: smtp.trusted_networks[1]: "localhost": want a network like "192.0.2.0/24" or "2001:db8::/32", or one address`,
				`config.toml:7: smtp.trusted_networks[2]: "10.1.2.3/8" has address bits set past the prefix length: did you mean "10.0.0.0/8"?`,
				`config.toml:8: smtp.trusted_networks[3]: "::ffff:10.0.0.0/104": write IPv4 networks in IPv4 form, like "192.0.2.0/24"`,
				`config.toml:9: smtp.trusted_networks[4]: "fe80::1%eth0": want a network like "192.0.2.0/24" or "2001:db8::/32", or one address`,
				`config.toml:10: smtp.trusted_networks[5]: "10.0.0.0/33": want a network like "192.0.2.0/24" or "2001:db8::/32", or one address`,
			}},
		{"checks and spam", minimal + "[smtp]\ndnsbl = [\"zen.spamhaus.org\", \"bad zone\"]\nprotect_own_domains = \"no\"\n[spam]\njunk_threshold = 1.5\njunk_min_trained = 0\nrspamd_url = \"127.0.0.1:11333\"\njunk_filter = 1\n",
			[]string{
				`config.toml:4: smtp.dnsbl[1]: "bad zone": domain "bad zone" has forbidden character ' '`,
				`config.toml:5: smtp.protect_own_domains: must be true or false, not a string`,
				`config.toml:7: spam.junk_threshold: 1.5: want a probability between 0 and 1, like 0.95`,
				`config.toml:8: spam.junk_min_trained: 0: want at least 1`,
				`config.toml:9: spam.rspamd_url: "127.0.0.1:11333": want an http:// or https:// URL, like "http://127.0.0.1:11333"`,
				`config.toml:10: spam.junk_filter: must be true or false, not an integer`,
			}},
		{"postmaster elsewhere", minimal + "postmaster = \"pm@other.test\"\n",
			[]string{`config.toml:3: postmaster: "pm@other.test" is not at one of our domains`}},
		{"postmaster invalid", minimal + "postmaster = \"pm\"\n",
			[]string{`config.toml:3: postmaster: address "pm" has no domain`}},
		{"retry order", minimal + "[queue]\nmin_retry = \"2h\"\n",
			[]string{`config.toml:4: queue.min_retry: queue.min_retry (2h) must not exceed queue.max_retry (1h)`}},
		{"delay warning", minimal + "[queue]\nlifetime = \"3h\"\n",
			[]string{`config.toml:4: queue.lifetime: queue.delay_warning (4h) must be shorter than queue.lifetime (3h), or 0 for no warning`}},
		{"smarthost tls", minimal + "[outbound]\nsmarthost = \"relay.test:587\"\nsmarthost_tls = \"ssl\"\n",
			[]string{`config.toml:5: outbound.smarthost_tls: "ssl": want "starttls" or "tls"`}},
		{"smarthost user without password", minimal + "[outbound]\nsmarthost = \"relay.test:587\"\nsmarthost_username = \"u\"\n",
			[]string{`config.toml:3: outbound.smarthost_password_file: required when outbound.smarthost_username is set`}},
		{"resolver", minimal + "[outbound]\nresolver = \"9.9.9.9\"\n",
			[]string{`config.toml:4: outbound.resolver: "9.9.9.9": want "host:port", like "127.0.0.1:25" or "[::1]:25"`}},
		{"outbound port", minimal + "[outbound]\nport = 0\n",
			[]string{`config.toml:4: outbound.port: must be a port number, 1 to 65535`}},
		{"dotted key at top level", minimal + "smtp.max_connections = 0\n",
			[]string{`config.toml:3: smtp.max_connections: must be > 0`}},
		{"inline table", minimal + "pop3 = {\n  max_connections = 10,\n  max_connections_per_ip = 0,\n}\n",
			[]string{`config.toml:5: pop3.max_connections_per_ip: must be > 0`}},
		{"key inside a multi-line string is not the key", minimal + "postmaster = \"\"\"\nmax_recipients = 1\n\"\"\"\n[smtp]\nmax_recipients = 0\n",
			[]string{
				`config.toml:3: postmaster: address "max_recipients = 1\n" has no domain`,
				`config.toml:7: smtp.max_recipients: must be > 0`,
			}},
		{"every error, in line order", "hostname = \"a.test\"\n" +
			"domains = [\"a.test\"]\n" +
			"[smtp]\n" +
			"max_recipients = -1\n" +
			"bogus = 1\n" +
			"[queue]\n" +
			"min_retry = \"soon\"\n" +
			"max_concurrency = 0\n" +
			"[outbound]\n" +
			"port = \"25\"\n",
			[]string{
				`config.toml:4: smtp.max_recipients: must be > 0`,
				`config.toml:5: unknown key "smtp.bogus"`,
				`config.toml:7: queue.min_retry: bad duration "soon": want a number and a unit, like "30s", "5m" or "120h"`,
				`config.toml:8: queue.max_concurrency: must be > 0`,
				`config.toml:10: outbound.port: must be an integer, not a string`,
			}},
		{"missing key and a bad one", "domains = [\"a.test\"]\n[imap]\nmax_connections = 0\n",
			[]string{
				`config.toml: hostname: required: the name this server answers as, like "mail.example.org"`,
				`config.toml:3: imap.max_connections: must be > 0`,
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(t, tt.text)
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			got := strings.Split(err.Error(), "\n")
			if strings.HasPrefix(tt.name, "syntax") { // the library's wording may grow
				got[0] = got[0][:min(len(got[0]), len(tt.want[0]))]
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("error:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			for _, e := range Errors(err) {
				if e.File != "config.toml" {
					t.Errorf("Error.File = %q", e.File)
				}
			}
			if n := len(Errors(err)); n != len(tt.want) {
				t.Errorf("Errors() has %d errors, want %d", n, len(tt.want))
			}
		})
	}
}

func TestErrorsAs(t *testing.T) {
	_, err := load(t, minimal+"[smtp]\nmax_recipients = 0\n")
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("errors.As(%v, *Error) = false", err)
	}
	if e.Line != 4 || e.Key != "smtp.max_recipients" || e.Msg != "must be > 0" {
		t.Errorf("Error = %+v", e)
	}
}

func TestMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.toml"))
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "nope.toml") {
		t.Errorf("Load(missing) = %v", err)
	}
}

func TestNormalisation(t *testing.T) {
	c, err := load(t, `hostname = "Mail.Example.TEST."
domains = ["Example.TEST", "other.test."]
postmaster = "Boss@EXAMPLE.test"
[log]
level = "DEBUG"
format = "JSON"
[outbound]
smarthost = "relay.test:465"
smarthost_tls = "TLS"
`)
	if err != nil {
		t.Fatal(err)
	}
	if c.Hostname != "mail.example.test" || !slices.Equal(c.Domains, []string{"example.test", "other.test"}) {
		t.Errorf("hostname %q domains %v", c.Hostname, c.Domains)
	}
	if c.Postmaster != "Boss@example.test" {
		t.Errorf("postmaster = %q", c.Postmaster)
	}
	if c.Log.Level != "debug" || c.Log.Format != "json" || c.Outbound.SmarthostTLS != "tls" {
		t.Errorf("log %+v, smarthost_tls %q", c.Log, c.Outbound.SmarthostTLS)
	}
}

func TestRelativePaths(t *testing.T) {
	root := t.TempDir()
	etc := filepath.Join(root, "etc", "postie")
	if err := os.MkdirAll(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	abs := filepath.Join(root, "elsewhere", "key.pem")
	text := minimal + `data_dir = "spool"
[tls]
cert_file = "../certs/cert.pem"
key_file = "` + abs + `"
[outbound]
smarthost = "relay.test:587"
smarthost_username = "me"
smarthost_password_file = "secret"
`
	if err := os.WriteFile(filepath.Join(etc, "config.toml"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	// Load through a relative path from another directory: paths follow
	// the file, not the working directory.
	t.Chdir(root)
	c, err := Load(filepath.Join("etc", "postie", "config.toml"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"path":                    filepath.Join(etc, "config.toml"),
		"data_dir":                filepath.Join(etc, "spool"),
		"cert_file":               filepath.Join(root, "etc", "certs", "cert.pem"),
		"key_file":                abs,
		"smarthost_password_file": filepath.Join(etc, "secret"),
		"mail dir":                filepath.Join(etc, "spool", "mail"),
	}
	got := map[string]string{
		"path":                    c.Path,
		"data_dir":                c.DataDir,
		"cert_file":               c.TLS.CertFile,
		"key_file":                c.TLS.KeyFile,
		"smarthost_password_file": c.Outbound.SmarthostPasswordFile,
		"mail dir":                c.MailDir(),
	}
	for k := range want {
		if got[k] != want[k] {
			t.Errorf("%s = %q, want %q", k, got[k], want[k])
		}
	}
}

func TestSizesAndDurationsInFile(t *testing.T) {
	c, err := load(t, minimal+`[smtp]
max_message_size = 1048576
idle_timeout = "90s"
[submission]
max_message_size = "10MiB"
[imap]
append_limit = "1.5GB"
[queue]
delay_warning = 0
lifetime = "2h30m"
`)
	if err != nil {
		t.Fatal(err)
	}
	if c.SMTP.MaxMessageSize != MiB || c.Submission.MaxMessageSize != 10*MiB || c.IMAP.AppendLimit != 1_500_000_000 {
		t.Errorf("sizes %d %d %d", c.SMTP.MaxMessageSize, c.Submission.MaxMessageSize, c.IMAP.AppendLimit)
	}
	if c.SMTP.IdleTimeout != 90*time.Second || c.Queue.DelayWarning != 0 || c.Queue.Lifetime != 150*time.Minute {
		t.Errorf("durations %v %v %v", c.SMTP.IdleTimeout, c.Queue.DelayWarning, c.Queue.Lifetime)
	}
}

func TestParseSize(t *testing.T) {
	good := map[string]Size{
		"0":        0,
		"4096":     4096,
		"4096B":    4096,
		"512KB":    512_000,
		"25MB":     25_000_000,
		"25 mb":    25_000_000,
		"1GB":      1_000_000_000,
		"2TB":      2_000_000_000_000,
		"1KiB":     1024,
		"10MiB":    10 << 20,
		"1gib":     1 << 30,
		"1TiB":     1 << 40,
		"1.5GB":    1_500_000_000,
		"0.5KiB":   512,
		" 7 MB ":   7_000_000,
		"8388608B": 8 << 20,
	}
	for in, want := range good {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MB", "-1MB", "1.2.3MB", ".5MB", "1.1B", "0.0001KB", "25M", "25 parsecs",
		"99999999999999999999", "9999999999TB", "1e6"} {
		if got, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", in, got)
		}
	}
}

func TestSizeString(t *testing.T) {
	for _, s := range []Size{0, 1, 1000, 1024, 25 * MB, 64 * MiB, 1500 * MB, 3 * TiB, 1023} {
		text, err := s.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var back Size
		if err := back.UnmarshalText(text); err != nil || back != s {
			t.Errorf("%d → %q → %d, %v", s, text, back, err)
		}
	}
	if got := (25 * MB).String(); got != "25MB" {
		t.Errorf("String = %q", got)
	}
	if got := (10 * MiB).String(); got != "10MiB" {
		t.Errorf("String = %q", got)
	}
}

func BenchmarkLoadExample(b *testing.B) {
	for b.Loop() {
		if _, err := Load("../config.toml.example"); err != nil {
			b.Fatal(err)
		}
	}
}

// TestTrustedNetworks: single addresses become networks, the canonical
// form is kept, [] trusts nobody, and TrustedPrefixes matches Load.
func TestTrustedNetworks(t *testing.T) {
	c, err := load(t, minimal+"[smtp]\ntrusted_networks = [\"192.0.2.7\", \"2001:DB8::/32\", \"::1\"]\n")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"192.0.2.7/32", "2001:db8::/32", "::1/128"}
	if !slices.Equal(c.SMTP.TrustedNetworks, want) {
		t.Errorf("trusted_networks = %q, want %q", c.SMTP.TrustedNetworks, want)
	}
	var got []string
	for _, p := range c.SMTP.TrustedPrefixes() {
		got = append(got, p.String())
	}
	if !slices.Equal(got, want) {
		t.Errorf("TrustedPrefixes() = %q, want %q", got, want)
	}
	c, err = load(t, minimal+"[smtp]\ntrusted_networks = []\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.SMTP.TrustedPrefixes()) != 0 {
		t.Errorf("[] trusts %v", c.SMTP.TrustedPrefixes())
	}
	if got := Default().SMTP.TrustedPrefixes(); len(got) != 2 || !got[0].Contains(netip.MustParseAddr("127.0.0.1")) || got[0].Contains(netip.MustParseAddr("127.0.0.2")) {
		t.Errorf("Default() trusts %v, want 127.0.0.1/32 and ::1/128", got)
	}
}
