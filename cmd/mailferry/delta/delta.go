// Package delta schedules the delta mail pass of a domain: once dnsctl has
// switched its MX records and the old records' TTL has run out, no more
// mail reaches the legacy server, and one more pass over the domain's
// mailboxes moves what arrived there during the cutover.
package delta

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/event"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/subject"
)

// Scheduler enqueues delta passes for the mailboxes of switched domains.
type Scheduler struct {
	Broker    *broker.Broker
	Mailboxes []job.Mailbox
	Log       zerolog.Logger
}

// Run follows dns.switched events until ctx ends. A switch whose old TTL
// has not expired yet is put back until it has: the wait survives
// restarts because it is the broker's, not this process's.
func (s *Scheduler) Run(ctx context.Context) error {
	// It enqueues delta passes and reads dns.switched.
	if err := s.Broker.Await(ctx, s.Log, broker.Needs{Writes: []string{broker.StreamJobs}, Reads: []string{broker.StreamEvents}}); err != nil {
		return err
	}
	cons, err := s.Broker.JS.CreateOrUpdateConsumer(ctx, broker.StreamEvents, jetstream.ConsumerConfig{
		Durable:       "delta",
		FilterSubject: subject.EventPrefix + "." + event.DNSSwitched + ".*",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       time.Minute,
	})
	if err != nil {
		return fmt.Errorf("delta consumer: %w", err)
	}
	job.Pull(ctx, cons, 1, s.Log, func(m jetstream.Msg) { s.handle(ctx, m) })
	return nil
}

func (s *Scheduler) handle(ctx context.Context, m jetstream.Msg) {
	e, err := event.Decode(m.Data())
	if err != nil {
		s.Log.Error().Err(err).Msg("undecodable dns.switched event dropped")
		_ = m.Term()
		return
	}
	var d event.DNSSwitchedData
	if err := json.Unmarshal(e.Data, &d); err != nil {
		s.Log.Error().Err(err).Str("domain", e.Key).Msg("undecodable dns.switched data dropped")
		_ = m.Term()
		return
	}
	if wait := time.Until(d.OldTTLExpiresAt); wait > 0 {
		_ = m.NakWithDelay(wait)
		return
	}
	n, err := s.enqueue(ctx, e.Key, d)
	if err != nil {
		s.Log.Warn().Err(err).Str("domain", e.Key).Msg("delta pass not enqueued, will retry")
		_ = m.NakWithDelay(10 * time.Second)
		return
	}
	s.Log.Info().Str("domain", e.Key).Int("mailboxes", n).Time("old_ttl_expired", d.OldTTLExpiresAt).Msg("delta pass enqueued")
	_ = m.Ack()
}

// enqueue puts one pass on the jobs stream for every mailbox of domain.
// The pass is named after the switch, so a repeat is dropped as a
// duplicate.
func (s *Scheduler) enqueue(ctx context.Context, domain string, d event.DNSSwitchedData) (int, error) {
	pass := fmt.Sprintf("delta-%s-%d", subject.Key(domain), d.Serial)
	n := 0
	for _, mb := range s.Mailboxes {
		if !InDomain(mb.SourceUser, domain) && !InDomain(mb.TargetUser, domain) {
			continue
		}
		// The pass after the switch is the mailbox's last extraction.
		if err := job.Publish(ctx, s.Broker.JS, &job.Job{Mailbox: mb, Pass: pass, Enqueued: time.Now().UTC(), LastExtraction: true}); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// InDomain reports whether address belongs to domain (case-insensitive,
// trailing dots ignored).
func InDomain(address, domain string) bool {
	at := strings.LastIndexByte(address, '@')
	if at < 0 {
		return false
	}
	return strings.EqualFold(strings.TrimSuffix(address[at+1:], "."), strings.TrimSuffix(domain, "."))
}
