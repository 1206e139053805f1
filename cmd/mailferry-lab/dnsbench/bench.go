// Package dnsbench measures dnsctl against the way a zone switch is done by
// hand: it starts a BIND primary and secondary on loopback with generated
// customer zones, switches one set of zones with dnsctl (plan, apply,
// verify) and equal sets with sequential nsupdate scripts (one process per
// zone, and one batch file), each checked with dig, and reports the times.
package dnsbench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/services/dnsctl"
	"github.com/mailferry/mailferry/services/dnsctl/plan"
	"github.com/mailferry/mailferry/services/dnsctl/testenv/bindtest"
	"github.com/mailferry/mailferry/services/dnsctl/testenv/zonegen"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/config"
)

// Options configure a run.
type Options struct {
	// Zones is the number of customer zones in each set.
	Zones int
	// Concurrency and Rate configure dnsctl (Rate -1: unbounded).
	Concurrency int
	Rate        int
	// Dir holds BIND, NATS and the scripts; it must exist.
	Dir string
	Log zerolog.Logger
}

// Timing is one method's times.
type Timing struct {
	Plan   time.Duration `json:"plan_ns"`
	Apply  time.Duration `json:"apply_ns"`
	Verify time.Duration `json:"verify_ns"`
}

// Total is the sum of the phases.
func (t Timing) Total() time.Duration { return t.Plan + t.Apply + t.Verify }

// Result is a run's figures.
type Result struct {
	Zones     int           `json:"zones"`
	Switched  int           `json:"switched"`
	BindStart time.Duration `json:"bind_start_ns"`
	Dnsctl    Timing        `json:"dnsctl"`
	PerZone   Timing        `json:"nsupdate_per_zone"`
	Batch     Timing        `json:"nsupdate_batch"`
}

// Run starts BIND, runs the three methods and stops BIND.
func Run(ctx context.Context, o Options) (*Result, error) {
	if p := bindtest.Problem(); p != "" {
		return nil, fmt.Errorf("bench: %s", p)
	}
	sets := []string{"dnsctl.bench.", "perzone.bench.", "batch.bench."}
	var zones []bindtest.Zone
	for _, s := range sets {
		z, _ := zonegen.Mix(o.Zones, s)
		zones = append(zones, z...)
	}
	start := time.Now()
	c, err := bindtest.Start(ctx, filepath.Join(o.Dir, "bind"), bindtest.Options{Zones: append(zonegen.Support(), zones...)})
	if err != nil {
		return nil, err
	}
	defer c.Stop()
	res := &Result{Zones: o.Zones, BindStart: time.Since(start)}
	o.Log.Info().Int("zones", len(zones)).Dur("took", res.BindStart).Msg("bind started")
	eng, closeEng, err := engine(ctx, c, o)
	if err != nil {
		return nil, err
	}
	defer closeEng()
	names := func(i int) []string { return zoneNames(zones[i*o.Zones : (i+1)*o.Zones]) }
	if res.Dnsctl, res.Switched, err = runDnsctl(ctx, eng, names(0)); err != nil {
		return nil, err
	}
	o.Log.Info().Dur("took", res.Dnsctl.Total()).Msg("dnsctl done")
	// The scripts get their plans for free: an operator writing them
	// would have worked out the records by other means.
	for i, mode := range []scriptMode{perZone, batch} {
		p, err := eng.Plan(ctx, names(i+1), false)
		if err != nil {
			return nil, err
		}
		t, err := runScript(ctx, c, p, mode, filepath.Join(o.Dir, string(mode)))
		if err != nil {
			return nil, err
		}
		if mode == perZone {
			res.PerZone = t
		} else {
			res.Batch = t
		}
		o.Log.Info().Str("mode", string(mode)).Dur("took", t.Total()).Msg("nsupdate done")
	}
	return res, nil
}

func zoneNames(zs []bindtest.Zone) []string {
	out := make([]string, len(zs))
	for i, z := range zs {
		out[i] = z.Name
	}
	return out
}

func engine(ctx context.Context, c *bindtest.Cluster, o Options) (*dnsctl.Engine, func(), error) {
	yaml := fmt.Sprintf(`nats: {data_dir: %q}
dns:
  server: %q
  tsig_key_file: %q
  verify_servers: [%q, %q]
  verify_ns: false
  legacy_mail_hosts: [%s, %q]
  new_mx: ["10 %s", "20 %s"]
  mail_host_a: %s
  spf: {replace: %q, with: %q}
  concurrency: %d
  rate: %d
  max_change_percent: 100
`, filepath.Join(o.Dir, "nats"), c.Primary.Addr, c.KeyFile, c.Primary.Addr, c.Secondary.Addr,
		zonegen.LegacyIP, zonegen.OldNamePattern, zonegen.NewMX1, zonegen.NewMX2, zonegen.NewIP,
		zonegen.SPFOld, zonegen.SPFNew, o.Concurrency, o.Rate)
	cfg, err := config.Parse([]byte(yaml), o.Dir, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("bench config: %w", err)
	}
	if err := os.MkdirAll(cfg.NATS.DataDir, 0o750); err != nil {
		return nil, nil, err
	}
	b, err := broker.Open(ctx, cfg.NATS, "dnsctl-bench", zerolog.Nop())
	if err != nil {
		return nil, nil, err
	}
	// Per-domain facts would drown the figures: warnings only.
	eng, err := dnsctl.New(ctx, cfg, b.JS, nil, o.Log.Level(zerolog.WarnLevel))
	if err != nil {
		b.Close()
		return nil, nil, err
	}
	return eng, b.Close, nil
}

func runDnsctl(ctx context.Context, eng *dnsctl.Engine, domains []string) (Timing, int, error) {
	var t Timing
	start := time.Now()
	p, err := eng.Plan(ctx, domains, true)
	if err != nil {
		return t, 0, err
	}
	t.Plan = time.Since(start)
	start = time.Now()
	r, err := eng.Apply(ctx, domains, dnsctl.ApplyOptions{Force: true})
	if err != nil {
		return t, 0, err
	}
	t.Apply = time.Since(start)
	if n := r.Totals[string(dnsctl.Switched)]; n != p.ToSwitch() {
		return t, 0, fmt.Errorf("bench: dnsctl switched %d zones of %d planned: %v", n, p.ToSwitch(), r.Totals)
	}
	start = time.Now()
	v, err := eng.Verify(ctx, domains)
	if err != nil {
		return t, 0, err
	}
	t.Verify = time.Since(start)
	if n := v.Totals[string(dnsctl.Verified)]; n != p.ToSwitch() {
		return t, 0, fmt.Errorf("bench: dnsctl verified %d zones of %d: %v", n, p.ToSwitch(), v.Totals)
	}
	return t, p.ToSwitch(), nil
}

// switching returns the plans that switch.
func switching(p *dnsctl.PlanReport) []plan.Domain {
	var out []plan.Domain
	for _, d := range p.Domains {
		if d.Action == plan.Switch {
			out = append(out, d)
		}
	}
	return out
}
