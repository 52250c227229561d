package config

import (
	"strings"
	"testing"
	"time"
)

func TestHTTP(t *testing.T) {
	base := "hostname = \"mx.example.test\"\ndomains = [\"example.test\"]\n"
	c, err := parse("x.toml", "/x.toml", base)
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTP.Listen != nil || c.HTTP.TLSListen != nil || c.HTTP.MTASTSMode != "testing" ||
		c.HTTP.MTASTSMaxAge != 168*time.Hour || c.AdvertisedHost() != "mx.example.test" {
		t.Errorf("defaults: %+v %q", c.HTTP, c.AdvertisedHost())
	}
	c, err = parse("x.toml", "/x.toml", base+"[http]\nadvertise_host = \"Mail.Example.Test.\"\nmta_sts_mode = \"Enforce\"\nmta_sts_max_age = \"24h\"\n")
	if err != nil {
		t.Fatal(err)
	}
	if c.AdvertisedHost() != "mail.example.test" || c.HTTP.MTASTSMode != "enforce" || c.HTTP.MTASTSMaxAge != 24*time.Hour {
		t.Errorf("got %+v", c.HTTP)
	}
	for text, want := range map[string]string{
		"[http]\nmta_sts_mode = \"strict\"":                                        "x.toml:5: http.mta_sts_mode:",
		"[http]\nmta_sts_max_age = \"0s\"":                                         "x.toml:5: http.mta_sts_max_age:",
		"[http]\nmta_sts_max_age = \"9000h\"":                                      "x.toml:5: http.mta_sts_max_age:",
		"[http]\nadvertise_host = \"not a host\"":                                  "x.toml:5: http.advertise_host:",
		"[http]\nlisten = [\"bad\"]":                                               "x.toml:5: http.listen[0]:",
		"[imap]\nlisten = [\"127.0.0.1:80\"]\n[http]\nlisten = [\"127.0.0.1:80\"]": "x.toml:7: http.listen[0]: \"127.0.0.1:80\" is already used by imap.listen[0]",
		"[http]\nlisten = [\"127.0.0.1:443\"]\ntls_listen = [\"127.0.0.1:443\"]":   "x.toml:6: http.tls_listen[0]: \"127.0.0.1:443\" is already used by http.listen[0]",
	} {
		_, err := parse("x.toml", "/x.toml", base+"\n"+text+"\n")
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%q: got %v, want %s...", text, err, want)
		}
	}
}
