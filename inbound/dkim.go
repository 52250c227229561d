package inbound

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"

	"github.com/emersion/go-msgauth/dkim"
)

// DKIMResult is the verdict on one DKIM-Signature field (RFC 6376 §6).
type DKIMResult struct {
	Result   Result // pass, fail, temperror, permerror, neutral
	Domain   string // d=, the signing domain (SDID)
	Selector string // s=
	B        string // b=, the signature, white space removed (for header.b)
	Reason   string // why it did not pass
}

// dkim verifies up to MaxDKIMSignatures signatures of the message whose
// header fields are fields. A message without signatures gives none.
func (c *Checker) dkim(ctx context.Context, fields []field, msg io.ReaderAt, size int64) []DKIMResult {
	var sigs []map[string]string
	for _, f := range fields {
		if strings.EqualFold(f.name, "DKIM-Signature") {
			sigs = append(sigs, dkimTags(f.value()))
		}
	}
	if len(sigs) == 0 {
		return nil
	}
	if len(sigs) > c.o.MaxDKIMSignatures {
		c.o.Logger.Debug("inbound: dkim signatures ignored", "signatures", len(sigs), "verified", c.o.MaxDKIMSignatures)
		sigs = sigs[:c.o.MaxDKIMSignatures]
	}
	if why := unverifiable(fields, size); why != "" {
		out := make([]DKIMResult, len(sigs))
		for i, tags := range sigs {
			out[i] = DKIMResult{Domain: strings.ToLower(tags["d"]), Selector: tags["s"], B: tags["b"],
				Result: PermError, Reason: why}
		}
		return out
	}
	var r io.Reader = io.NewSectionReader(msg, 0, size)
	if hdr := fieldsLen(fields); hdr == size {
		// No blank line after the header: the library wants one.
		tail := "\r\n\r\n"
		if endsInLF(msg, size) {
			tail = "\r\n"
		}
		r = io.MultiReader(r, strings.NewReader(tail))
	}
	verifs, err := dkim.VerifyWithOptions(r, &dkim.VerifyOptions{
		LookupTXT:        func(name string) ([]string, error) { return c.r.LookupTXT(ctx, name) },
		MaxVerifications: c.o.MaxDKIMSignatures,
	})
	if errors.Is(err, dkim.ErrTooManySignatures) {
		err = nil
	}
	out := make([]DKIMResult, len(sigs))
	for i, tags := range sigs {
		out[i] = DKIMResult{Domain: strings.ToLower(tags["d"]), Selector: tags["s"], B: tags["b"]}
		switch {
		case err != nil || i >= len(verifs):
			// Reading the message failed: nothing was decided.
			out[i].Result, out[i].Reason = TempError, "verification failed"
		default:
			out[i].Result, out[i].Reason = dkimResult(verifs[i].Err)
		}
	}
	if err != nil {
		c.o.Logger.Debug("inbound: dkim verification failed", "err", err)
	}
	return out
}

// Bounds on the header that go-msgauth's DKIM verifier is given: it joins
// each field's continuation lines by copying the field again for every one
// (quadratic: 200,000 folded lines take it seconds of CPU that no context
// stops) and reads the header whole, past maxHeader.
const (
	maxDKIMHeader     = 256 << 10
	maxDKIMFieldLines = 256
)

// unverifiable says why the header is too large to verify, or "".
func unverifiable(fields []field, size int64) string {
	n := fieldsLen(fields)
	if n > maxDKIMHeader || (n == maxHeader && size > maxHeader) {
		return "header too large to verify"
	}
	for _, f := range fields {
		if bytes.Count(f.raw, []byte{'\n'}) > maxDKIMFieldLines {
			return "header field folded too often to verify"
		}
	}
	return ""
}

// dkimResult maps go-msgauth's verification error to a result.
func dkimResult(err error) (Result, string) {
	if err == nil {
		return Pass, ""
	}
	reason := strings.TrimPrefix(err.Error(), "dkim: ")
	// go-msgauth flattens the resolver's error into its text ("key
	// unavailable: lookup ... on <our DNS server>: ..."): keep its own part.
	if i := strings.Index(reason, ": lookup "); i >= 0 {
		reason = reason[:i]
	}
	switch {
	case dkim.IsTempFail(err):
		return TempError, reason
	case dkim.IsPermFail(err):
		return PermError, reason
	}
	return Fail, reason
}

// dkimTags parses a DKIM-Signature tag-list (RFC 6376 §3.2) leniently:
// names and values trimmed, white space inside values removed, malformed
// pairs skipped, the first occurrence of a tag kept. The library does the
// strict parse; this only names the signature in the results.
func dkimTags(v string) map[string]string {
	tags := map[string]string{}
	for _, pair := range strings.Split(v, ";") {
		name, val, ok := strings.Cut(pair, "=")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			continue
		}
		if _, dup := tags[name]; !dup {
			tags[name] = strings.Join(strings.Fields(val), "")
		}
	}
	return tags
}

func fieldsLen(fields []field) int64 {
	var n int64
	for _, f := range fields {
		n += int64(len(f.raw))
	}
	return n
}

func endsInLF(msg io.ReaderAt, size int64) bool {
	if size == 0 {
		return false
	}
	b := make([]byte, 1)
	_, err := msg.ReadAt(b, size-1)
	return err == nil && b[0] == '\n'
}
