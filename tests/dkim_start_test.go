package tests

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
)

// TestServeMakesDKIMKeysAtFirstStart: on a fresh data directory `postie
// serve` makes a DKIM key for every domain (mode 0600), logs the TXT
// record to publish, and mail leaving for a remote recipient is signed
// with it, which that record verifies.
func TestServeMakesDKIMKeysAtFirstStart(t *testing.T) {
	world := newRemoteWorld(t)
	in := newInstance(t, world.extraConf)
	in.addUser("ann@example.test")
	in.start()

	for _, d := range []string{"example.test", "other.test"} {
		fi, err := os.Stat(filepath.Join(in.dir, "data", "dkim", d+".postie.key"))
		if err != nil {
			t.Fatalf("no DKIM key for %s after the first start: %v", d, err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s key mode %v, want 0600", d, fi.Mode().Perm())
		}
	}
	m := regexp.MustCompile(`txt_name=postie\._domainkey\.example\.test txt_value="(v=DKIM1; k=rsa; p=[A-Za-z0-9+/=]+)"`).FindStringSubmatch(in.log())
	if m == nil {
		t.Fatalf("the log does not give example.test's TXT record:\n%s", in.log())
	}
	txt := m[1]
	if out := in.mustRun("", "dkim", "keygen", "example.test"); !bytes.Contains([]byte(out), []byte(txt[len(txt)-40:])) {
		t.Errorf("dkim keygen shows another key than the one serve logged:\n%s", out)
	}

	body := "From: Ann <ann@example.test>\r\nTo: bob@remote.test\r\nSubject: first start\r\n\r\nHello Bob.\r\n"
	if err := submit(t, in, "ann@example.test", []string{"bob@remote.test"}, body); err != nil {
		t.Fatalf("submit: %v\n%s", err, in.log())
	}
	waitFor(t, "the backup MX to receive the message", 15*time.Second, func() bool { return len(world.backup.messages()) > 0 })
	got := world.backup.messages()[0]
	verifs, err := dkim.VerifyWithOptions(bytes.NewReader(got.data), &dkim.VerifyOptions{
		LookupTXT: func(domain string) ([]string, error) {
			if domain != "postie._domainkey.example.test" {
				return nil, fmt.Errorf("unexpected TXT lookup %q", domain)
			}
			return []string{txt}, nil
		},
	})
	if err != nil || len(verifs) != 1 || verifs[0].Err != nil || verifs[0].Domain != "example.test" {
		t.Fatalf("DKIM verification: %v %+v\n%s", err, verifs, got.data)
	}

	// A second start makes no new key and logs none.
	if err := in.stop(); err != nil {
		t.Fatal(err)
	}
	in.start()
	if regexp.MustCompile(`txt_name=`).MatchString(in.log()) {
		t.Errorf("a restart made a new key:\n%s", in.log())
	}
}
