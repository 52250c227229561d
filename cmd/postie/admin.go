package main

import (
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"postie/config"
	"postie/dkim"
	"postie/envelope"
	"postie/internal/textsafe"
	"postie/queue"
)

func cmdQueue(e *env, args []string) error {
	if len(args) == 0 {
		return usageError{"queue needs a subcommand: list, flush, delete ID, bounce ID"}
	}
	sub := args[0]
	fs, cfgPath := newFlags(e, "queue "+sub)
	pos, err := parseFlags(fs, args[1:])
	if err != nil {
		return err
	}
	want := map[string]int{"list": 0, "flush": 0, "delete": 1, "bounce": 1}
	n, ok := want[sub]
	if !ok {
		return usageError{fmt.Sprintf("unknown queue subcommand %q", sub)}
	}
	if len(pos) != n {
		return usageError{fmt.Sprintf("queue %s takes %d argument(s)", sub, n)}
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	dir := cfg.QueueDir()
	switch sub {
	case "list":
		return printQueue(e, dir)
	case "flush":
		if err := queue.Flush(dir); err != nil {
			return err
		}
		fmt.Fprintln(e.stdout, "queue flushed: every pending message is being tried now")
	case "delete":
		if err := queue.Delete(dir, pos[0]); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "deleted %s\n", pos[0])
	case "bounce":
		if err := queue.Bounce(dir, pos[0]); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "bounced %s: the sender gets a delivery status notification\n", pos[0])
	}
	return nil
}

func printQueue(e *env, dir string) error {
	items, err := queue.List(dir)
	if err != nil {
		return err
	}
	if len(items) == 0 {
		fmt.Fprintln(e.stdout, "the queue is empty")
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tAGE\tSIZE\tSENDER\tRECIPIENTS\tATTEMPTS\tNEXT TRY\tLAST ERROR")
	now := time.Now()
	for _, it := range items {
		var rcpts []string
		for _, r := range it.Rcpts {
			rcpts = append(rcpts, r.Addr+" ("+r.Status+")")
		}
		next := "-"
		if !it.NextAttempt.IsZero() {
			next = it.NextAttempt.Sub(now).Round(time.Second).String()
			if it.NextAttempt.Before(now) {
				next = "now"
			}
		}
		from := it.From
		if from == "" {
			from = "<>"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%d\t%s\t%s\n", it.ID, now.Sub(it.Created).Round(time.Second), it.Size,
			from, strings.Join(rcpts, ", "), it.Attempts, next, oneLine(it.LastError))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, it := range items {
		if it.Explanation != "" {
			fmt.Fprintf(e.stdout, "\n%s: %s\n", it.ID, it.Explanation)
		}
	}
	return nil
}

// oneLine makes a remote reply (a queue error, a suppression reason) fit
// one line of a listing on the administrator's terminal: line breaks become
// spaces, and every other control character (an ESC or a C1 CSI would
// drive the terminal) or invalid byte becomes '?' (textsafe.Clean); a
// long text is cut on a character boundary.
func oneLine(s string) string {
	s = strings.ReplaceAll(strings.ReplaceAll(s, "\r", " "), "\n", " ")
	if len(s) > 120 {
		return textsafe.Clean(s, 117, "") + "..."
	}
	return textsafe.Clean(s, 0, "")
}

func cmdDKIM(e *env, args []string) error {
	if len(args) == 0 || args[0] != "keygen" {
		return usageError{"dkim needs a subcommand: keygen DOMAIN"}
	}
	fs, cfgPath := newFlags(e, "dkim keygen")
	pos, err := parseFlags(fs, args[1:])
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{"dkim keygen DOMAIN"}
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	domain := envelope.CanonDomain(pos[0])
	ours := false
	for _, d := range cfg.Domains {
		ours = ours || d == domain
	}
	if !ours {
		return fmt.Errorf("%s is not one of the configured domains %v", domain, cfg.Domains)
	}
	name, value, err := dkim.KeyGen(cfg.DKIMDir(), domain, cfg.Outbound.DKIMSelector)
	if errors.Is(err, dkim.ErrKeyExists) {
		if name, value, err = dkim.Record(cfg.DKIMDir(), domain, cfg.Outbound.DKIMSelector); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "%s already has a key (it is kept); its DNS TXT record:\n\n%s. IN TXT ( %s )\n", domain, name, txtChunks(value))
		return nil
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "Publish this DNS TXT record; a running postie signs with the key from the next message on:\n\n%s. IN TXT ( %s )\n", name, txtChunks(value))
	return nil
}

// txtChunks splits a TXT value into quoted strings of at most 255 octets,
// the most one DNS character-string holds (RFC 1035 §3.3); a 2048-bit key
// needs two.
func txtChunks(v string) string {
	var parts []string
	for len(v) > 255 {
		parts = append(parts, `"`+v[:255]+`"`)
		v = v[255:]
	}
	return strings.Join(append(parts, `"`+v+`"`), " ")
}
