// Package event defines the versioned lifecycle events every mailferry
// service reads and writes on the events stream. Events are facts in the
// past tense.
package event

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailferry/mailferry/shared/subject"
)

// Version of the envelope written by this code.
const Version = 1

// Event types.
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
	DNSSwitched         = "dns.switched"
	DNSSkipped          = "dns.skipped"
	DNSFailed           = "dns.failed"
	DNSRolledBack       = "dns.rolled_back"
	UserPasswordUpdated = "user.password.updated"
)

// Event is the envelope of every event.
type Event struct {
	ID      string          `json:"id"`
	Type    string          `json:"type"`
	Version int             `json:"version"`
	Time    time.Time       `json:"time"`
	Service string          `json:"service"`
	Key     string          `json:"key"`
	Data    json.RawMessage `json:"data,omitempty"`
}

// Publisher publishes events as one service.
type Publisher struct {
	JS      jetstream.JetStream
	Service string
}

// Publish publishes an event of type typ about key (a mailbox or domain).
// id makes the event idempotent: a repeat with the same id inside the
// broker's duplicate window is dropped.
func (p Publisher) Publish(ctx context.Context, typ, key, id string, data any) error {
	raw, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("encode %s event: %w", typ, err)
	}
	e := Event{ID: id, Type: typ, Version: Version, Time: time.Now().UTC(), Service: p.Service, Key: key, Data: raw}
	body, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode %s event: %w", typ, err)
	}
	m := nats.NewMsg(subject.Event(typ, key))
	m.Header.Set(nats.MsgIdHdr, id)
	m.Data = body
	if _, err := p.JS.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("publish %s event for %q: %w", typ, key, err)
	}
	return nil
}

// Decode decodes an event envelope.
func Decode(data []byte) (*Event, error) {
	e := &Event{}
	if err := json.Unmarshal(data, e); err != nil {
		return nil, fmt.Errorf("decode event: %w", err)
	}
	if e.Version != Version {
		return nil, fmt.Errorf("decode event %s: unsupported version %d", e.ID, e.Version)
	}
	return e, nil
}

// Loaded is the data of MailboxLoaded.
type Loaded struct {
	Pass       string `json:"pass"`
	Appended   int64  `json:"appended"`
	Skipped    int64  `json:"skipped"`
	Dead       int64  `json:"dead"`
	Bytes      int64  `json:"bytes"`
	TargetUser string `json:"target_user"`
}

// Failed is the data of MailboxFailed.
type Failed struct {
	Pass    string `json:"pass"`
	Phase   string `json:"phase"`
	Reason  string `json:"reason"`
	Retried bool   `json:"retried"`
}

// Superseded is the data of MailboxSuperseded: a service dropped its job
// for Pass because the newer pass By will do the work.
type Superseded struct {
	Pass  string `json:"pass"`
	By    string `json:"by"`
	Phase string `json:"phase"`
}

// Renamed is the data of FolderRenamed.
type Renamed struct {
	Source string `json:"source"`
	Target string `json:"target"`
	Reason string `json:"reason"`
}
