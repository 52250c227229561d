package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"postie/accounts"
)

// cmdPorts prints n distinct free ports on 127.0.0.1, one a line. They are
// held open together so they differ, then released for the servers.
func cmdPorts(args []string) error {
	fs := newFlags("ports")
	n := fs.Int("n", 1, "how many")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for i := 0; i < *n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		lns = append(lns, ln)
		fmt.Println(ln.Addr().(*net.TCPAddr).Port)
	}
	return nil
}

// cmdPwhash prints a Dovecot passwd-file password hashed by Postie's own
// accounts.HashPassword, so that both servers pay the same for a login
// whatever parameters Postie uses.
func cmdPwhash(args []string) error {
	fs := newFlags("pwhash")
	pw := fs.String("password", "", "the password")
	if err := fs.Parse(args); err != nil {
		return err
	}
	h, err := accounts.HashPassword(*pw)
	if err != nil {
		return err
	}
	fmt.Printf("{ARGON2ID}%s\n", h)
	return nil
}

// cmdFsync measures what bounds durable delivery: a small file written,
// fsynced, renamed into another directory, and that directory fsynced, per
// second, with w writers at once.
func cmdFsync(args []string) error {
	fs := newFlags("fsync")
	rec := commonFlags(fs)
	dir := fs.String("dir", "", "directory on the disk under test")
	writers := fs.Int("writers", 1, "concurrent writers")
	dur := fs.Duration("duration", 2*time.Second, "how long to run")
	size := fs.Int("size", 4096, "bytes per file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		return fmt.Errorf("-dir is required")
	}
	root, err := os.MkdirTemp(*dir, "fsync-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	tmp, dst := filepath.Join(root, "tmp"), filepath.Join(root, "new")
	for _, d := range []string{tmp, dst} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
	}
	data := make([]byte, *size)
	var ops atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	deadline := time.Now().Add(*dur)
	start := time.Now()
	for w := 0; w < *writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline); i++ {
				if err := syncedWrite(tmp, dst, fmt.Sprintf("%d.%d", w, i), data); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				ops.Add(1)
			}
		}(w)
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	rate := float64(ops.Load()) / time.Since(start).Seconds()
	return rec.record(fmt.Sprintf("fsync.w%d", *writers),
		fmt.Sprintf("disk: write+fsync+rename+dir fsync, %d writer(s)", *writers), "ops/s", info, rate)
}

func syncedWrite(tmpDir, dstDir, name string, data []byte) error {
	p := filepath.Join(tmpDir, name)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(p, filepath.Join(dstDir, name)); err != nil {
		return err
	}
	d, err := os.Open(dstDir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
