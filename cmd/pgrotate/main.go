// Command pgrotate shows the rotating connector keeping an application up
// through credential rotations, and checks a real deployment's set-up.
//
//	pgrotate demo       run a workload through rotations, everything local
//	                    (-store vault: a Vault static role or dynamic role)
//	pgrotate check      fetch a credential and log in with it as the connector would
//	                    (-store vault: from Vault, configured from VAULT_ADDR, ...)
//	pgrotate sm-server  run a local AWS Secrets Manager-compatible endpoint
//	pgrotate vault-server  run a local HashiCorp Vault-compatible server
//
// Run "pgrotate <command> -h" for each command's flags. Exit codes are the
// same for every command:
//
//	0    success
//	1    usage error (unknown command, bad flag, bad seed file)
//	2    credential source problem (secret not found, not permitted,
//	     malformed or empty secret, no AWS configuration, Vault sealed
//	     or unreachable); sm-server or vault-server cannot listen
//	3    database problem (PostgreSQL missing or unreachable, login refused)
//	4    check: only the pending credential (AWSPENDING) logs in
//	5    demo: a statement failed, an acknowledged row is missing, or a
//	     rotation failed
//	130  interrupted (Ctrl-C); demo still prints what it measured
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// Exit codes, documented in the package comment and in each command's -h.
const (
	exitOK          = 0
	exitUsage       = 1
	exitSource      = 2
	exitDatabase    = 3
	exitPendingOnly = 4
	exitDemoFailed  = 5
	exitInterrupted = 130
)

const exitCodesHelp = `Exit codes:
  0    success
  1    usage error
  2    credential source problem (secret not found, not permitted, malformed
       or empty secret, no AWS configuration, Vault sealed or unreachable);
       sm-server or vault-server cannot listen
  3    database problem (PostgreSQL missing or unreachable, login refused)
  4    check: only the pending credential (AWSPENDING) logs in
  5    demo: a statement failed, an acknowledged row is missing, or a
       rotation failed
  130  interrupted (Ctrl-C)
`

const mainUsage = `pgrotate shows the rotating connector keeping a database/sql application up
while its PostgreSQL credentials rotate, and checks a real deployment.

Usage:
  pgrotate demo [flags]       a workload through live rotations, everything local
                              (AWS Secrets Manager, or -store vault: HashiCorp Vault)
  pgrotate check [flags]      fetch a credential and log in with it, as the connector would
                              (AWS, files, the environment, or -store vault)
  pgrotate sm-server [flags]  a local AWS Secrets Manager-compatible endpoint
  pgrotate vault-server [flags]  a local HashiCorp Vault-compatible server

Run "pgrotate <command> -h" for a command's flags.

`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], &stdio{out: os.Stdout, err: os.Stderr, errTTY: isTerminal(os.Stderr)})
	stop()
	os.Exit(code)
}

// stdio is where a command writes, plus the hooks tests use.
type stdio struct {
	out    io.Writer // the report, the env vars of sm-server
	err    io.Writer // logs, progress, error messages
	errTTY bool      // err is a terminal: redraw the progress line in place

	// Test hooks.
	demo     *demoHooks                  // servers to use instead of starting them
	report   func(*Report)               // receives the demo's report
	onListen func(url string)            // sm-server or vault-server is serving at url
	onAgent  func(url, tokenFile string) // sm-server -agent is serving at url
}

// run runs the command named by args[0] and returns the exit code.
func run(ctx context.Context, args []string, std *stdio) int {
	if len(args) == 0 {
		fmt.Fprint(std.err, mainUsage+exitCodesHelp)
		return exitUsage
	}
	switch args[0] {
	case "demo":
		return demoCommand(ctx, args[1:], std)
	case "check":
		return checkCommand(ctx, args[1:], std)
	case "sm-server":
		return smServerCommand(ctx, args[1:], std)
	case "vault-server":
		return vaultServerCommand(ctx, args[1:], std)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(std.out, mainUsage+exitCodesHelp)
		return exitOK
	}
	fmt.Fprintf(std.err, "pgrotate: unknown command %q\n\n%s", args[0], mainUsage)
	return exitUsage
}

// parseFlags parses args with fs and reports the exit code to return at
// once, if any: 0 for -h, exitUsage for a bad flag or a stray argument.
func parseFlags(fs *flag.FlagSet, args []string) (int, bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, true
		}
		return exitUsage, true
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q\n", fs.Name(), fs.Args()[0])
		return exitUsage, true
	}
	return 0, false
}

// newLogger returns a text logger for the command's own events, the
// connector's and the secret source's: Info and up, Debug with verbose.
// Times are left out unless verbose: the progress line shows the elapsed
// time.
func newLogger(w io.Writer, verbose bool) *slog.Logger {
	level := slog.LevelInfo
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				if !verbose {
					return slog.Attr{}
				}
				return slog.String(slog.TimeKey, a.Value.Time().Format("15:04:05.000"))
			}
			return a
		},
	}))
}

// isTerminal reports whether f is a character device, which is what a
// terminal is; a pipe or a file is not.
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// console is stderr shared by log lines and a progress line. On a terminal
// the progress line is redrawn in place with \r, and each log line first
// clears it and then redraws it below; elsewhere progress lines are plain
// lines like any other.
type console struct {
	mu   sync.Mutex
	w    io.Writer
	tty  bool
	line string // the progress line on screen (tty only)
}

// Write writes log output, keeping the progress line below it.
func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tty && c.line != "" {
		io.WriteString(c.w, "\r\x1b[K")
	}
	n, err := c.w.Write(p)
	if c.tty && c.line != "" {
		io.WriteString(c.w, c.line)
	}
	return n, err
}

// progress shows line: in place on a terminal, as a new line elsewhere.
func (c *console) progress(line string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.tty {
		io.WriteString(c.w, line+"\n")
		return
	}
	c.line = line
	io.WriteString(c.w, "\r\x1b[K"+line)
}

// done removes the progress line from a terminal.
func (c *console) done() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tty && c.line != "" {
		io.WriteString(c.w, "\r\x1b[K")
	}
	c.line = ""
}
