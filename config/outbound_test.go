package config

import (
	"strings"
	"testing"
	"time"
)

func TestThrottlesAndSources(t *testing.T) {
	c, err := load(t, minimal+`
[queue]
messages_per_minute = 30
[[queue.throttle]]
domain = "Gmail.COM"
messages_per_minute = 20
connections = 2
[[queue.throttle]]
domain = ".google.com"
connections = 1
[outbound]
source_ip = "192.0.2.7"
source_ipv6 = "2001:db8::7"
suppress_for = "0s"
[tls]
acme = true
acme_email = "admin@example.test"
acme_ca_file = "pebble.pem"
[metrics]
listen = ["127.0.0.1:9100"]
`)
	if err != nil {
		t.Fatal(err)
	}
	want := []Throttle{{"gmail.com", 20, 2}, {".google.com", 0, 1}}
	if len(c.Queue.Throttles) != 2 || c.Queue.Throttles[0] != want[0] || c.Queue.Throttles[1] != want[1] {
		t.Errorf("throttles = %+v, want %+v", c.Queue.Throttles, want)
	}
	if c.Queue.MessagesPerMinute != 30 || c.Outbound.SourceIP != "192.0.2.7" || c.Outbound.SourceIPv6 != "2001:db8::7" || c.Outbound.SuppressFor != 0 {
		t.Errorf("queue/outbound = %+v %+v", c.Queue, c.Outbound)
	}
	if !c.TLS.ACME || c.TLS.ACMEDirectory != DefaultACMEDirectory || !strings.HasSuffix(c.TLS.ACMECAFile, "/pebble.pem") {
		t.Errorf("tls = %+v", c.TLS)
	}
	if len(c.Metrics.Listen) != 1 {
		t.Errorf("metrics = %+v", c.Metrics)
	}
	if d := Default(); d.Outbound.SuppressFor != 30*24*time.Hour || d.Queue.MessagesPerMinute != 60 {
		t.Errorf("defaults: suppress_for %v, messages_per_minute %d", d.Outbound.SuppressFor, d.Queue.MessagesPerMinute)
	}
}

func TestThrottleAndSourceErrors(t *testing.T) {
	_, err := load(t, minimal+`
[queue]
throttle = [{domain = "bad domain!"}, {domain = "a.test", connections = -1}, "x"]
[outbound]
source_ip = "2001:db8::1"
source_ipv6 = "192.0.2.1"
suppress_for = "-1h"
[tls]
acme_directory = "ftp://x"
acme_email = "not an address"
[metrics]
listen = ["nope"]
`)
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, want := range []string{"queue.throttle[2]", "outbound.source_ip:", "outbound.source_ipv6:",
		"outbound.suppress_for", "tls.acme_directory", "tls.acme_email", "metrics.listen[0]"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	_, err = load(t, minimal+`
[[queue.throttle]]
domain = "bad domain!"
[[queue.throttle]]
domain = "a.test"
connections = -1
[[queue.throttle]]
domain = "A.test"
`)
	for _, want := range []string{"queue.throttle[0].domain", "queue.throttle[1].connections", "queue.throttle[2].domain: \"a.test\" is listed twice"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}
