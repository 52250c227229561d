package tests

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"postie/internal/dnstest"
)

// BenchmarkInboundChecks is issue 10's speed figure: inbound SMTP from
// clients outside the trusted networks (127.0.0.10–19, one per session)
// with every check on, against the same run with the checks off (the
// same clients made trusted: 127.0.0.0/8). "On" is: reverse DNS, two DNS
// block lists, SPF through an include, an RSA-2048 DKIM signature,
// DMARC p=reject, and the (untrained) junk filter, every DNS answer from
// a loopback server. Messages are 4 KiB to 10 users, each answered 250
// after the Maildir fsync, as in BenchmarkInboundSMTP. Reported as msgs/s.
func BenchmarkInboundChecks(b *testing.B) {
	for _, sessions := range []int{1, 10} {
		for _, on := range []bool{false, true} {
			name := fmt.Sprintf("sessions=%d/checks=off", sessions)
			if on {
				name = fmt.Sprintf("sessions=%d/checks=on", sessions)
			}
			b.Run(name, func(b *testing.B) { benchInbound(b, sessions, on) })
		}
	}
}

func benchInbound(b *testing.B, sessions int, on bool) {
	dns := dnstest.New(b)
	msg := benchWorld(b, dns)
	in := newInstance(b, fmt.Sprintf("\n[outbound]\nresolver = %q\n", dns.Addr()))
	keys := `dnsbl = ["bl1.test", "bl2.test"]`
	if !on {
		keys += "\ntrusted_networks = [\"127.0.0.0/8\"]"
	}
	setSMTPKeys(b, in, keys)
	for u := range 10 {
		in.addUser(fmt.Sprintf("u%d@example.test", u))
	}
	in.start()
	addr := in.ports["smtp"]
	// One message first, to check the setup: with the checks on it must
	// pass every one of them.
	if err := sendFrom("127.0.0.10", addr, "news@sender.test", []string{"u0@example.test"}, msg); err != nil {
		b.Fatal(err)
	}
	stored, err := filepath.Glob(filepath.Join(in.maildir("example.test", "u0"), "new", "*"))
	if err != nil || len(stored) != 1 {
		b.Fatalf("setup: %d messages stored (%v)", len(stored), err)
	}
	for _, name := range stored {
		m, err := os.ReadFile(name)
		if err != nil {
			b.Fatal(err)
		}
		ar := strings.Join(authResults(string(m)), " ")
		if on && (!strings.Contains(ar, "spf=pass") || !strings.Contains(ar, "dkim=pass") || !strings.Contains(ar, "dmarc=pass") || !bytes.Contains(m, []byte("(mail.sender.test [127.0.0.10])"))) {
			b.Fatalf("setup: the checks did not all pass:\n%s", m)
		}
		if !on && ar != "" {
			b.Fatalf("setup: checks ran on a trusted client:\n%s", m)
		}
	}
	var next, failed atomic.Int64
	cpu0, q0 := processCPU(in.serverPID()), dns.Total()
	b.ResetTimer()
	var wg sync.WaitGroup
	for s := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ip := fmt.Sprintf("127.0.0.%d", 10+s)
			for {
				n := next.Add(1) - 1
				if n >= int64(b.N) {
					return
				}
				if err := sendFrom(ip, addr, "news@sender.test", []string{fmt.Sprintf("u%d@example.test", n%10)}, msg); err != nil {
					if failed.Add(1) == 1 {
						b.Log(err)
					}
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	if failed.Load() > 0 {
		b.Fatalf("%d of %d messages failed", failed.Load(), b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64(dns.Total()-q0)/float64(b.N), "dns-queries/msg")
	if cpu0 >= 0 {
		// The server's own CPU per message: a figure the disk's and the
		// machine's load disturb less than the rate.
		b.ReportMetric(float64(processCPU(in.serverPID())-cpu0)/float64(b.N)/1e3, "server-cpu-µs/msg")
	}
	in.kill()
}

// processCPU is pid's user+system CPU time in nanoseconds, from
// /proc/PID/stat (clock ticks of 10 ms); -1 without /proc.
func processCPU(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	// The command name, field 2, may hold spaces: count from its ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return -1
	}
	var utime, stime int64
	fmt.Sscan(f[11], &utime)
	fmt.Sscan(f[12], &stime)
	return (utime + stime) * int64(10*time.Millisecond)
}

// benchWorld publishes sender.test's DNS (SPF with an include, DKIM key,
// DMARC p=reject, reverse DNS of 127.0.0.10–19) and returns a 4 KiB
// message signed for it.
func benchWorld(b *testing.B, dns *dnstest.Server) string {
	var ips []string
	for i := range 10 {
		ip := fmt.Sprintf("127.0.0.%d", 10+i)
		dns.PTR(ip, "mail.sender.test")
		ips = append(ips, ip)
	}
	dns.A("mail.sender.test", ips...)
	dns.TXT("sender.test", "v=spf1 include:_spf.esp.test mx -all")
	dns.TXT("_spf.esp.test", "v=spf1 ip4:192.0.2.0/24 ip4:127.0.0.0/24 -all")
	dns.TXT("_dmarc.sender.test", "v=DMARC1; p=reject; rua=mailto:dmarc@sender.test")
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		b.Fatal(err)
	}
	dns.TXT("s1._domainkey.sender.test", "v=DKIM1; k=rsa; p="+base64.StdEncoding.EncodeToString(der))
	body := "From: News <news@sender.test>\r\nTo: you@example.test\r\nSubject: bench\r\nDate: Mon, 01 Jun 2026 10:00:00 +0000\r\n" +
		"Message-ID: <bench@sender.test>\r\n\r\n" + strings.Repeat(strings.Repeat("x", 62)+"\r\n", 64)
	var out bytes.Buffer
	if err := dkim.Sign(&out, strings.NewReader(body), &dkim.SignOptions{Domain: "sender.test", Selector: "s1", Signer: key}); err != nil {
		b.Fatal(err)
	}
	return out.String()
}
