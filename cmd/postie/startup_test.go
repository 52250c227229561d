package main

import (
	"errors"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
)

func TestListenErrorNamesTheFix(t *testing.T) {
	denied := &net.OpError{Op: "listen", Net: "tcp", Err: os.NewSyscallError("bind", syscall.EACCES)}
	err := listenError("smtp", "0.0.0.0:25", denied)
	msg := err.Error()
	for _, want := range []string{"listen 0.0.0.0:25: permission denied", "CAP_NET_BIND_SERVICE", "contrib/postie.service", "setcap cap_net_bind_service=+ep"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q: %s", want, msg)
		}
	}
	if !errors.Is(err, syscall.EACCES) {
		t.Error("the cause is no longer wrapped")
	}
	// Not a privileged port, or not a permission error: no hint.
	for _, e := range []error{
		listenError("smtp", "127.0.0.1:1024", denied),
		listenError("smtp", "0.0.0.0:25", &net.OpError{Op: "listen", Net: "tcp", Err: os.NewSyscallError("bind", syscall.EADDRINUSE)}),
	} {
		if strings.Contains(e.Error(), "CAP_NET_BIND_SERVICE") {
			t.Errorf("hint where it does not apply: %v", e)
		}
	}
}
