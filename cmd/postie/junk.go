package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"

	"postie/accounts"
	"postie/config"
	"postie/junk"
	"postie/maildir"
)

// cmdJunk is `postie junk train|status ADDRESS`: the junk filter of one
// user, bootstrapped from the mail already filed, or described.
func cmdJunk(e *env, args []string) error {
	if len(args) == 0 {
		return usageError{"junk needs a subcommand: train, status"}
	}
	sub := args[0]
	if sub != "train" && sub != "status" {
		return usageError{fmt.Sprintf("unknown junk subcommand %q", sub)}
	}
	fs, cfgPath := newFlags(e, "junk "+sub)
	pos, err := parseFlags(fs, args[1:])
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{fmt.Sprintf("junk %s takes one ADDRESS, got %d arguments", sub, len(pos))}
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn})) // no "accounts loaded"
	db, err := accounts.Open(cfg.AccountsFile(), cfg.Domains, log)
	if err != nil {
		return err
	}
	u, ok := db.Lookup(pos[0])
	if !ok {
		return fmt.Errorf("no such user: %s", pos[0])
	}
	store := maildir.NewStore(cfg.MailDir(), maildir.StoreOptions{Hostname: cfg.Hostname, Logger: log})
	mail, err := store.User(u.Domain, u.Local)
	if err != nil {
		return err
	}
	filter := junk.New(junk.Options{MinTrained: cfg.Spam.JunkMinTrained, Threshold: cfg.Spam.JunkThreshold})
	if !cfg.Spam.JunkFilter {
		fmt.Fprintln(e.stderr, "note: [spam] junk_filter is off; delivery does not use what is trained")
	}
	if sub == "train" {
		if err := junkTrain(e, filter, mail, log); err != nil {
			return err
		}
	}
	return junkStatus(e, filter, u.Address, junk.UserFile(mail.Dir()))
}

// junkTrain trains every folder of the user: Junk and the folders under it
// as spam, every other folder but Trash (and those under it) as ham; the
// same folders imapd's training counts as Junk and Trash. Ham goes first,
// so that a message both kept and in Junk ends up trained as spam.
func junkTrain(e *env, filter *junk.Filter, mail *maildir.User, log *slog.Logger) error {
	infos, err := mail.ListMailboxes()
	if err != nil {
		return err
	}
	roles, err := mail.Roles()
	if err != nil {
		return err
	}
	var ham, spam []string
	for _, mi := range infos {
		switch {
		case roles.Has(mi.Name, `\Junk`):
			spam = append(spam, mi.Name)
		case !roles.Has(mi.Name, `\Trash`):
			ham = append(ham, mi.Name)
		}
	}
	path := junk.UserFile(mail.Dir())
	var total [2]int
	for i, names := range [][]string{ham, spam} {
		kind := [2]string{"ham", "spam"}[i]
		for _, name := range names {
			n, err := trainFolder(filter, mail, path, name, i == 1, log)
			if err != nil {
				return err
			}
			total[i] += n
			fmt.Fprintf(e.stdout, "%-24s %-4s %6d\n", name, kind, n)
		}
	}
	fmt.Fprintf(e.stdout, "read %d ham and %d spam messages\n", total[0], total[1])
	return nil
}

// trainBatch is how many messages one Train call (one rewrite of the
// user's file) takes, and how many files are open at once.
const trainBatch = 256

// trainFolder trains the messages of one folder and returns how many it
// read; a message gone meanwhile is skipped.
func trainFolder(filter *junk.Filter, mail *maildir.User, path, name string, spam bool, log *slog.Logger) (int, error) {
	mbox, err := mail.Mailbox(name)
	if errors.Is(err, maildir.ErrNoSuchMailbox) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var uids []uint32
	mbox.View(func(msgs []maildir.Message) {
		for _, m := range msgs {
			uids = append(uids, m.UID)
		}
	})
	n := 0
	for batch := range slices.Chunk(uids, trainBatch) {
		var files []*maildir.MessageFile
		var rs []io.Reader
		for _, uid := range batch {
			f, err := mbox.OpenMessage(uid)
			if err != nil {
				if !errors.Is(err, maildir.ErrNoSuchMessage) {
					log.Warn("junk train: message skipped", "mailbox", name, "uid", uid, "err", err)
				}
				continue
			}
			files = append(files, f)
			rs = append(rs, f)
		}
		err := filter.Train(path, spam, rs...)
		for _, f := range files {
			f.Close()
		}
		if err != nil {
			return n, fmt.Errorf("train %s: %w", name, err)
		}
		n += len(rs)
	}
	return n, nil
}

// junkStatus prints what the filter knows of the user.
func junkStatus(e *env, filter *junk.Filter, addr, path string) error {
	st, err := filter.Status(path)
	if err != nil {
		return err
	}
	w := e.stdout
	fmt.Fprintf(w, "user        %s\n", addr)
	fmt.Fprintf(w, "file        %s (%s)\n", path, config.Size(st.FileBytes))
	fmt.Fprintf(w, "trained     %d ham, %d spam\n", st.Ham, st.Spam)
	fmt.Fprintf(w, "tokens      %d\n", st.Tokens)
	fmt.Fprintf(w, "senders     %d with a reputation\n", st.Senders)
	fmt.Fprintf(w, "written to  %d addresses\n", st.WrittenTo)
	if st.Ham >= st.MinTrained && st.Spam >= st.MinTrained {
		fmt.Fprintf(w, "statistics  decide (at least %d of each trained)\n", st.MinTrained)
	} else {
		fmt.Fprintf(w, "statistics  not yet: %d of each needed; until then only sender reputation decides\n", st.MinTrained)
	}
	return nil
}
