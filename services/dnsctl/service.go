package dnsctl

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/miekg/dns"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/services/dnsctl/dnsconfig"
	"github.com/mailferry/mailferry/services/dnsctl/journal"
	"github.com/mailferry/mailferry/services/dnsctl/plan"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/command"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/event"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/metrics"
	"github.com/mailferry/mailferry/shared/subject"
)

// consumerName is the service's durable consumer on the events stream.
const consumerName = "dnsctl"

// Service runs dnsctl as a daemon: it switches a domain when an operator
// (`mailferry dns cutover`) or a campaign requests its cutover, and
// reports every outcome as an event. With switch_on_provisioned (off by
// default) it also switches a domain as soon as the auth service reports
// it provisioned; without it, it says once per domain that it leaves the
// switch to a cutover request.
type Service struct {
	Config *config.Config
	Broker *broker.Broker
	Log    zerolog.Logger
	// Metrics counts the switches by outcome (nil: nothing is counted).
	Metrics *metrics.Metrics

	// left holds the provisioned domains the service said it leaves to a
	// cutover request, so it says so once per domain.
	left sync.Map
}

// Needs are dnsctl's shared resources: it publishes and reads events (its
// journal bucket is its own, declared by the journal package).
var Needs = broker.Needs{Writes: []string{broker.StreamEvents}}

// CheckConfig reports what is wrong with cfg's dns section, for the
// daemon to refuse it before it connects to the broker (daemon.Check).
func CheckConfig(cfg *config.Config) error {
	_, err := dnsconfig.Load(cfg)
	return err
}

// Run consumes events until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	d, err := dnsconfig.Load(s.Config)
	if err != nil {
		return &command.ConfigError{Err: err}
	}
	if err := s.Broker.Await(ctx, s.Log, Needs); err != nil {
		return err
	}
	if d.Enabled() {
		s.Metrics.AddReady("dns server", metrics.Probe(metrics.ProbeEvery, func(ctx context.Context) error {
			return answers(ctx, d.Server)
		}))
	}
	eng, err := NewFromSection(ctx, d, s.Config.NATS.Replicas, s.Broker.JS, event.Publisher{JS: s.Broker.JS, Service: ServiceName}, s.Log)
	if err != nil {
		return err
	}
	filters := []string{
		subject.EventPrefix + "." + CutoverRequested + ".*",
		subject.EventPrefix + "." + event.DomainProvisioned + ".*",
	}
	cons, err := s.Broker.JS.CreateOrUpdateConsumer(ctx, broker.StreamEvents, jetstream.ConsumerConfig{
		Durable:        consumerName,
		Description:    "dnsctl: domains to switch",
		FilterSubjects: filters,
		AckPolicy:      jetstream.AckExplicitPolicy,
		// A switch waits for verification; give it that and some.
		AckWait:       eng.VerifyTimeout + 2*time.Minute,
		MaxAckPending: eng.Concurrency,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("events consumer %s: %w", consumerName, err)
	}
	s.Metrics.WatchConsumer(s.Broker.JS, broker.StreamEvents, consumerName)
	s.Log.Info().Strs("subjects", filters).Bool("switch_on_provisioned", *d.SwitchOnProvisioned).Msg("consuming events")
	return s.consume(ctx, cons, eng, *d.SwitchOnProvisioned)
}

func (s *Service) consume(ctx context.Context, cons jetstream.Consumer, eng *Engine, onProvisioned bool) error {
	job.Pull(ctx, cons, eng.Concurrency, s.Log, func(m jetstream.Msg) { s.handle(ctx, eng, m, onProvisioned) })
	return nil
}

// handle switches the event's domain; a domain.provisioned without
// switch_on_provisioned is only noted (once per domain) and acknowledged.
// The outcome, failures included, is
// published as an event, so the message is acknowledged once handled; it
// is left for redelivery only when the service stops mid-way (a switch is
// idempotent).
func (s *Service) handle(ctx context.Context, eng *Engine, m jetstream.Msg, onProvisioned bool) {
	e, err := event.Decode(m.Data())
	if err != nil {
		s.Log.Error().Err(err).Str("subject", m.Subject()).Msg("undecodable event dropped")
		_ = m.Term()
		return
	}
	domain, err := CanonicalDomain(e.Key)
	if err != nil {
		s.Log.Error().Err(err).Str("event", e.ID).Msg("event without a domain dropped")
		_ = m.Term()
		return
	}
	if e.Type == event.DomainProvisioned && !onProvisioned {
		if _, said := s.left.LoadOrStore(domain, true); !said {
			s.Log.Info().Str("domain", domain).Str("event", e.ID).
				Msg("domain provisioned; its DNS is switched when a dns cutover or campaign requests it (switch_on_provisioned is off)")
		}
		if err := m.Ack(); err != nil {
			s.Log.Warn().Err(err).Str("domain", domain).Msg("ack event")
		}
		return
	}
	res := eng.Switch(ctx, domain)
	if ctx.Err() != nil {
		return
	}
	s.Metrics.DNSUpdate(metricOutcome(res.Outcome))
	s.Log.Info().Str("domain", domain).Str("trigger", e.Type).Str("outcome", string(res.Outcome)).Str("code", res.Code).Msg("event handled")
	if err := m.Ack(); err != nil {
		s.Log.Warn().Err(err).Str("domain", domain).Msg("ack event")
	}
}

// metricOutcome is how a switch ended, as mailferry_dns_updates_total
// counts it: a switch applied and verified (or found applied and then
// verified) is "switched", as its event says.
func metricOutcome(o Outcome) string {
	if o == Verified {
		return string(Switched)
	}
	return string(o)
}

// Switch plans, applies and verifies one domain now, publishing the
// outcome. A domain switched before but not verified (the run died) is
// verified.
func (e *Engine) Switch(ctx context.Context, domain string) Result {
	d := e.planOne(ctx, domain)
	if d.Code == plan.CodeAlreadySwitched {
		if en, err := e.Journal.Get(ctx, domain); err == nil && en != nil && en.State == journal.Applied {
			return e.verifyOne(ctx, domain)
		}
	}
	res := e.applyPlanned(ctx, planned{id: newPlanID(e.now()), Domain: d}, false)
	if res.Outcome != Switched && res.Outcome != Unchanged {
		return res
	}
	return e.verifyOne(ctx, domain)
}

func (e *Engine) verifyOne(ctx context.Context, domain string) Result {
	v, err := e.Verify(ctx, []string{domain})
	if err != nil {
		return Result{Domain: domain, Outcome: Failed, Error: err.Error()}
	}
	return v.Results[0]
}

// RequestCutover publishes the event that makes the service switch domain.
func RequestCutover(ctx context.Context, events Publisher, domain string) error {
	d, err := CanonicalDomain(domain)
	if err != nil {
		return err
	}
	return events.Publish(ctx, event.CutoverRequested(d, time.Now()))
}

// answers reports whether the DNS server at addr answers a query at all
// (any response code: an authoritative server refuses the root's SOA,
// and that is an answer), for the daemon's readiness.
func answers(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	q := new(dns.Msg)
	q.SetQuestion(".", dns.TypeSOA)
	if _, _, err := new(dns.Client).ExchangeContext(ctx, q, addr); err != nil {
		return fmt.Errorf("%s does not answer: %w", addr, err)
	}
	return nil
}
