package main

import (
	"fmt"
	"os"
	"strings"

	"postie/accounts"
	"postie/config"
)

// loadAdmin reads the config and returns the accounts file's admin handle.
func loadAdmin(cfgPath string) (*accounts.Admin, error) {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", cfg.DataDir, err)
	}
	return &accounts.Admin{Path: cfg.AccountsFile(), Domains: cfg.Domains}, nil
}

func cmdUser(e *env, args []string) error {
	if len(args) == 0 {
		return usageError{"user needs a subcommand: add, passwd, quota, del, list"}
	}
	sub := args[0]
	fs, cfgPath := newFlags(e, "user "+sub)
	quotaFlag := ""
	if sub == "add" {
		fs.StringVar(&quotaFlag, "quota", "0", "mailbox `size` limit, e.g. 1GB (0: none)")
	}
	pos, err := parseFlags(fs, args[1:])
	if err != nil {
		return err
	}
	want := map[string]int{"add": 1, "passwd": 1, "quota": 2, "del": 1, "list": 0}
	n, ok := want[sub]
	if !ok {
		return usageError{fmt.Sprintf("unknown user subcommand %q", sub)}
	}
	if len(pos) != n {
		return usageError{fmt.Sprintf("user %s takes %d argument(s), got %d", sub, n, len(pos))}
	}
	admin, err := loadAdmin(*cfgPath)
	if err != nil {
		return err
	}
	switch sub {
	case "add":
		quota, err := parseQuota(quotaFlag)
		if err != nil {
			return err
		}
		pw, err := readPassword(e)
		if err != nil {
			return err
		}
		if err := admin.AddUser(pos[0], pw, quota); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "added %s\n", pos[0])
	case "passwd":
		pw, err := readPassword(e)
		if err != nil {
			return err
		}
		if err := admin.SetPassword(pos[0], pw); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "password of %s changed\n", pos[0])
	case "quota":
		quota, err := parseQuota(pos[1])
		if err != nil {
			return err
		}
		if err := admin.SetQuota(pos[0], quota); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "quota of %s set to %s\n", pos[0], pos[1])
	case "del":
		if err := admin.DeleteUser(pos[0]); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "deleted %s (its mail stays on disk)\n", pos[0])
	case "list":
		users, err := admin.ListUsers()
		if err != nil {
			return err
		}
		for _, u := range users {
			quota := "none"
			if u.Quota > 0 {
				quota = config.Size(u.Quota).String()
			}
			fmt.Fprintf(e.stdout, "%s\tquota %s\n", u.Address, quota)
		}
	}
	return nil
}

func parseQuota(s string) (int64, error) {
	q, err := config.ParseSize(s)
	if err != nil {
		return 0, usageError{fmt.Sprintf("bad quota %q: %v", s, err)}
	}
	return int64(q), nil
}

func cmdAlias(e *env, args []string) error {
	if len(args) == 0 {
		return usageError{"alias needs a subcommand: add, del, list"}
	}
	sub := args[0]
	fs, cfgPath := newFlags(e, "alias "+sub)
	pos, err := parseFlags(fs, args[1:])
	if err != nil {
		return err
	}
	switch {
	case sub == "add" && len(pos) < 2:
		return usageError{"alias add ADDRESS TARGET..."}
	case sub == "del" && len(pos) < 1:
		return usageError{"alias del ADDRESS [TARGET...]"}
	case sub == "list" && len(pos) != 0:
		return usageError{"alias list takes no arguments"}
	case sub != "add" && sub != "del" && sub != "list":
		return usageError{fmt.Sprintf("unknown alias subcommand %q", sub)}
	}
	admin, err := loadAdmin(*cfgPath)
	if err != nil {
		return err
	}
	switch sub {
	case "add":
		if err := admin.AddAlias(pos[0], pos[1:]); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "%s → %s\n", pos[0], strings.Join(pos[1:], ", "))
	case "del":
		if err := admin.DeleteAlias(pos[0], pos[1:]); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "removed %s\n", strings.Join(pos, " "))
	case "list":
		aliases, err := admin.ListAliases()
		if err != nil {
			return err
		}
		for _, a := range aliases {
			fmt.Fprintf(e.stdout, "%s\t%s\n", a.Address, strings.Join(a.Targets, ", "))
		}
	}
	return nil
}
