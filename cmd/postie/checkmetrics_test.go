package main

import (
	"strings"
	"testing"

	"postie/config"
)

func TestCheckMetricsExposure(t *testing.T) {
	for addr, warn := range map[string]string{
		"127.0.0.1:9100":   "",
		"[::1]:9100":       "",
		"10.1.2.3:9100":    "",
		"[fd00::1]:9100":   "",
		"localhost:9100":   "",
		":9100":            "every interface",
		"0.0.0.0:9100":     "every interface",
		"[::]:9100":        "every interface",
		"203.0.113.7:9100": "public address",
		"[2001:db8::1]:91": "public address",
	} {
		cfg := config.Default()
		cfg.DataDir = t.TempDir()
		cfg.Metrics.Listen = []string{addr}
		var got string
		for _, w := range checkLoaded(cfg).warnings {
			if strings.HasPrefix(w, "metrics.listen") {
				got += w
			}
		}
		if warn == "" && got != "" || warn != "" && !strings.Contains(got, warn) {
			t.Errorf("%s: warnings %q, want one saying %q", addr, got, warn)
		}
	}
}
