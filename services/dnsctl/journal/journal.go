// Package journal keeps dnsctl's state in a JetStream key-value bucket:
// the plan an operator reviewed, and per domain the RRsets as they were
// before the switch, so that a run can be resumed, verified and rolled
// back by any process. Every write is a compare-and-set on the revision
// it was read at.
package journal

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailferry/mailferry/services/dnsctl/plan"
	"github.com/mailferry/mailferry/services/dnsctl/records"
	"github.com/mailferry/mailferry/shared/kvjson"
	"github.com/mailferry/mailferry/shared/subject"
)

// Bucket is the key-value bucket of the journal.
const Bucket = "mf_dns_journal"

// Key prefixes: one entry and one stored plan per domain.
const (
	prefixState = "state."
	prefixPlan  = "plan."
)

// casAttempts bounds retries of a write that lost a race.
const casAttempts = 20

// State is where a domain is in its switch.
type State string

// States of an entry.
const (
	// Applying: the old records are journaled and the update is being
	// sent; after a crash the records tell whether it was applied.
	Applying State = "applying"
	// Applied: the primary serves the new records.
	Applied State = "applied"
	// Verified: every authoritative server serves them.
	Verified State = "verified"
	// RolledBack: the old records are back.
	RolledBack State = "rolled_back"
)

// Entry is one domain's journal.
type Entry struct {
	Domain string `json:"domain"`
	State  State  `json:"state,omitempty"`
	// Changes are the RRsets replaced: Old as they were, New as written.
	Changes []records.Change `json:"changes,omitempty"`
	// PlanID names the plan the changes came from.
	PlanID string `json:"plan_id,omitempty"`
	// Serial is the primary's SOA serial after the update.
	Serial uint32 `json:"serial,omitempty"`
	// OldTTL is the longest TTL of the replaced mail-routing RRsets.
	OldTTL          uint32    `json:"old_ttl,omitempty"`
	AppliedAt       time.Time `json:"applied_at,omitzero"`
	VerifiedAt      time.Time `json:"verified_at,omitzero"`
	OldTTLExpiresAt time.Time `json:"old_ttl_expires_at,omitzero"`
	RolledBackAt    time.Time `json:"rolled_back_at,omitzero"`
	// Lowered records the last lower-ttl run on the domain.
	Lowered *Lowering `json:"ttl_lowered,omitempty"`
	// Restored records the last restore-ttl run on the domain (or the one
	// running). It sets the TTL of the written mail records, whose New
	// in Changes then carries that TTL, so a rollback replaces them whole
	// and puts back the records and TTLs from before the switch.
	Restored  *Restoring `json:"ttl_restored,omitempty"`
	UpdatedAt time.Time  `json:"updated_at"`
	// Error is the last failure on the domain, cleared by success.
	Error string `json:"error,omitempty"`
}

// Lowering is the last TTL lowering of a domain's mail records.
type Lowering struct {
	At   time.Time `json:"at"`
	From uint32    `json:"from"`
	To   uint32    `json:"to"`
	// HeldUntil is when resolvers drop the last record they cached with
	// a TTL from before any lowering: until then a switch is not seen
	// everywhere within To.
	HeldUntil time.Time `json:"held_until"`
}

// Restoring is the TTL restore of a domain's mail records after its
// switch.
type Restoring struct {
	// At is when the restore was done, or claimed while Pending.
	At time.Time `json:"at"`
	// From is the longest TTL the records had before; To the one set.
	From uint32 `json:"from"`
	To   uint32 `json:"to"`
	// Serial is the primary's SOA serial after the update.
	Serial uint32 `json:"serial,omitempty"`
	// Pending is set while the run Owner sends the update; a claim older
	// than a few minutes was left by a run that died.
	Pending bool   `json:"pending,omitempty"`
	Owner   string `json:"owner,omitempty"`
}

// Switched reports whether the new records are in place.
func (e *Entry) Switched() bool { return e.State == Applied || e.State == Verified }

// ExpiresAt computes when no resolver can still hold the old records,
// counted from since (the moment every server served the new ones): the
// old TTL after since, or later when a TTL lowering is still running out.
func (e *Entry) ExpiresAt(since time.Time) time.Time {
	t := since.Add(time.Duration(e.OldTTL) * time.Second)
	if e.Lowered != nil && e.Lowered.HeldUntil.After(t) {
		t = e.Lowered.HeldUntil
	}
	return t.UTC()
}

// Stored is a plan saved by `dns plan`, for `dns apply` to carry out.
type Stored struct {
	ID string `json:"id"`
	plan.Domain
}

// Journal is the bucket.
type Journal struct {
	kv jetstream.KeyValue
}

// Open declares the bucket (idempotently) and returns the journal.
func Open(ctx context.Context, js jetstream.JetStream, replicas int) (*Journal, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      Bucket,
		Description: "dnsctl: reviewed plans and the records each domain had before its switch",
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
		History:     5,
	})
	if err != nil {
		return nil, fmt.Errorf("declare bucket %s: %w", Bucket, err)
	}
	return &Journal{kv: kv}, nil
}

func key(prefix, domain string) string {
	return prefix + subject.Key(strings.TrimSuffix(strings.ToLower(domain), "."))
}

// Get returns the domain's entry, or nil when it has none.
func (j *Journal) Get(ctx context.Context, domain string) (*Entry, error) {
	return get[Entry](ctx, j.kv, key(prefixState, domain))
}

// get returns the value under k, or nil when there is none.
func get[T any](ctx context.Context, kv jetstream.KeyValue, k string) (*T, error) {
	e, err := kvjson.Get[*T](ctx, kv, k)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	return e.V, nil
}

// Modify reads the domain's entry (a fresh one when absent), lets f change
// it and writes it back if nobody wrote in between; otherwise it reads
// again and retries. An error from f leaves the entry as it was.
func (j *Journal) Modify(ctx context.Context, domain string, f func(*Entry) error) (*Entry, error) {
	var ferr error
	e, err := kvjson.Update(ctx, j.kv, key(prefixState, domain), func(e *kvjson.Entry[*Entry]) error {
		if !e.Exists() {
			e.V = &Entry{Domain: domain}
		}
		if ferr = f(e.V); ferr != nil {
			return ferr
		}
		e.V.UpdatedAt = time.Now().UTC()
		return nil
	}, kvjson.Attempts(casAttempts))
	switch {
	case ferr != nil:
		return nil, ferr
	case err != nil:
		return nil, fmt.Errorf("journal: %w", err)
	}
	return e.V, nil
}

// Entries returns every domain's entry.
func (j *Journal) Entries(ctx context.Context) ([]*Entry, error) {
	keys, err := j.kv.ListKeysFiltered(ctx, prefixState+">")
	if err != nil {
		return nil, fmt.Errorf("list journal: %w", err)
	}
	var out []*Entry
	for k := range keys.Keys() {
		e, err := get[Entry](ctx, j.kv, k)
		if err != nil {
			return nil, err
		}
		if e != nil { // else deleted while listing
			out = append(out, e)
		}
	}
	return out, nil
}

// SavePlan stores a domain's plan under the run id.
func (j *Journal) SavePlan(ctx context.Context, id string, d plan.Domain) error {
	b, err := json.Marshal(Stored{ID: id, Domain: d})
	if err != nil {
		return fmt.Errorf("encode plan %s: %w", d.Domain, err)
	}
	if _, err := j.kv.Put(ctx, key(prefixPlan, d.Domain), b); err != nil {
		return fmt.Errorf("store plan %s: %w", d.Domain, err)
	}
	return nil
}

// Plan returns the stored plan of a domain, or nil.
func (j *Journal) Plan(ctx context.Context, domain string) (*Stored, error) {
	return get[Stored](ctx, j.kv, key(prefixPlan, domain))
}
