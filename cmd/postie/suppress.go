package main

import (
	"fmt"
	"path/filepath"
	"text/tabwriter"
	"time"

	"postie/config"
	"postie/envelope"
	"postie/suppress"
)

// suppressFile is where the suppression list lives: data_dir/suppress.json.
func suppressFile(cfg *config.Config) string { return filepath.Join(cfg.DataDir, "suppress.json") }

// openSuppress opens the suppression list of cfg; with [outbound]
// suppress_for = 0 it is off (Check never matches, Add does nothing).
func openSuppress(cfg *config.Config) (*suppress.List, error) {
	return suppress.Open(suppress.Options{Path: suppressFile(cfg), For: cfg.Outbound.SuppressFor})
}

// cmdSuppress is `postie suppress list|add|del`: the recipients the
// submission role refuses because they hard-bounced.
func cmdSuppress(e *env, args []string) error {
	if len(args) == 0 {
		return usageError{"suppress needs a subcommand: list, add ADDRESS, del ADDRESS"}
	}
	sub := args[0]
	fs, cfgPath := newFlags(e, "suppress "+sub)
	pos, err := parseFlags(fs, args[1:])
	if err != nil {
		return err
	}
	want := map[string]int{"list": 0, "add": 1, "del": 1}
	n, ok := want[sub]
	if !ok {
		return usageError{fmt.Sprintf("unknown suppress subcommand %q", sub)}
	}
	if len(pos) != n {
		return usageError{fmt.Sprintf("suppress %s takes %d argument(s)", sub, n)}
	}
	var addr string
	if n == 1 {
		if addr, err = envelope.Normalize(pos[0]); err != nil {
			return usageError{fmt.Sprintf("suppress %s: %v", sub, err)}
		}
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	l, err := openSuppress(cfg)
	if err != nil {
		return err
	}
	switch sub {
	case "list":
		return printSuppress(e, l)
	case "add":
		if !l.Enabled() {
			return fmt.Errorf("the suppression list is off ([outbound] suppress_for = 0): nothing added")
		}
		if err := l.Add(addr, suppress.ReasonManual); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "suppressed %s until %s\n", addr, time.Now().Add(cfg.Outbound.SuppressFor).Format(time.DateOnly))
	case "del":
		found, err := l.Remove(addr)
		if err != nil {
			return err
		}
		if !found {
			return exitError{exitFailure, fmt.Errorf("%s is not on the suppression list", addr)}
		}
		fmt.Fprintf(e.stdout, "removed %s from the suppression list\n", addr)
	}
	return nil
}

func printSuppress(e *env, l *suppress.List) error {
	entries, err := l.Entries()
	if err != nil {
		return err
	}
	if !l.Enabled() {
		fmt.Fprintln(e.stdout, "the suppression list is off ([outbound] suppress_for = 0)")
	}
	if len(entries) == 0 {
		fmt.Fprintln(e.stdout, "the suppression list is empty")
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "ADDRESS\tSINCE\tUNTIL\tREASON")
	for _, en := range entries {
		until := "-"
		if l.Enabled() {
			until = l.Until(en).Format(time.DateOnly)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", en.Addr, en.Since.Format(time.DateOnly), until, oneLine(en.Reason))
	}
	return tw.Flush()
}
