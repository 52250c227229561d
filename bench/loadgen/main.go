// Command loadgen drives the side-by-side benchmark of Postie against Postfix
// and Dovecot (bench/run.sh): it generates the mail, runs the SMTP, IMAP,
// POP3, idle-memory and fsync loads, records one figure per line in a
// results file, and prints the comparison table.
//
// Every load subcommand takes -server (a column name: postie, ref or host)
// and -out (the results file it appends to). See bench/README.md for how
// each figure is measured.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

const usage = `usage: loadgen COMMAND [flags]

commands:
  ports     -n N                          print N free TCP ports on 127.0.0.1
  pwhash    -password PW                  print a Dovecot {ARGON2ID} hash with Postie's parameters
  mailgen   -n N -seed S -word W DIR...   write the IMAP/POP3 mailbox into each Maildir
  smtp      -addr A -n N -c C -size B ... SMTP inbound load; waits for delivery into Maildir
  imap      -addr A -user U -pass P ...   IMAP figures on the generated mailbox
  pop3      -addr A -user U -pass P ...   POP3 figures on the generated mailbox
  idle      -addr A -conns N ...          resident memory with N idle IMAP connections
  fsync     -dir D -writers W ...         the disk's raw fsync rate
  table     -in FILE                      print the comparison table
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	cmds := map[string]func(args []string) error{
		"ports":   cmdPorts,
		"pwhash":  cmdPwhash,
		"mailgen": cmdMailgen,
		"smtp":    cmdSMTP,
		"imap":    cmdIMAP,
		"pop3":    cmdPOP3,
		"idle":    cmdIdle,
		"fsync":   cmdFsync,
		"table":   cmdTable,
	}
	run, ok := cmds[os.Args[1]]
	if !ok {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	if err := run(os.Args[2:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintf(os.Stderr, "loadgen %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

// Better says which way a figure improves.
type better string

const (
	higher better = "higher"
	lower  better = "lower"
	info   better = "info" // printed for information, no ratio
)

// figure is one measured value, one line of the results file.
type figure struct {
	ID     string // stable key: rows of the two servers with the same ID are compared
	Label  string // what the table shows
	Unit   string
	Better better
	Server string // "postie", "ref" or "host"
	Value  float64
}

// recorder appends figures to the results file and echoes them to stdout so
// a run shows progress.
type recorder struct {
	server string
	out    string
	stdout io.Writer
}

// commonFlags registers -server and -out on fs.
func commonFlags(fs *flag.FlagSet) *recorder {
	r := &recorder{stdout: os.Stdout}
	fs.StringVar(&r.server, "server", "ref", "column of the figures: postie, ref or host")
	fs.StringVar(&r.out, "out", "", "results file to append to (none: stdout only)")
	return r
}

func (r *recorder) record(id, label, unit string, b better, value float64) error {
	f := figure{ID: id, Label: label, Unit: unit, Better: b, Server: r.server, Value: value}
	fmt.Fprintf(r.stdout, "  %-7s %-70s %10.2f %s\n", r.server, label, value, unit)
	if r.out == "" {
		return nil
	}
	file, err := os.OpenFile(r.out, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("results: %w", err)
	}
	_, err = fmt.Fprintln(file, formatFigure(f))
	if cerr := file.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("results: %w", err)
	}
	return nil
}

// formatFigure is one tab-separated results line; labels carry no tabs.
func formatFigure(f figure) string {
	clean := func(s string) string { return strings.ReplaceAll(s, "\t", " ") }
	return strings.Join([]string{clean(f.ID), clean(f.Label), clean(f.Unit), string(f.Better), clean(f.Server),
		fmt.Sprintf("%g", f.Value)}, "\t")
}

// newFlags returns a flag set that reports errors instead of exiting.
func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	return fs
}
