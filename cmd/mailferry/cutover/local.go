package cutover

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/cmd/mailferry/migrate"
	"github.com/mailferry/mailferry/services/dnsctl"
	"github.com/mailferry/mailferry/services/dnsctl/dnsconfig"
	"github.com/mailferry/mailferry/services/loader"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/campaign"
	"github.com/mailferry/mailferry/shared/daemon"
	"github.com/mailferry/mailferry/shared/job"
)

// RunLocal runs the campaign of the selected domains in this process, as
// `cutover start` does without nats.url: the broker embedded, the
// extractor, the loader, dnsctl (with a dns section) and the orchestrator
// in-process. It returns when every selected domain is done or failed, or
// paused (nothing can resume it while this process runs the campaign
// alone); run again, it resumes where the campaign stood.
func RunLocal(ctx context.Context, o *Orchestrator, selected []string, w io.Writer) (Settled, error) {
	cfg, log := o.Config, o.Log
	svcs, err := migrate.LoadServices(cfg, log)
	if err != nil {
		return Settled{}, err
	}
	dns, err := dnsconfig.Load(cfg)
	if err != nil {
		return Settled{}, err
	}
	b, err := daemon.OpenBroker(ctx, cfg, "cutover", log)
	if err != nil {
		return Settled{}, err
	}
	defer b.Close()
	o.Broker = b
	store, err := campaign.Open(ctx, b)
	if err != nil {
		return Settled{}, err
	}
	store.Domains = campaign.NewDomains(o.Mailboxes)
	if b.Private() {
		if err := breakLeases(ctx, b, log); err != nil {
			return Settled{}, err
		}
	}
	added, err := Add(ctx, o.Settings, store, Domains(o.Mailboxes), selected)
	if err != nil {
		return Settled{}, err
	}
	tellResumed(w, added)

	svcCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	svcs.Start(svcCtx, &wg, b, log)
	run := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(svcCtx); err != nil && !errors.Is(err, context.Canceled) {
				log.Error().Err(err).Str("service", name).Msg("service stopped")
			}
		}()
	}
	if dns.Enabled() {
		run("dnsctl", (&dnsctl.Service{Config: cfg, Broker: b, Log: log.With().Str("service", "dnsctl").Logger()}).Run)
	}
	run("cutover", o.Run)
	return Await(ctx, store, selected, AwaitOptions{PausedEnds: true, Finished: o.Finished}, w)
}

// breakLeases releases the loader's and the orchestrator's leases and the
// jobs a killed run left on a private broker: nobody else can reach it, so
// their holders are gone. (A campaign's passes have fixed ids, so a job
// queued again is a duplicate: without this the killed run's job would
// wait out job_ack_wait.)
func breakLeases(ctx context.Context, b *broker.Broker, log zerolog.Logger) error {
	if err := loader.BreakLeases(ctx, b.Ledger, log); err != nil {
		return err
	}
	if err := job.ReleaseDeliveries(ctx, b.JS, log); err != nil {
		return err
	}
	kv, err := b.JS.KeyValue(ctx, broker.BucketCampaign)
	if err != nil {
		return fmt.Errorf("open bucket %s: %w", broker.BucketCampaign, err)
	}
	return campaign.Break(ctx, kv, leaseName)
}

// tellResumed writes a line per domain Add found in the campaign already (the
// queued ones are told by Await).
func tellResumed(w io.Writer, added []Added) {
	for _, a := range added {
		if !a.New {
			fmt.Fprintf(w, "%s: in the campaign already, resumed\n", a.Domain)
		}
	}
}
