// Package command is the small command table every mailferry binary is
// built on. Each command declares its own flags on a flag set made for that
// one run, so `-h` lists only them and no flag of another command parses;
// help is generated from the table; and every error ends in one of three
// exit codes (see ExitCode). Packages that own commands (services' cli
// packages) export them as []*Command and the binaries put them together.
package command

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// Exit codes of every mailferry binary, so scripts can tell a migration
// that found differences from a command line that never ran.
const (
	// ExitOK: the command did what it was asked and found nothing wrong.
	ExitOK = 0
	// ExitFailure: differences or failures were found, or the command
	// failed while running.
	ExitFailure = 1
	// ExitUsage: the command line or the configuration is wrong; nothing
	// was done.
	ExitUsage = 2
)

// Command is one entry of the table.
type Command struct {
	// Name is the words that select the command after the program's name:
	// "migrate", "dns plan". A program of a single command (a service
	// binary) names it "".
	Name string
	// UsageLine is the synopsis of the flags, printed after the program's
	// and the command's name: "[-c FILE] [-json]".
	UsageLine string
	// Short is the line the command list shows.
	Short string
	// Long is what `help NAME` and `NAME -h` print after the usage line;
	// Short when empty.
	Long string
	// Setup declares the command's flags on fs and returns the Run that
	// reads them. fs is made for one run (or one help text), so a value
	// never outlives the command line it came from.
	Setup func(fs *flag.FlagSet) Run
}

// Run runs a command whose flags are parsed. An error it returns is
// printed once, prefixed with the program's and the command's name, unless
// it wraps ErrFailures.
type Run func(ctx context.Context, stdout, stderr io.Writer) error

// ConfigFlag declares -c, the configuration file every mailferry command
// reads, the same way everywhere.
func ConfigFlag(fs *flag.FlagSet) *string {
	return fs.String("c", "mailferry.yaml", "configuration file")
}

// ErrFailures is wrapped by the error of a command that ran to the end
// and found differences or failures, which its output already shows: the
// exit code is 1 and nothing more is printed.
var ErrFailures = errors.New("differences or failures found")

// ErrUsage matches every UsageError under errors.Is, for callers that only
// ask whether a command line was refused.
var ErrUsage = errors.New("usage error")

// UsageError is a command line that cannot be run as given: an unknown
// command or flag, an unexpected argument, a missing flag or flags that do
// not go together. Its exit code is 2 and the command's usage line follows
// the message.
type UsageError struct{ Err error }

// Usagef returns a UsageError with a formatted message.
func Usagef(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// Error is the cause's message: Run adds the program's and command's names.
func (e *UsageError) Error() string { return e.Err.Error() }

// Unwrap lets errors.Is and errors.As see the cause.
func (e *UsageError) Unwrap() error { return e.Err }

// Is matches ErrUsage.
func (e *UsageError) Is(target error) bool { return target == ErrUsage }

// ConfigError is a configuration that cannot be used: the file is missing
// or invalid, or a setting the command needs is absent. Its exit code is 2,
// like a usage error: nothing ran.
type ConfigError struct{ Err error }

// Error is the cause's message, which names the file (config.Load's does).
func (e *ConfigError) Error() string { return e.Err.Error() }

// Unwrap lets errors.Is and errors.As see the cause.
func (e *ConfigError) Unwrap() error { return e.Err }

// ExitCode maps a command's error to the process's exit status: 0 for
// nil, 2 for a UsageError or ConfigError, 1 for anything else (ErrFailures
// included).
func ExitCode(err error) int {
	var usage *UsageError
	var cfg *ConfigError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &usage), errors.As(err, &cfg):
		return ExitUsage
	}
	return ExitFailure
}

// Program is a binary's table of commands.
type Program struct {
	// Name is the binary's name, the first word of every usage line and
	// of every error message.
	Name string
	// Doc opens `help`: what the program is for.
	Doc string
	// Commands is the table; help lists them in this order.
	Commands []*Command
}

// Main runs the command os.Args names until SIGINT or SIGTERM and exits
// with ExitCode of its error.
func (p *Program) Main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := p.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(ExitCode(err))
}

// Run runs the command args name with the rest of args as its flags. It
// prints help to stdout for `help [NAME]` and `NAME -h` (returning nil),
// and prints an error to stderr once (with the usage line after a
// UsageError) before returning it.
func (p *Program) Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "help" && !p.single() {
		err := p.help(stdout, args[1:])
		if err != nil {
			p.report(stderr, "", err)
		}
		return err
	}
	c, rest, group, err := p.lookup(args)
	if errors.Is(err, errGroupHelp) {
		return p.help(stdout, strings.Fields(group))
	}
	if err != nil {
		p.report(stderr, group, err)
		if len(args) == 0 {
			p.list(stderr, "")
		}
		return err
	}
	fs := p.flags(c, io.Discard)
	run := c.Setup(fs)
	err = fs.Parse(rest)
	switch {
	case errors.Is(err, flag.ErrHelp):
		p.commandHelp(stdout, c)
		return nil
	case err != nil:
		err = &UsageError{Err: err}
	case fs.NArg() > 0:
		err = Usagef("unexpected argument %q", fs.Arg(0))
	default:
		err = run(ctx, stdout, stderr)
	}
	if err == nil {
		return nil
	}
	if c.Name != "" {
		err = fmt.Errorf("%s: %w", c.Name, err)
	}
	p.report(stderr, c.Name, err)
	return err
}

// single reports whether the program is one command without a name.
func (p *Program) single() bool { return len(p.Commands) == 1 && p.Commands[0].Name == "" }

// flags is a FlagSet for one run of c, writing (its defaults) to w; the
// flag package prints nothing itself: Run reports its errors.
func (p *Program) flags(c *Command, w io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(strings.TrimSpace(p.Name+" "+c.Name), flag.ContinueOnError)
	fs.SetOutput(w)
	fs.Usage = func() {}
	return fs
}

// lookup finds the command with the longest name args begin with; when
// there is none, it returns the longest group args name ("dns"), if any,
// for the message.
func (p *Program) lookup(args []string) (*Command, []string, string, error) {
	var found *Command
	n := -1
	for _, c := range p.Commands {
		words := strings.Fields(c.Name)
		if len(words) > n && hasPrefix(args, words) {
			found, n = c, len(words)
		}
	}
	if found != nil {
		return found, args[n:], "", nil
	}
	group := 0
	for _, c := range p.Commands {
		words := strings.Fields(c.Name)
		for k := len(words) - 1; k > group; k-- {
			if hasPrefix(args, words[:k]) {
				group = k
			}
		}
	}
	if len(args) == 0 {
		return nil, nil, "", Usagef("no command given")
	}
	if group == 0 {
		return nil, nil, "", Usagef("unknown command %q", args[0])
	}
	name := strings.Join(args[:group], " ")
	if len(args) > group && isHelpFlag(args[group]) {
		return nil, nil, name, errGroupHelp
	}
	want := strings.Join(p.under(name), ", ")
	if len(args) == group {
		return nil, nil, name, Usagef("%s: want one of %s", name, want)
	}
	return nil, nil, name, Usagef("%s: unknown command %q (want one of %s)", name, args[group], want)
}

// errGroupHelp is `GROUP -h` ("dns -h"): the group's help, not an error.
var errGroupHelp = errors.New("help on a group of commands")

func isHelpFlag(arg string) bool {
	return arg == "-h" || arg == "-help" || arg == "--help"
}

func hasPrefix(args, words []string) bool {
	if len(words) > len(args) {
		return false
	}
	for i, w := range words {
		if args[i] != w {
			return false
		}
	}
	return true
}

// under lists the commands of a group by what follows the group's name.
func (p *Program) under(group string) []string {
	var out []string
	for _, c := range p.Commands {
		if rest, ok := strings.CutPrefix(c.Name, group+" "); ok {
			out = append(out, rest)
		}
	}
	return out
}

// report prints err once; a usage error is followed by where to read on.
func (p *Program) report(w io.Writer, name string, err error) {
	if errors.Is(err, ErrFailures) {
		return
	}
	fmt.Fprintf(w, "%s: %v\n", p.Name, err)
	if !errors.Is(err, ErrUsage) {
		return
	}
	if c := p.find(name); c != nil {
		fmt.Fprintf(w, "usage: %s\n", p.usage(c))
		if p.single() {
			fmt.Fprintf(w, "Run '%s -h' for details.\n", p.Name)
		} else {
			fmt.Fprintf(w, "Run '%s help %s' for details.\n", p.Name, c.Name)
		}
		return
	}
	fmt.Fprintf(w, "Run '%s' for the commands.\n", strings.TrimSpace(p.Name+" help "+name))
}

func (p *Program) find(name string) *Command {
	for _, c := range p.Commands {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func (p *Program) usage(c *Command) string {
	return strings.Join(strings.Fields(p.Name+" "+c.Name+" "+c.UsageLine), " ")
}

// help prints the list of commands (of a group, when topic names one) or
// one command's help.
func (p *Program) help(w io.Writer, topic []string) error {
	name := strings.Join(topic, " ")
	if c := p.find(name); c != nil {
		p.commandHelp(w, c)
		return nil
	}
	if name != "" && len(p.under(name)) == 0 {
		return Usagef("unknown help topic %q", name)
	}
	if name == "" && p.Doc != "" {
		fmt.Fprintf(w, "%s\n\n", strings.TrimSpace(p.Doc))
	}
	p.list(w, name)
	fmt.Fprintf(w, "\nRun '%s help COMMAND' for a command's flags and details.\n", p.Name)
	if name == "" {
		fmt.Fprintf(w, "\nExit status: %d ok; %d differences or failures found, or the command failed;\n%d usage or configuration error (nothing was done).\n", ExitOK, ExitFailure, ExitUsage)
	}
	return nil
}

// list prints the usage line and the commands under group ("" for all).
func (p *Program) list(w io.Writer, group string) {
	prefix := ""
	if group != "" {
		prefix = group + " "
	}
	fmt.Fprintf(w, "usage: %s %sCOMMAND [flags]\n\ncommands:\n", p.Name, prefix)
	width := 0
	for _, c := range p.Commands {
		if strings.HasPrefix(c.Name, prefix) {
			width = max(width, len(c.Name))
		}
	}
	for _, c := range p.Commands {
		if strings.HasPrefix(c.Name, prefix) {
			fmt.Fprintf(w, "  %-*s  %s\n", width, c.Name, c.Short)
		}
	}
}

// commandHelp prints a command's usage line, its description and exactly
// its flags.
func (p *Program) commandHelp(w io.Writer, c *Command) {
	fmt.Fprintf(w, "usage: %s\n\n", p.usage(c))
	long := c.Long
	if long == "" {
		long = c.Short
	}
	fmt.Fprintf(w, "%s\n", strings.TrimSpace(long))
	fs := p.flags(c, w)
	c.Setup(fs)
	fmt.Fprint(w, "\nflags:\n")
	fs.PrintDefaults()
}
