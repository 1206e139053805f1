package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/mailferry/mailferry/cmd/mailferry/migrate"
	"github.com/mailferry/mailferry/shared/logging"
	"github.com/mailferry/mailferry/shared/testenv/demo"
)

// errDifferent makes the exit status 1 without another message: the
// report already names what differs.
var errDifferent = errors.New("differences found")

// runDemo migrates generated mail between two in-process IMAP servers
// through an embedded NATS server, with the same code `mailferry migrate`
// runs, and verifies.
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	mailboxes := fs.Int("mailboxes", 3, "generated mailboxes")
	seed := fs.Uint64("seed", 1, "seed of the generated mail")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 || *mailboxes < 1 {
		fs.Usage()
		return flag.ErrHelp
	}
	dir, err := os.MkdirTemp("", "mailferry-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	env, err := demo.Start(ctx, dir, *mailboxes, *seed)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer env.Close()
	cfg, err := env.Config()
	if err != nil {
		return err
	}
	log, err := logging.New(stderr, cfg.Log.Level, cfg.Log.Format, "")
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "demo: %d messages (%.1f MiB) in %d mailboxes, %d folders each, embedded NATS in %s\n",
		env.Messages, float64(env.Bytes)/(1<<20), *mailboxes, 10, dir)
	o := migrate.Options{}
	if logging.IsTerminal(stderr) {
		o.Display = stderr
	}
	res, err := migrate.Run(ctx, cfg, log, o)
	if res != nil {
		res.WriteText(stdout)
	}
	if err != nil {
		return err
	}
	if !res.OK() {
		return errDifferent
	}
	return nil
}
