// Package event is mailferry's lifecycle contract: the versioned events
// every service reads and writes on the events stream, the data each one
// carries, its subject and its deduplication id. Events are facts in the
// past tense; the constructors in data.go are the only place an event's
// id is made, so a repeat of the same fact always carries the same id and
// the broker drops it.
//
// How a mailbox's events fold into its phase is in package
// shared/lifecycle.
package event

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailferry/mailferry/shared/backoff"
	"github.com/mailferry/mailferry/shared/subject"
)

// Version of the envelope and data layout written by this code. It
// changes only when an event's data changes incompatibly (a field renamed,
// retyped or given another meaning); fields added with their zero value
// meaning "not known" keep the version, and a reader ignores fields it
// does not know.
//
// A reader that meets another version (newer, or 0: not an event of this
// contract) cannot know what the data means, so Decode returns
// ErrUnknownVersion rather than let it misread the event. A reader that
// follows the stream (migrate's follower, dnsctl, the delta scheduler)
// logs the event and skips it, terminating a durable consumer's delivery
// so it is not redelivered forever; a reader that answers from the latest
// events (`mailferry status`) returns the error: a newer writer is
// deployed and the reader must be upgraded before its answer can be
// trusted.
const Version = 1

// ErrUnknownVersion is returned by Decode for an envelope whose Version is
// not the one this code reads.
var ErrUnknownVersion = errors.New("unknown event version")

// Event types: the subject's type tokens. The data of each is the type of
// the same name with Data appended (data.go).
const (
	MailboxQueued       = "mailbox.queued"
	MailboxExtracting   = "mailbox.extracting"
	MailboxExtracted    = "mailbox.extracted"
	MailboxLoaded       = "mailbox.loaded"
	MailboxVerified     = "mailbox.verified"
	MailboxFailed       = "mailbox.failed"
	MailboxSuperseded   = "mailbox.superseded"
	FolderRenamed       = "folder.renamed"
	MessageDeadLettered = "message.dead_lettered"
	MessageAltered      = "message.altered"
	MailboxProvisioned  = "mailbox.provisioned"
	DomainProvisioned   = "domain.provisioned"
	DNSCutoverRequested = "dns.cutover_requested"
	DNSSwitched         = "dns.switched"
	DNSSkipped          = "dns.skipped"
	DNSFailed           = "dns.failed"
	DNSRolledBack       = "dns.rolled_back"
	UserPasswordUpdated = "user.password.updated"
)

// Event is the envelope of every event as stored in the events stream.
type Event struct {
	ID      string          `json:"id"`
	Type    string          `json:"type"`
	Version int             `json:"version"`
	Time    time.Time       `json:"time"`
	Service string          `json:"service"`
	Key     string          `json:"key"`
	Data    json.RawMessage `json:"data,omitempty"`
}

// Outgoing is an event ready to publish, made by one of the constructors
// in data.go so that its id is the one every publisher of the same fact
// uses. Tests may fill one in by hand.
type Outgoing struct {
	// Type is one of the event types above.
	Type string
	// Key is what the event is about: a mailbox address or a domain.
	Key string
	// ID deduplicates: a repeat with the same id inside the broker's
	// duplicate window is dropped.
	ID   string
	Data any
}

// Subject is the events-stream subject o is published on.
func (o Outgoing) Subject() string { return subject.Event(o.Type, o.Key) }

// Envelope is o as service publishes it at at: what a reader decodes.
// Tests and folds of local facts use it to make events without a broker.
func (o Outgoing) Envelope(service string, at time.Time) (*Event, error) {
	raw, err := json.Marshal(o.Data)
	if err != nil {
		return nil, fmt.Errorf("encode %s event: %w", o.Type, err)
	}
	return &Event{ID: o.ID, Type: o.Type, Version: Version, Time: at.UTC(), Service: service, Key: o.Key, Data: raw}, nil
}

// Publisher publishes events as one service.
type Publisher struct {
	JS      jetstream.JetStream
	Service string
}

// publishRetry bounds the retries of a publish that got no answer (a
// leader election, a slow broker): a few seconds in all. Retrying is safe
// because the id makes a repeat of a stored event a duplicate the broker
// drops.
var publishRetry = backoff.Policy{Initial: 100 * time.Millisecond, Max: 2 * time.Second, Attempts: 4}

// Publish publishes o, retrying a few times when the broker does not
// answer. The error, if any, is the caller's to handle: the events are
// what other services and the operator wait on, so a caller fails (or
// retries) what it was doing rather than drop one.
func (p Publisher) Publish(ctx context.Context, o Outgoing) error {
	e, err := o.Envelope(p.Service, time.Now())
	if err != nil {
		return err
	}
	body, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode %s event: %w", o.Type, err)
	}
	for attempt := 0; ; attempt++ {
		m := nats.NewMsg(o.Subject())
		m.Header.Set(nats.MsgIdHdr, o.ID)
		m.Data = body
		_, err = p.JS.PublishMsg(ctx, m)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || errors.Is(err, nats.ErrConnectionClosed) || !publishRetry.Wait(ctx, attempt) {
			return fmt.Errorf("publish %s event for %q: %w", o.Type, o.Key, err)
		}
	}
}

// Decode decodes an event envelope. An envelope of another version
// returns an error wrapping ErrUnknownVersion (see Version).
func Decode(data []byte) (*Event, error) {
	e := &Event{}
	if err := json.Unmarshal(data, e); err != nil {
		return nil, fmt.Errorf("decode event: %w", err)
	}
	if e.Version != Version {
		return nil, fmt.Errorf("decode event %s: version %d: %w", e.ID, e.Version, ErrUnknownVersion)
	}
	return e, nil
}

// DataAs decodes e's data into v, naming the event in the error.
func (e *Event) DataAs(v any) error {
	if err := json.Unmarshal(e.Data, v); err != nil {
		return fmt.Errorf("decode %s event %s: %w", e.Type, e.ID, err)
	}
	return nil
}
