package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
)

// row is one figure of the table: the values of both servers.
type row struct {
	id, label, unit string
	better          better
	values          map[string]float64 // by server: the median of its samples
	samples         map[string][]float64
}

// readFigures parses a results file, keeping the first-seen order of the
// figures. A figure recorded more than once for one server (run.sh repeats
// the IMAP and POP3 loads, alternating the servers) is the median of its
// samples, and its label says so.
func readFigures(r io.Reader) ([]*row, error) {
	var rows []*row
	byID := map[string]*row{}
	sc := bufio.NewScanner(r)
	for ln := 1; sc.Scan(); ln++ {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 6 {
			return nil, fmt.Errorf("results line %d: %d fields, want 6", ln, len(f))
		}
		v, err := strconv.ParseFloat(f[5], 64)
		if err != nil {
			return nil, fmt.Errorf("results line %d: %w", ln, err)
		}
		rw := byID[f[0]]
		if rw == nil {
			rw = &row{id: f[0], label: f[1], unit: f[2], better: better(f[3]), values: map[string]float64{},
				samples: map[string][]float64{}}
			byID[f[0]] = rw
			rows = append(rows, rw)
		}
		rw.samples[f[4]] = append(rw.samples[f[4]], v)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for _, rw := range rows {
		rw.summarize()
	}
	return rows, nil
}

// summarize sets each server's value to the median of its samples and, when
// there was more than one, appends "(median of N)" to the label.
func (rw *row) summarize() {
	counts := map[int]bool{}
	n := 0
	for server, vs := range rw.samples {
		rw.values[server] = median(vs)
		counts[len(vs)] = true
		n = max(n, len(vs))
	}
	switch {
	case n <= 1:
	case len(counts) == 1:
		rw.label += fmt.Sprintf(" (median of %d)", n)
	default: // a server lost some rounds: say how many each had
		var parts []string
		for _, server := range []string{"postie", "ref", "host"} {
			if vs, ok := rw.samples[server]; ok {
				parts = append(parts, fmt.Sprintf("%s %d", server, len(vs)))
			}
		}
		rw.label += " (medians of " + strings.Join(parts, ", ") + ")"
	}
}

// median is the middle value, or the mean of the two middle ones.
func median(vs []float64) float64 {
	s := slices.Clone(vs)
	slices.Sort(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// ratio orients the comparison so that above 1 means Postie is better.
func (rw *row) ratio() (float64, bool) {
	p, okp := rw.values["postie"]
	r, okr := rw.values["ref"]
	if !okp || !okr {
		return 0, false
	}
	switch rw.better {
	case higher:
		if r == 0 {
			return 0, false
		}
		return p / r, true
	case lower:
		if p <= 0 {
			return 0, false // a delta at or below zero has no meaningful ratio
		}
		return r / p, true
	}
	return 0, false
}

func fmtValue(v float64, ok bool) string {
	if !ok {
		return "—"
	}
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

// writeTable prints the comparison rows, then the context rows.
func writeTable(w io.Writer, rows []*row) {
	fmt.Fprintln(w, "ratio = Postie ÷ reference for rates (msg/s, MB/s); reference ÷ Postie for times and memory.")
	fmt.Fprintln(w, "Either way, ratio > 1 means Postie is better. Reference: Postfix for SMTP, Dovecot for IMAP/POP3/memory.")
	fmt.Fprintln(w)
	width := len("figure")
	for _, rw := range rows {
		width = max(width, len([]rune(rw.label))+len(rw.unit)+3)
	}
	line := strings.Repeat("-", width+42)
	fmt.Fprintf(w, "%-*s %12s %12s %9s %5s\n", width, "figure", "Postie", "reference", "ratio", "")
	fmt.Fprintln(w, line)
	var infos []*row
	for _, rw := range rows {
		if rw.better == info {
			infos = append(infos, rw)
			continue
		}
		p, okp := rw.values["postie"]
		r, okr := rw.values["ref"]
		ratio, okq := rw.ratio()
		mark := ""
		if okq && ratio < 1 {
			mark = "BEHIND"
		}
		fmt.Fprintf(w, "%-*s %12s %12s %9s %5s\n", width, rw.label+" ("+rw.unit+")",
			fmtValue(p, okp), fmtValue(r, okr), fmtValueRatio(ratio, okq), mark)
	}
	if len(infos) > 0 {
		fmt.Fprintln(w, line)
		for _, rw := range infos {
			v, ok := rw.values["host"]
			fmt.Fprintf(w, "%-*s %12s\n", width, rw.label+" ("+rw.unit+")", fmtValue(v, ok))
		}
	}
}

func fmtValueRatio(v float64, ok bool) string {
	if !ok {
		return "—"
	}
	return strconv.FormatFloat(v, 'f', 2, 64) + "x"
}

func cmdTable(args []string) error {
	fs := newFlags("table")
	in := fs.String("in", "", "results file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	f, err := os.Open(*in)
	if err != nil {
		return err
	}
	defer f.Close()
	rows, err := readFigures(f)
	if err != nil {
		return err
	}
	writeTable(os.Stdout, rows)
	return nil
}
