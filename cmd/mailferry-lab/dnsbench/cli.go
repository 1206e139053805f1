package dnsbench

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/mailferry/mailferry/shared/logging"
)

// Main runs `mailferry-lab dns-bench`: it parses args and prints the figures.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dns-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := Options{}
	fs.IntVar(&o.Zones, "zones", 5000, "customer zones per method")
	fs.IntVar(&o.Concurrency, "concurrency", 16, "domains dnsctl handles at once")
	fs.IntVar(&o.Rate, "rate", -1, "dnsctl updates per second (-1: unbounded)")
	asJSON := fs.Bool("json", false, "print the figures as JSON")
	keep := fs.Bool("keep", false, "keep the work directory (BIND logs, scripts)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.Zones < 1 || o.Concurrency < 1 {
		return fmt.Errorf("dns-bench: -zones and -concurrency must be at least 1")
	}
	dir, err := os.MkdirTemp("", "mailferry-dns-bench-")
	if err != nil {
		return err
	}
	if *keep {
		fmt.Fprintf(stderr, "work directory: %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	o.Dir = dir
	if o.Log, err = logging.New(stderr, "info", "console", "bench"); err != nil {
		return err
	}
	res, err := Run(ctx, o)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	writeBench(stdout, res, o)
	return nil
}

func writeBench(w io.Writer, r *Result, o Options) {
	rate := "unbounded"
	if o.Rate > 0 {
		rate = fmt.Sprintf("%d/s", o.Rate)
	}
	ms := func(d time.Duration) string { return d.Round(10 * time.Millisecond).String() }
	perSec := func(d time.Duration) float64 { return float64(r.Switched) / d.Seconds() }
	fmt.Fprintf(w, "BIND primary + secondary on loopback, %d zones per method (%d switched), started in %s\n",
		r.Zones, r.Switched, ms(r.BindStart))
	fmt.Fprintf(w, "%-34s %10s %10s %10s %10s %12s\n", "method", "plan", "update", "verify", "total", "switches/s")
	row := func(name string, t Timing) {
		fmt.Fprintf(w, "%-34s %10s %10s %10s %10s %12.0f\n", name, ms(t.Plan), ms(t.Apply), ms(t.Verify), ms(t.Total()), perSec(t.Total()))
	}
	row(fmt.Sprintf("dnsctl (concurrency %d, rate %s)", o.Concurrency, rate), r.Dnsctl)
	row("nsupdate, one process per zone", r.PerZone)
	row("nsupdate, one batch file", r.Batch)
	fmt.Fprintf(w, "dnsctl is %.1fx the per-zone script and %.1fx the batch script (total time; the scripts' plan is free)\n",
		r.PerZone.Total().Seconds()/r.Dnsctl.Total().Seconds(), r.Batch.Total().Seconds()/r.Dnsctl.Total().Seconds())
}
