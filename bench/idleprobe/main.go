// Command idleprobe serves IMAP (imapd, in process, over TLS and plaintext on loopback) for
// loadgen idle, and on SIGUSR1 prints where the memory of the process goes (runtime.MemStats)
// and writes a heap profile: what idle connections cost, by kind.
//
//	go run ./bench/idleprobe -dir /tmp/x &   # prints the ports and its pid
//	loadgen idle -addr 127.0.0.1:PORT -tls -conns 1000 -pass pw -pid PID
//	kill -USR1 PID
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"

	"postie/accounts"
	"postie/imapd"
	"postie/maildir"
)

type anyAuth struct{}

func (anyAuth) Login(_ context.Context, _, _, username, password string) (*accounts.User, error) {
	local, domain, ok := strings.Cut(strings.ToLower(username), "@")
	if !ok || password != "pw" {
		return nil, accounts.ErrAuthFailed
	}
	return &accounts.User{Address: local + "@" + domain, Local: local, Domain: domain}, nil
}

func main() {
	dir := flag.String("dir", "", "mail store directory")
	cert := flag.String("cert", "", "certificate PEM")
	key := flag.String("key", "", "key PEM")
	flag.Parse()
	kp, err := tls.LoadX509KeyPair(*cert, *key)
	if err != nil {
		log.Fatal(err)
	}
	store := maildir.NewStore(*dir, maildir.StoreOptions{Hostname: "probe"})
	srv := imapd.New(imapd.Options{Store: store, Auth: anyAuth{}, TLSConfig: &tls.Config{Certificates: []tls.Certificate{kp}},
		MaxConnections: 10000, MaxConnectionsPerIP: 10000})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	tln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve(ln)
	go srv.ServeTLS(tln)
	fmt.Printf("plain %s tls %s pid %d\n", ln.Addr(), tln.Addr(), os.Getpid())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR1, syscall.SIGTERM)
	for s := range sig {
		if s == syscall.SIGTERM {
			return
		}
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		fmt.Printf("goroutines %d heapInuse %d KiB heapAlloc %d KiB stackInuse %d KiB sys %d KiB heapIdle %d KiB released %d KiB\n",
			runtime.NumGoroutine(), m.HeapInuse>>10, m.HeapAlloc>>10, m.StackInuse>>10, m.Sys>>10, m.HeapIdle>>10, m.HeapReleased>>10)
		if f, err := os.Create(*dir + "/heap.pprof"); err == nil {
			pprof.WriteHeapProfile(f)
			f.Close()
		}
		if f, err := os.Create(*dir + "/goroutines.txt"); err == nil {
			pprof.Lookup("goroutine").WriteTo(f, 1)
			f.Close()
		}
	}
}
