package dnsutil

import (
	"errors"
	"fmt"
	"net"
	"testing"
)

func TestNotFound(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&net.DNSError{Err: "no such host", IsNotFound: true}, true},
		{fmt.Errorf("wrapped: %w", &net.DNSError{IsNotFound: true}), true},
		{&net.DNSError{Err: "server misbehaving", IsTemporary: true}, false},
		{&net.DNSError{IsNotFound: true, IsTimeout: true}, false},
		{&net.DNSError{IsNotFound: true, IsTemporary: true}, false},
		{errors.New("no such host"), false},
		{nil, false},
	} {
		if got := NotFound(tc.err); got != tc.want {
			t.Errorf("NotFound(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
