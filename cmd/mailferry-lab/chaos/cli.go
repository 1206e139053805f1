package chaos

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/mailferry/mailferry/cmd/mailferry-lab/shipped"
)

// Main is `mailferry-lab chaos`: a chaos run with a seed and a kill count.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	seed := fs.Uint64("seed", uint64(time.Now().UnixNano()), "seed of every random choice (the mail, what is killed, when)")
	kills := fs.Int("kills", 20, "number of kill -9s, whole-process and per-service")
	whole := fs.Float64("whole", 0.3, "whole-process kills of mailferry migrate (`N`: a count, or a fraction of -kills when below 1); 6 or more end the run in a row")
	boxes := fs.Int("mailboxes", 3, "mailboxes to migrate")
	msgs := fs.Int("messages", 1200, "generated messages over all mailboxes (the shared corpus is added when present)")
	maxSize := fs.String("max-size", "25MB", "largest generated message (long-tailed sizes)")
	shared := fs.Bool("shared-corpus", true, "add the shared corpus of real-world messages when present")
	after := fs.String("kill-after", "1s-5s", "a migrate is killed this long after its start (random in the range)")
	lease := fs.Duration("lease-ttl", 3*time.Second, "loader.lease_ttl (0: mailferry's default)")
	ack := fs.Duration("ack-wait", 6*time.Second, "nats.job_ack_wait (0: mailferry's default)")
	baseline := fs.Bool("baseline", true, "first migrate the same mail once without kills to a second target, for comparison")
	finalTimeout := fs.Duration("final-timeout", 0, "deadline of the final migrate (0: from the uninterrupted run or the mail's size, plus ack-wait and lease-ttl)")
	binPath := fs.String("mailferry", "", "the mailferry binary whose processes are killed (default: next to this one, on PATH, or built from source)")
	work := fs.String("work", "", "working directory (default: a new one, removed afterwards unless the run fails)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	size, err := parseSize(*maxSize)
	if err != nil {
		return fmt.Errorf("-max-size: %w", err)
	}
	window, err := parseRange(*after)
	if err != nil {
		return fmt.Errorf("-kill-after: %w", err)
	}
	nWhole := int(*whole)
	if *whole < 1 {
		nWhole = int(math.Round(*whole * float64(*kills)))
	}
	dir := *work
	if dir == "" {
		if dir, err = os.MkdirTemp("", "mailferry-chaos-"); err != nil {
			return err
		}
	}
	bin, err := shipped.Binary(ctx, *binPath, dir)
	if err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	fmt.Fprintf(stdout, "chaos: seed %d, work %s (logs: *.log there)\n", *seed, dir)
	rep, err := Run(ctx, Options{Bin: bin, Work: dir, Seed: *seed, Kills: *kills, Whole: nWhole,
		Mailboxes: *boxes, Messages: *msgs, MaxSize: size, SharedCorpus: *shared, KillAfter: window,
		LeaseTTL: *lease, AckWait: *ack, Baseline: *baseline, FinalTimeout: *finalTimeout, Out: stdout})
	failed := err != nil || !rep.OK()
	if *work == "" {
		if failed {
			fmt.Fprintf(stdout, "chaos: work directory kept: %s\n", dir)
		} else {
			defer os.RemoveAll(dir)
		}
	}
	if errors.Is(err, ErrHang) {
		if b, rerr := os.ReadFile(filepath.Join(dir, "final-state.txt")); rerr == nil {
			fmt.Fprintf(stdout, "%s", b)
		}
		if b, rerr := os.ReadFile(rep.Hang); rerr == nil {
			fmt.Fprintln(stdout, Condense(string(b), 12000))
		}
	}
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

// parseSize reads 25MB, 512kB, 30MiB, 1000000; at least 64 KiB.
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(strings.ToUpper(s))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GIB", 1 << 30}, {"MIB", 1 << 20}, {"KIB", 1 << 10}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || n*float64(mult) < 64<<10 {
		return 0, fmt.Errorf("want a size of at least 64KiB like 25MB, got %q", s)
	}
	return int64(n * float64(mult)), nil
}

// parseRange reads "1s-5s" (or one duration: from a tenth of it).
func parseRange(s string) ([2]time.Duration, error) {
	lo, hi, ok := strings.Cut(s, "-")
	if !ok {
		d, err := time.ParseDuration(s)
		return [2]time.Duration{d / 10, d}, err
	}
	a, err := time.ParseDuration(lo)
	if err != nil {
		return [2]time.Duration{}, err
	}
	b, err := time.ParseDuration(hi)
	if err != nil {
		return [2]time.Duration{}, err
	}
	if b < a || b <= 0 {
		return [2]time.Duration{}, fmt.Errorf("want lo-hi with lo <= hi, got %q", s)
	}
	return [2]time.Duration{a, b}, nil
}
