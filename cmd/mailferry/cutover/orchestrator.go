// Package cutover drives a cutover campaign: the orchestrator admits the
// campaign's domains within cutover.domains_in_flight, applies every
// lifecycle event to their records (shared/campaign), and takes the action
// each phase calls for: provision, queue a pass, ask dnsctl to switch,
// verify, wait out the old MX TTL, restore the TTLs and write the report.
//
// Everything it knows is in JetStream: the records in mf_campaign, the
// events it reads with a durable consumer, the lease that makes one of
// several instances the one that acts. A killed orchestrator loses
// nothing: the next one to take the lease takes each domain's action
// again (campaign.Next), and every action is safe to take twice.
package cutover

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/services/dnsctl"
	"github.com/mailferry/mailferry/services/dnsctl/dnsconfig"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/campaign"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/event"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/subject"
)

// ServiceName names the orchestrator in events and logs.
const ServiceName = "cutover"

// consumerName is the orchestrator's durable consumer on the events
// stream.
const consumerName = "cutover"

// leaseName is the lease that makes one orchestrator act.
const leaseName = "orchestrator"

// Needs are the orchestrator's shared resources: it writes the campaign,
// jobs and events, and the count of refused source logins (verifying logs
// in to the source), and reads the loader's ledger to verify.
var Needs = broker.Needs{
	Writes: []string{broker.BucketCampaign, broker.StreamJobs, broker.StreamEvents, broker.BucketLoginFailures},
	Reads:  []string{broker.BucketLedger},
}

// eventFilters are the events that move a campaign.
var eventFilters = []string{
	subject.EventPrefix + "." + event.DomainProvisioned + ".*",
	subject.EventPrefix + "." + event.MailboxQueued + ".*",
	subject.EventPrefix + "." + event.MailboxLoaded + ".*",
	subject.EventPrefix + "." + event.MailboxVerified + ".*",
	subject.EventPrefix + "." + event.MailboxFailed + ".*",
	subject.EventPrefix + "." + event.DNSSwitched + ".*",
	subject.EventPrefix + "." + event.DNSSkipped + ".*",
	subject.EventPrefix + "." + event.DNSFailed + ".*",
}

// Orchestrator runs a campaign. Several may run against one broker; the
// one holding the lease acts, the others wait to take over.
type Orchestrator struct {
	Config   *config.Config
	Settings Settings
	Broker   *broker.Broker
	Log      zerolog.Logger
	// Mailboxes is the inventory: each mailbox's source and target.
	Mailboxes []job.Mailbox
}

// Run runs the orchestrator until ctx ends.
func (o *Orchestrator) Run(ctx context.Context) error {
	if err := o.Broker.Await(ctx, o.Log, Needs); err != nil {
		return err
	}
	store, err := campaign.Open(ctx, o.Broker)
	if err != nil {
		return err
	}
	store.Domains = campaign.NewDomains(o.Mailboxes)
	kv, err := o.Broker.JS.KeyValue(ctx, broker.BucketCampaign)
	if err != nil {
		return fmt.Errorf("open bucket %s: %w", broker.BucketCampaign, err)
	}
	t, err := o.newTerm(ctx, store)
	if err != nil {
		return err
	}
	lease := campaign.NewLease(kv, leaseName, time.Duration(o.Settings.LeaseTTL))
	lease.Alone = o.Broker.Private()
	err = lease.Lead(ctx, o.Log, t.run)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// term is one orchestrator's work while it holds the lease: what it has
// taken, so that an action runs once at a time per domain and is not
// taken again while its outcome is awaited.
type term struct {
	o      *Orchestrator
	store  *campaign.Store
	events event.Publisher
	log    zerolog.Logger
	boxes  map[string]job.Mailbox
	dns    *dnsctl.Engine
	// verifying bounds the verifications running at once.
	verifying chan struct{}
	// provisioning serializes provisioning runs, which cover every
	// imported account.
	provisioning sync.Mutex

	mu    sync.Mutex
	busy  map[string]bool
	taken map[string]string
	retry map[string]time.Time
	// said holds what was said a domain waits for, to say it once.
	said     map[string]string
	failures map[string]int
	wg       sync.WaitGroup
}

func (o *Orchestrator) newTerm(ctx context.Context, store *campaign.Store) (*term, error) {
	t := &term{o: o, store: store, log: o.Log,
		events:    event.Publisher{JS: o.Broker.JS, Service: ServiceName},
		boxes:     map[string]job.Mailbox{},
		verifying: make(chan struct{}, max(o.Settings.VerifyConcurrency, 1)),
		busy:      map[string]bool{}, taken: map[string]string{}, retry: map[string]time.Time{},
		said: map[string]string{}, failures: map[string]int{},
	}
	for _, mb := range o.Mailboxes {
		t.boxes[mb.SourceUser] = mb
	}
	d, err := dnsconfig.Load(o.Config)
	if err != nil {
		return nil, err
	}
	if d.Enabled() {
		eng, err := dnsctl.NewFromSection(ctx, d, o.Config.NATS.Replicas, o.Broker.JS, t.events, o.Log.With().Str("service", "dnsctl").Logger())
		if err != nil {
			return nil, err
		}
		t.dns = eng
	}
	return t, nil
}

// run follows the events and the clock until ctx ends, then waits for the
// actions it started.
func (t *term) run(ctx context.Context) error {
	defer t.wg.Wait()
	cons, err := t.o.Broker.JS.CreateOrUpdateConsumer(ctx, broker.StreamEvents, jetstream.ConsumerConfig{
		Durable:        consumerName,
		Description:    "cutover orchestrator: the events that move a campaign",
		FilterSubjects: eventFilters,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        time.Minute,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("events consumer %s: %w", consumerName, err)
	}
	tick := time.Duration(t.o.Settings.Tick)
	next := time.Time{}
	for ctx.Err() == nil {
		if time.Now().After(next) {
			if err := t.sweep(ctx); err != nil && ctx.Err() == nil {
				t.log.Warn().Err(err).Msg("campaign not read; trying again")
			}
			next = time.Now().Add(tick)
		}
		batch, err := cons.Fetch(100, jetstream.FetchMaxWait(min(tick, time.Second)))
		if err != nil {
			if ctx.Err() == nil {
				t.log.Warn().Err(err).Msg("events not read; trying again")
				sleep(ctx, time.Second)
			}
			continue
		}
		for m := range batch.Messages() {
			t.onEvent(ctx, m)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && ctx.Err() == nil {
			t.log.Warn().Err(err).Msg("events not read; trying again")
		}
	}
	return nil
}

// onEvent applies an event to the campaign and takes the action the change
// calls for. An event that cannot be applied now is delivered again.
func (t *term) onEvent(ctx context.Context, m jetstream.Msg) {
	e, err := event.Decode(m.Data())
	if err != nil {
		t.log.Warn().Err(err).Str("subject", m.Subject()).Msg("undecodable event skipped")
		_ = m.Term()
		return
	}
	res, err := t.store.ApplyEvent(ctx, e)
	var refused *campaign.TransitionError
	switch {
	case errors.As(err, &refused) || errors.Is(err, event.ErrUnknownVersion):
		t.log.Warn().Err(err).Str("event", e.ID).Msg("event does not move the campaign; skipped")
	case err != nil:
		if ctx.Err() == nil {
			t.log.Warn().Err(err).Str("event", e.ID).Msg("event not applied; it is delivered again")
			_ = m.NakWithDelay(time.Second)
		}
		return
	case res.Changed:
		t.changed(ctx, res.Domain, e.Type, res.Action)
	}
	if err := m.Ack(); err != nil && ctx.Err() == nil {
		t.log.Warn().Err(err).Str("event", e.ID).Msg("event not acknowledged; it is applied again, which changes nothing")
	}
}

// changed logs a domain's new state and takes its action.
func (t *term) changed(ctx context.Context, d campaign.Domain, by string, act campaign.Action) {
	ev := t.log.Info().Str("domain", d.Domain).Str("phase", string(d.Phase)).Str("by", by)
	if d.Reason != "" {
		ev = ev.Str("reason", d.Reason)
	}
	ev.Msg("domain moved")
	if d.Phase == campaign.Failed {
		t.log.Error().Str("domain", d.Domain).Str("stopped", string(d.Stopped)).Str("reason", d.Reason).
			Msg("domain failed: `mailferry cutover retry` takes it again once the cause is fixed")
	}
	t.take(ctx, d, act)
}

// sweep admits queued domains, tells draining ones the time, takes again
// what a domain's phase calls for when nothing runs for it, and finishes
// the domains that ended.
func (t *term) sweep(ctx context.Context) error {
	domains, err := t.store.List(ctx, "")
	if err != nil {
		return err
	}
	inFlight := 0
	for _, d := range domains {
		if d.Phase.Running() && d.Phase != campaign.Queued {
			inFlight++
		}
	}
	slices.SortStableFunc(domains, func(a, b campaign.Domain) int {
		return cmp.Compare(a.Entered[campaign.Queued].UnixNano(), b.Entered[campaign.Queued].UnixNano())
	})
	for _, d := range domains {
		if ctx.Err() != nil {
			return nil
		}
		switch d.Phase {
		case campaign.Queued:
			if inFlight >= t.o.Settings.DomainsInFlight {
				t.sayOnce(d.Domain, "admit", "domain queued: waiting for one of the domains in flight to end", "in_flight", inFlight)
				continue
			}
			if t.apply(ctx, d.Domain, campaign.Start{}) {
				inFlight++
			}
		case campaign.Draining:
			t.apply(ctx, d.Domain, campaign.Tick{})
			t.takeAgain(ctx, d)
		case campaign.Done, campaign.Failed:
			t.finish(ctx, d)
		default:
			t.takeAgain(ctx, d)
		}
	}
	return nil
}

// apply applies an operator's or the clock's fact and takes the action
// the change calls for; it reports whether the record changed.
func (t *term) apply(ctx context.Context, domain string, f campaign.Fact) bool {
	res, err := t.store.Apply(ctx, domain, f)
	if err != nil {
		if ctx.Err() == nil {
			t.log.Warn().Err(err).Str("domain", domain).Str("fact", f.Name()).Msg("fact not applied; trying again")
		}
		return false
	}
	if res.Changed {
		t.changed(ctx, res.Domain, f.Name(), res.Action)
	}
	return res.Changed
}

// takeAgain takes the action a domain's phase calls for unless it is
// running, was taken already in this term, or failed a moment ago.
func (t *term) takeAgain(ctx context.Context, d campaign.Domain) {
	t.mu.Lock()
	wait := time.Now().Before(t.retry[d.Domain])
	t.mu.Unlock()
	if !wait {
		t.take(ctx, d, campaign.Next(d))
	}
}

// take starts act for d in the background, once: an action already
// running for the domain, or taken already for the same phase and pass,
// is not started again.
func (t *term) take(ctx context.Context, d campaign.Domain, act campaign.Action) {
	switch act.Kind {
	case campaign.None:
		return
	case campaign.Wait:
		t.sayOnce(d.Domain, "drain "+act.Until.String(), "draining: the delta pass is scheduled for when the old MX TTL has expired plus the delta grace",
			"delta_at", act.Until.UTC().Format(time.RFC3339))
		return
	}
	key := fmt.Sprintf("%s %s %s %d", d.Phase, act.Kind, act.Pass, d.Attempt)
	t.mu.Lock()
	if t.busy[d.Domain] || t.taken[d.Domain] == key {
		t.mu.Unlock()
		return
	}
	t.busy[d.Domain], t.taken[d.Domain] = true, key
	t.mu.Unlock()
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		err := t.do(ctx, d, act)
		t.mu.Lock()
		defer t.mu.Unlock()
		t.busy[d.Domain] = false
		if err != nil {
			t.taken[d.Domain] = ""
			t.retry[d.Domain] = time.Now().Add(time.Duration(t.o.Settings.RetryAfter))
			if ctx.Err() == nil && !errors.Is(err, errWaiting) {
				t.log.Warn().Err(err).Str("domain", d.Domain).Str("action", string(act.Kind)).
					Dur("retry_in", time.Duration(t.o.Settings.RetryAfter)).Msg("action failed; it is taken again")
			}
		}
	}()
}

// do takes one action.
func (t *term) do(ctx context.Context, d campaign.Domain, act campaign.Action) error {
	switch act.Kind {
	case campaign.ProvisionDomain:
		return t.provision(ctx, d)
	case campaign.EnqueuePass:
		return t.enqueue(ctx, d, act)
	case campaign.RequestSwitch:
		return t.requestSwitch(ctx, d)
	case campaign.Verify:
		return t.verify(ctx, d, act)
	}
	return fmt.Errorf("unknown action %q", act.Kind)
}

// sayOnce logs msg at info for domain once per term and topic.
func (t *term) sayOnce(domain, topic, msg string, kv ...any) {
	t.mu.Lock()
	said := t.said[domain] == topic
	t.said[domain] = topic
	t.mu.Unlock()
	if !said {
		t.log.Info().Str("domain", domain).Fields(kv).Msg(msg)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// Finished reports whether the orchestrator has nothing left to do for a
// domain that ended: its TTLs restored (a switched, done domain, with a
// dns section) and its report written.
func (o *Orchestrator) Finished(d campaign.Domain) bool {
	if d.Phase != campaign.Done && d.Phase != campaign.Failed {
		return false
	}
	if d.After.ReportPhase != d.Phase {
		return false
	}
	return !(o.Settings.Switches() && d.Phase == campaign.Done && d.DNS.Switched() && d.After.TTLRestored == 0)
}

// CheckLeader returns an error saying so when no orchestrator holds the
// campaign's lease: domains handed over wait until one runs.
func CheckLeader(ctx context.Context, b *broker.Broker) error {
	kv, err := b.JS.KeyValue(ctx, broker.BucketCampaign)
	if err != nil {
		return fmt.Errorf("open bucket %s: %w", broker.BucketCampaign, err)
	}
	_, ok, err := campaign.Holder(ctx, kv, leaseName)
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("no orchestrator holds the campaign's lease: start `mailferry cutover run` (its systemd unit is mailferry-cutover)")
	}
	return nil
}
