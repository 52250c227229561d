package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"postie/config"
	"postie/dnsrecords"
	"postie/envelope"
	"postie/outbound"
)

// ipFlags collects repeated -ip flags.
type ipFlags []netip.Addr

func (f *ipFlags) String() string { return fmt.Sprint(*f) }

func (f *ipFlags) Set(s string) error {
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return err
	}
	*f = append(*f, ip.Unmap())
	return nil
}

// cmdDNS is `postie dns [DOMAIN...]`, printing the records to publish, and
// `postie dns check [DOMAIN...]`, checking them live.
func cmdDNS(e *env, args []string) error {
	check := len(args) > 0 && args[0] == "check"
	name := "dns"
	if check {
		name, args = "dns check", args[1:]
	}
	fs, cfgPath := newFlags(e, name)
	var ips ipFlags
	fs.Var(&ips, "ip", "a public `address` of hostname (repeatable)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	o, err := dnsOptions(cfg, ips, pos)
	if err != nil {
		return err
	}
	if check {
		return dnsCheck(e, cfg, o)
	}
	printZone(e, o)
	return nil
}

func dnsOptions(cfg *config.Config, ips []netip.Addr, domains []string) (dnsrecords.Options, error) {
	o := dnsrecords.Options{
		Hostname: cfg.Hostname, Domains: cfg.Domains, IPs: ips,
		DKIMDir: cfg.DKIMDir(), DKIMSelector: cfg.Outbound.DKIMSelector,
		Ports: dnsrecords.Ports{
			Submissions: firstPort(cfg.Submission.TLSListen, 465),
			Submission:  firstPort(cfg.Submission.Listen, 587),
			IMAPS:       firstPort(cfg.IMAP.TLSListen, 993),
			IMAP:        firstPort(cfg.IMAP.Listen, 143),
			POP3S:       firstPort(cfg.POP3.TLSListen, 995),
			POP3:        firstPort(cfg.POP3.Listen, 110),
			// the [http] role's HTTPS port, which the autodiscover
			// documents also name; 443 when it has none (a proxy).
			Autodiscover: firstPort(cfg.HTTP.TLSListen, 443),
		},
		STS: stsPolicy(cfg),
	}
	if len(domains) > 0 {
		o.Domains = nil
		for _, d := range domains {
			d = envelope.CanonDomain(d)
			if !slices.Contains(cfg.Domains, d) {
				return o, fmt.Errorf("%s is not one of the configured domains %v", d, cfg.Domains)
			}
			o.Domains = append(o.Domains, d)
		}
	}
	return o, nil
}

// stsPolicy is the MTA-STS policy that serve publishes ([http]
// mta_sts_mode and mta_sts_max_age, which config.Load defaults and
// validates), so the _mta-sts id changes with it.
func stsPolicy(cfg *config.Config) dnsrecords.STSPolicy {
	return dnsrecords.STSPolicy{Mode: cfg.HTTP.MTASTSMode, MaxAge: int(cfg.HTTP.MTASTSMaxAge / time.Second)}
}

// firstPort is the port of the first listener, 0 when there is none. A
// listener on port 0 (the kernel picks one, as in tests) announces the
// role's standard port def.
func firstPort(listen []string, def uint16) uint16 {
	if len(listen) == 0 {
		return 0
	}
	_, p, err := net.SplitHostPort(listen[0])
	if err != nil {
		return def
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 {
		return def
	}
	return uint16(n)
}

func printZone(e *env, o dnsrecords.Options) {
	recs := dnsrecords.Want(o)
	fmt.Fprintf(e.stdout, "; DNS records for %s (zone-file form)\n", strings.Join(o.Domains, ", "))
	domain := "-"
	for _, r := range recs {
		if r.Domain != domain {
			domain = r.Domain
			if domain == "" {
				fmt.Fprintf(e.stdout, "\n; the host %s (PTR: at whoever owns the address)\n", o.Hostname)
			} else {
				fmt.Fprintf(e.stdout, "\n; %s\n", domain)
			}
		}
		line := fmt.Sprintf("%s.\tIN %s\t%s", r.Name, r.Type, zoneValue(r))
		if r.Placeholder {
			fmt.Fprintf(e.stdout, "; %s\n;   %s\n", line, r.Note)
			continue
		}
		if !r.Required {
			line += "\t; advisory"
		}
		if r.Note != "" {
			line += " (" + r.Note + ")"
		}
		fmt.Fprintln(e.stdout, line)
	}
	fmt.Fprint(e.stdout, "\nThe same as a table, for registrar web panels:\n\n")
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTYPE\tVALUE")
	for _, r := range recs {
		v := r.Value
		if r.Placeholder {
			v += "  (" + r.Note + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Name, r.Type, v)
	}
	tw.Flush()
	fmt.Fprintln(e.stdout, "\nThen run `postie dns check` to see what DNS answers.")
}

func zoneValue(r dnsrecords.Record) string {
	if r.Type == "TXT" && !r.Placeholder {
		return txtChunks(r.Value)
	}
	return r.Value
}

func dnsCheck(e *env, cfg *config.Config, o dnsrecords.Options) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res := dnsrecords.Check(ctx, outbound.NewResolver(cfg.Outbound.Resolver), o)
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	bad := 0
	for _, r := range res {
		kind := "required"
		if !r.Required {
			kind = "advisory"
		}
		detail := ""
		switch r.Status {
		case dnsrecords.Missing:
			detail = "want: " + r.Want
		case dnsrecords.Wrong:
			detail = "found: " + r.Found + "; want: " + r.Want
		}
		if r.Note != "" && r.Status != dnsrecords.OK {
			detail += " (" + r.Note + ")"
		}
		if r.Required && r.Status != dnsrecords.OK {
			bad++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Status, kind, r.Type, r.Name, detail)
	}
	tw.Flush()
	if bad > 0 {
		return exitError{exitFailure, errors.New(strconv.Itoa(bad) + " required record(s) missing or wrong")}
	}
	fmt.Fprintln(e.stdout, "every required record is right")
	return nil
}
