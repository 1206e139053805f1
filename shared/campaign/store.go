package campaign

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/event"
	"github.com/mailferry/mailferry/shared/kvjson"
	"github.com/mailferry/mailferry/shared/subject"
)

// Needs is what the campaign's writers (the orchestrator, `cutover
// start`) declare; readers (`cutover status`) bind the bucket only.
var Needs = broker.Needs{Writes: []string{broker.BucketCampaign}}

// Keys: "domain.<domain>", "mailbox.<domain>.<mailbox>" and
// "lease.<name>", each name a subject.Key token.
const (
	prefixDomain  = "domain."
	prefixMailbox = "mailbox."
	prefixLease   = "lease."
)

// ErrNoDomain is wrapped by Apply for a domain the campaign does not have.
var ErrNoDomain = errors.New("domain not in the campaign")

// KV is what the store needs of the campaign bucket; jetstream.KeyValue
// has it.
type KV interface {
	kvjson.Bucket
	ListKeysFiltered(ctx context.Context, filters ...string) (jetstream.KeyLister, error)
}

// Store reads and writes the campaign's records. Every write is a
// compare-and-set, so any number of processes may share one bucket.
type Store struct {
	kv KV
	// Now is the clock (time.Now unless a test sets it).
	Now func() time.Time
	// Domains maps a mailbox to its domain (nil: the domain of its
	// address); set it from the inventory.
	Domains Domains
}

// NewStore is the store over the campaign bucket kv.
func NewStore(kv KV) *Store { return &Store{kv: kv, Now: time.Now} }

// Open binds the campaign bucket of b, which Needs declared (or a reader's
// broker.Use bound).
func Open(ctx context.Context, b *broker.Broker) (*Store, error) {
	kv, err := b.JS.KeyValue(ctx, broker.BucketCampaign)
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", broker.BucketCampaign, err)
	}
	return NewStore(kv), nil
}

// DomainKey is the key of a domain's record.
func DomainKey(domain string) string { return prefixDomain + subject.Key(NormalizeDomain(domain)) }

// MailboxKey is the key of the record of a mailbox of domain.
func MailboxKey(domain, mailbox string) string {
	return prefixMailbox + subject.Key(NormalizeDomain(domain)) + "." + subject.Key(mailbox)
}

// Add puts d and a record for each of its mailboxes in the campaign. A
// domain already there is left as it is (its record is returned, with
// added false): planning a campaign again does not reset one under way.
func (s *Store) Add(ctx context.Context, d Domain) (rec Domain, added bool, err error) {
	_, err = kvjson.Create(ctx, s.kv, DomainKey(d.Domain), d)
	if kvjson.IsConflict(err) {
		got, _, err := s.Get(ctx, d.Domain)
		return got, false, err
	}
	if err != nil {
		return Domain{}, false, fmt.Errorf("add domain %s: %w", d.Domain, err)
	}
	for _, m := range d.Mailboxes {
		_, err := kvjson.Create(ctx, s.kv, MailboxKey(d.Domain, m), Mailbox{Mailbox: m, Domain: d.Domain, Phase: BoxQueued, Updated: d.Updated})
		if err != nil && !kvjson.IsConflict(err) {
			return Domain{}, false, fmt.Errorf("add domain %s: %w", d.Domain, err)
		}
	}
	return d, true, nil
}

// Get reads a domain's record; ok is false when the campaign has none.
func (s *Store) Get(ctx context.Context, domain string) (d Domain, ok bool, err error) {
	e, err := kvjson.Get[Domain](ctx, s.kv, DomainKey(domain))
	if err != nil {
		return Domain{}, false, fmt.Errorf("read domain %s: %w", domain, err)
	}
	return e.V, e.Exists(), nil
}

// List reads the records of every domain whose name starts with prefix
// ("" for all), by name.
func (s *Store) List(ctx context.Context, prefix string) ([]Domain, error) {
	keys, err := s.keys(ctx, prefixDomain+"*")
	if err != nil {
		return nil, err
	}
	want := DomainKey(prefix)
	if prefix == "" {
		want = prefixDomain
	}
	var out []Domain
	for _, k := range keys {
		if !strings.HasPrefix(k, want) {
			continue
		}
		e, err := kvjson.Get[Domain](ctx, s.kv, k)
		if err != nil {
			return nil, fmt.Errorf("list domains: %w", err)
		}
		if e.Exists() {
			out = append(out, e.V)
		}
	}
	slices.SortFunc(out, func(a, b Domain) int { return strings.Compare(a.Domain, b.Domain) })
	return out, nil
}

// Mailboxes reads the records of a domain's mailboxes, by address.
func (s *Store) Mailboxes(ctx context.Context, domain string) ([]Mailbox, error) {
	keys, err := s.keys(ctx, prefixMailbox+subject.Key(NormalizeDomain(domain))+".*")
	if err != nil {
		return nil, err
	}
	var out []Mailbox
	for _, k := range keys {
		e, err := kvjson.Get[Mailbox](ctx, s.kv, k)
		if err != nil {
			return nil, fmt.Errorf("list mailboxes of %s: %w", domain, err)
		}
		if e.Exists() {
			out = append(out, e.V)
		}
	}
	slices.SortFunc(out, func(a, b Mailbox) int { return strings.Compare(a.Mailbox, b.Mailbox) })
	return out, nil
}

func (s *Store) keys(ctx context.Context, filter string) ([]string, error) {
	l, err := s.kv.ListKeysFiltered(ctx, filter)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", filter, err)
	}
	defer func() { _ = l.Stop() }()
	var keys []string
	for k := range l.Keys() {
		keys = append(keys, k)
	}
	return keys, nil
}

// Result is what Apply did.
type Result struct {
	// Domain is the record after the fact.
	Domain Domain
	// Changed says this call moved the record; of several processes
	// applying the same fact, one sees it.
	Changed bool
	// Action is what the change calls for; None unless Changed.
	Action Action
}

// Apply applies fact f to domain's record: read, Step, write by
// compare-and-set, and again on the newer record when another writer got
// there first. A fact the record already reflects writes nothing. The
// error of a refused fact wraps the *TransitionError.
func (s *Store) Apply(ctx context.Context, domain string, f Fact) (Result, error) {
	var res Result
	e, err := kvjson.Update(ctx, s.kv, DomainKey(domain), func(e *kvjson.Entry[Domain]) error {
		res = Result{Domain: e.V, Action: Action{Kind: None}}
		if !e.Exists() {
			return fmt.Errorf("apply %s to %s: %w", f.Name(), domain, ErrNoDomain)
		}
		next, act, changed, err := step(e.V, f, s.Now())
		if err != nil {
			return err
		}
		if !changed {
			return kvjson.ErrSkip
		}
		e.V = next
		res = Result{Domain: next, Changed: true, Action: act}
		return nil
	}, kvjson.Attempts(32))
	if err != nil {
		return Result{}, err
	}
	res.Domain = e.V
	return res, nil
}

// ApplyMailbox applies a mailbox fact to the mailbox's record (creating it
// when the campaign added none); changed is false when the record already
// reflected it.
func (s *Store) ApplyMailbox(ctx context.Context, mailbox string, f Fact) (m Mailbox, changed bool, err error) {
	domain := s.Domains.Of(mailbox)
	e, err := kvjson.Update(ctx, s.kv, MailboxKey(domain, mailbox), func(e *kvjson.Entry[Mailbox]) error {
		if !e.Exists() {
			e.V = Mailbox{Mailbox: mailbox, Domain: domain, Phase: BoxQueued}
		}
		next, ok := StepMailbox(e.V, f, s.Now())
		if !ok {
			return kvjson.ErrSkip
		}
		e.V, changed = next, true
		return nil
	}, kvjson.Attempts(32))
	if err != nil {
		return Mailbox{}, false, err
	}
	return e.V, changed, nil
}

// ApplyEvent applies the fact an event states to its mailbox's record
// (for a mailbox event) and to its domain's. An event that states no
// campaign fact, or is about a domain the campaign does not have, changes
// nothing and is no error.
func (s *Store) ApplyEvent(ctx context.Context, e *event.Event) (Result, error) {
	f, domain, err := FromEvent(e, s.Domains)
	if err != nil || f == nil {
		return Result{Action: Action{Kind: None}}, err
	}
	if mb := mailboxOf(f); mb != "" {
		if _, ok, err := s.Get(ctx, domain); err != nil || !ok {
			return Result{Action: Action{Kind: None}}, err
		}
		if _, _, err := s.ApplyMailbox(ctx, mb, f); err != nil {
			return Result{}, err
		}
	}
	res, err := s.Apply(ctx, domain, f)
	if errors.Is(err, ErrNoDomain) {
		return Result{Action: Action{Kind: None}}, nil
	}
	return res, err
}

func mailboxOf(f Fact) string {
	switch f := f.(type) {
	case MailboxQueued:
		return f.Mailbox
	case MailboxLoaded:
		return f.Mailbox
	case MailboxVerified:
		return f.Mailbox
	case MailboxFailed:
		return f.Mailbox
	}
	return ""
}

// StepMailbox applies a mailbox fact to a mailbox's record: the phase of
// its last pass and the counts summed over its passes (each pass counted
// once). ok is false when m already reflected f.
func StepMailbox(m Mailbox, f Fact, now time.Time) (next Mailbox, ok bool) {
	next = m
	next.Counted = slices.Clone(m.Counted)
	switch f := f.(type) {
	case MailboxQueued:
		if m.Pass == f.Pass {
			return m, false
		}
		next.Pass, next.Phase, next.Reason = f.Pass, BoxCopying, ""
	case MailboxLoaded:
		first := !slices.Contains(m.Counted, f.Pass)
		if first {
			next.Counted = append(next.Counted, f.Pass)
			next.Counts.Appended += f.Counts.Appended
			next.Counts.Skipped += f.Counts.Skipped
			next.Counts.Dead += f.Counts.Dead
			next.Counts.Bytes += f.Counts.Bytes
		}
		switch {
		case m.Pass == "" || m.Pass == f.Pass && m.Phase == BoxCopying:
			next.Pass, next.Phase = f.Pass, BoxLoaded
		case first && m.Pass != f.Pass && m.Phase != BoxCopying:
			// A pass loaded whose queued event this record never saw,
			// while no other pass is under way: the mailbox's latest.
			next.Pass, next.Phase, next.Reason = f.Pass, BoxLoaded, ""
		}
		if next.Pass == m.Pass && next.Phase == m.Phase && len(next.Counted) == len(m.Counted) {
			return m, false
		}
	case MailboxVerified:
		if m.Pass != f.Pass && m.Pass != "" || m.Phase == BoxVerified {
			return m, false
		}
		next.Pass, next.Phase, next.Reason = f.Pass, BoxVerified, ""
	case MailboxFailed:
		if m.Pass != f.Pass && m.Pass != "" || m.Phase == BoxFailed && m.Reason == f.Reason {
			return m, false
		}
		next.Pass, next.Phase, next.Reason = f.Pass, BoxFailed, f.Reason
	default:
		return m, false
	}
	next.Updated = now.UTC()
	return next, true
}
