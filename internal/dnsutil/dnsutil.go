// Package dnsutil holds what every DNS-using package of Postie needs to
// say the same way. It is tiny on purpose: lookups themselves stay with
// the packages (through their own small Resolver interfaces).
package dnsutil

import (
	"errors"
	"net"
)

// NotFound reports a definite "no such name" or "no such record" answer
// (NXDOMAIN or NODATA: net.Resolver cannot tell them apart), as opposed
// to a failure to get an answer (timeout, SERVFAIL), which may be retried.
func NotFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound && !de.IsTemporary && !de.IsTimeout
}
