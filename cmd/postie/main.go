// Command postie is the Postie mail server and its administration tool:
// one binary that serves SMTP, submission, IMAP and POP3 (`postie serve`),
// delivers one message from stdin (`postie deliver`), and manages users,
// aliases, the queue and DKIM keys.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

// Exit codes. deliver uses sysexits(3) values, which MTAs and fetchmail
// understand.
const (
	exitOK       = 0
	exitFailure  = 1
	exitUsage    = 2
	exitNoUser   = 67 // EX_NOUSER
	exitTempFail = 75 // EX_TEMPFAIL
)

const usage = `usage: postie COMMAND [flags] [args]

commands:
  serve        -config FILE                      run every configured listener
  check-config -config FILE                      validate the configuration
  init         -domain D [-hostname H] [-user ADDR] [-systemd]  set a fresh machine up: config, first account, DKIM key
  deliver      -config FILE [-f SENDER] RCPT...  deliver one message from stdin
  user add|passwd|quota|del|list -config FILE [ADDRESS] [QUOTA]
  alias add|del|list -config FILE [ADDRESS [TARGET...]]
  queue list|flush|delete ID|bounce ID -config FILE
  suppress list|add|del -config FILE [ADDRESS]  recipients refused at submission after a hard bounce
  tlsrpt send -config FILE [-today]              send the TLS reports (RFC 8460) of past days now
  dkim keygen -config FILE DOMAIN
  junk train|status -config FILE ADDRESS         bootstrap the junk filter from filed mail; show it
  dns [check] -config FILE [-ip ADDR]... [DOMAIN...]  print the DNS records to publish; check them live
  version

The config file defaults to $POSTIE_CONFIG, else ./config.toml.
`

// env is what a command may touch of the outside world, so tests can run
// commands in-process.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	stdinIsTerm    bool
	// readPassword reads a line without echo from the terminal.
	readPassword func(prompt string) (string, error)
}

// usageError is an error in how a command was called.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// exitError carries a specific exit code.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }

func main() {
	e := &env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, stdinIsTerm: isTerminal(os.Stdin), readPassword: readTerminalPassword}
	os.Exit(run(e, os.Args[1:]))
}

func run(e *env, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, usage)
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	var err error
	switch cmd {
	case "serve":
		err = cmdServe(e, rest)
	case "check-config":
		err = cmdCheckConfig(e, rest)
	case "init":
		err = cmdInit(e, rest)
	case "deliver":
		err = cmdDeliver(e, rest)
	case "user":
		err = cmdUser(e, rest)
	case "alias":
		err = cmdAlias(e, rest)
	case "queue":
		err = cmdQueue(e, rest)
	case "suppress":
		err = cmdSuppress(e, rest)
	case "tlsrpt":
		err = cmdTLSRPT(e, rest)
	case "dkim":
		err = cmdDKIM(e, rest)
	case "junk":
		err = cmdJunk(e, rest)
	case "dns":
		err = cmdDNS(e, rest)
	case "version":
		fmt.Fprintln(e.stdout, "postie", version)
		return exitOK
	case "help", "-h", "-help", "--help":
		fmt.Fprint(e.stdout, usage)
		return exitOK
	default:
		err = usageError{fmt.Sprintf("unknown command %q", cmd)}
	}
	return report(e, cmd, err)
}

func report(e *env, cmd string, err error) int {
	if err == nil {
		return exitOK
	}
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	fmt.Fprintf(e.stderr, "postie %s: %v\n", cmd, err)
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprint(e.stderr, "run 'postie help' for usage\n")
		return exitUsage
	}
	var xe exitError
	if errors.As(err, &xe) {
		return xe.code
	}
	return exitFailure
}

const version = "0.1.0"

// newFlags returns a flag set with the common -config flag.
func newFlags(e *env, name string) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	def := os.Getenv("POSTIE_CONFIG")
	if def == "" {
		def = "config.toml"
	}
	cfg := fs.String("config", def, "configuration `file`")
	return fs, cfg
}

// parseFlags parses args, allowing flags after positional arguments
// (`postie user add ann@example.test -config c.toml`), and returns the
// positional ones. Flag errors become usage errors.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err.Error()}
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}
