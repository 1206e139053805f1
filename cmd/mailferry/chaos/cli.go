package chaos

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"
)

// Main is `mailferry chaos`: a chaos run with a seed and a kill count.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	seed := fs.Uint64("seed", uint64(time.Now().UnixNano()), "seed of every random choice")
	kills := fs.Int("kills", 20, "least number of kill -9s")
	boxes := fs.Int("mailboxes", 3, "mailboxes to migrate")
	msgs := fs.Int("messages", 400, "generated messages per mailbox (the shared corpus is added when present)")
	work := fs.String("work", "", "working directory (default: a new one, removed afterwards)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	bin, err := os.Executable()
	if err != nil {
		return err
	}
	dir := *work
	if dir == "" {
		if dir, err = os.MkdirTemp("", "mailferry-chaos-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	fmt.Fprintf(stdout, "chaos: seed %d, work %s\n", *seed, dir)
	rep, err := Run(ctx, Options{Bin: bin, Work: dir, Seed: *seed, Kills: *kills, Mailboxes: *boxes, Messages: *msgs, Out: stdout})
	if err != nil {
		return err
	}
	for _, p := range rep.Problems {
		fmt.Fprintln(stdout, "PROBLEM", p)
	}
	if !rep.OK() {
		return errors.New("chaos: the target does not match the source")
	}
	fmt.Fprintln(stdout, "chaos: target matches source: nothing lost, nothing duplicated")
	return nil
}
