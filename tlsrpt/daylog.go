package tlsrpt

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
)

// A day's file holds counts, not sessions: each line is a PolicyReport
// (one policy of one policy domain, with its success count and its failure
// details counted), the sum of one Flush's sessions under that policy.
// Lines for the same policy add up; the Recorder compacts the file (one
// line per policy) once it has grown past twice its last compacted size,
// so the file and the report run are bounded by the number of distinct
// policies and failure kinds, not by the number of sessions.

// dayAgg sums sessions and stored lines by policy, in order of first sight.
type dayAgg struct {
	pols  []*aggPolicy
	byKey map[string]*aggPolicy
}

type aggPolicy struct {
	rep     PolicyReport
	details map[detailKey]int
}

type detailKey struct {
	typ                 ResultType
	sip, mx, rip, extra string
}

func newDayAgg() *dayAgg { return &dayAgg{byKey: map[string]*aggPolicy{}} }

func (a *dayAgg) policy(desc PolicyDesc) *aggPolicy {
	k := descKey(desc)
	p := a.byKey[k]
	if p == nil {
		p = &aggPolicy{rep: PolicyReport{Policy: desc}, details: map[detailKey]int{}}
		a.byKey[k] = p
		a.pols = append(a.pols, p)
	}
	return p
}

// addResult counts one session.
func (a *dayAgg) addResult(r Result) {
	p := a.policy(describePolicy(r))
	if r.Type == Success {
		p.rep.Summary.Successful++
		return
	}
	p.rep.Summary.Failed++
	p.addDetail(FailureDetail{ResultType: r.Type, SendingMTAIP: r.SendingIP, ReceivingMXHostname: r.MXHost,
		ReceivingIP: r.ReceivingIP, FailureReasonCode: clip(r.Detail, maxDetail), FailedSessionCount: 1})
}

// addReport adds a stored line's counts.
func (a *dayAgg) addReport(pr PolicyReport) {
	p := a.policy(pr.Policy)
	p.rep.Summary.Successful += pr.Summary.Successful
	p.rep.Summary.Failed += pr.Summary.Failed
	for _, d := range pr.FailureDetails {
		p.addDetail(d)
	}
}

func (p *aggPolicy) addDetail(d FailureDetail) {
	k := detailKey{d.ResultType, d.SendingMTAIP, d.ReceivingMXHostname, d.ReceivingIP, d.FailureReasonCode}
	i, ok := p.details[k]
	if !ok {
		i = len(p.rep.FailureDetails)
		p.details[k] = i
		n := d.FailedSessionCount
		d.FailedSessionCount = 0
		p.rep.FailureDetails = append(p.rep.FailureDetails, d)
		d.FailedSessionCount = n
	}
	p.rep.FailureDetails[i].FailedSessionCount += d.FailedSessionCount
}

// reports are the sums, one per policy.
func (a *dayAgg) reports() []PolicyReport {
	out := make([]PolicyReport, len(a.pols))
	for i, p := range a.pols {
		out[i] = p.rep
	}
	return out
}

// lines is the sums as stored: one JSON line per policy; a line longer
// than maxLine (a pathological policy) is not kept.
func (a *dayAgg) lines() []byte {
	var b bytes.Buffer
	for _, p := range a.pols {
		line, err := json.Marshal(p.rep)
		if err != nil || len(line) > maxLine {
			continue // plain data: cannot fail
		}
		b.Write(line)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// descKey tells policies apart: their domain, type and text, and for DANE
// and no policy (which are per MX host) the host.
func descKey(d PolicyDesc) string {
	k := d.Domain + "\x00" + string(d.Type) + "\x00" + strings.Join(d.String, "\x01")
	if d.Type != PolicySTS && len(d.MXHost) > 0 {
		k += "\x00" + strings.ToLower(d.MXHost[0])
	}
	return k
}

// readDay returns the sums stored for a day, one per policy, skipping
// lines that do not parse (a torn tail).
func readDay(dir, day string) ([]PolicyReport, error) {
	f, err := os.Open(filepath.Join(dir, day+recordExt))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	agg := newDayAgg()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine+1024)
	for sc.Scan() {
		var pr PolicyReport
		if json.Unmarshal(sc.Bytes(), &pr) == nil && pr.Policy.Domain != "" && pr.Policy.Type != "" {
			agg.addReport(pr)
			continue
		}
		// A line of the earlier format: one session's Result.
		var old stored
		if json.Unmarshal(sc.Bytes(), &old) == nil && old.PolicyDomain != "" {
			agg.addResult(old.Result)
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, bufio.ErrTooLong) {
		return agg.reports(), err
	}
	return agg.reports(), nil
}
