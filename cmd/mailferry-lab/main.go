// Command mailferry-lab holds the developers' tools that are not shipped:
// the benchmark against Dovecot's own
// copier, the chaos run that kill -9s every process, and the DNS
// benchmark against nsupdate. It links test rigs (Dovecot and BIND
// harnesses, go-imap's in-memory server); the shipped binaries
// (cmd/mailferry, services/*/cmd/*) never do.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/mailferry/mailferry/cmd/mailferry-lab/bench"
	"github.com/mailferry/mailferry/cmd/mailferry-lab/chaos"
	"github.com/mailferry/mailferry/cmd/mailferry-lab/dnsbench"
)

const usage = `usage: mailferry-lab COMMAND [flags]

commands:
  bench       build a corpus in Dovecot, migrate, verify; compare with doveadm and mbsync
  chaos       migrate between two Dovecot servers while kill -9ing every process
  dns-bench   time dnsctl and sequential nsupdate on a local BIND

Run mailferry-lab COMMAND -h for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp), errors.Is(err, errUsage):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "mailferry-lab:", err)
		os.Exit(1)
	}
}

// errUsage is a command line that names no known command.
var errUsage = errors.New("usage")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "bench":
		return bench.Main(ctx, args, stdout, stderr)
	case "chaos":
		return chaos.Main(ctx, args, stdout, stderr)
	case "dns-bench":
		return dnsbench.Main(ctx, args, stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("%w: unknown command %q", errUsage, cmd)
}
