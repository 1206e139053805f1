package event

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailferry/mailferry/shared/subject"
)

// Progress is a sample of one service's work on a mailbox in one pass.
// Samples go out on core NATS for live displays and, at most once a
// second, into the progress bucket where `mailferry status` reads them from
// any machine.
type Progress struct {
	Service  string `json:"service"`
	Mailbox  string `json:"mailbox"`
	Pass     string `json:"pass"`
	Messages int64  `json:"messages"`
	Bytes    int64  `json:"bytes"`
	Appended int64  `json:"appended,omitempty"`
	Skipped  int64  `json:"skipped,omitempty"`
	Dead     int64  `json:"dead,omitempty"`
	// Total is the number of messages known to exist so far.
	Total   int64     `json:"total,omitempty"`
	Started time.Time `json:"started"`
	Updated time.Time `json:"updated"`
	// Waiting says what the service waits for before it can go on (a
	// lease another session holds, records the extractor has yet to
	// write); empty while it works.
	Waiting      string    `json:"waiting,omitempty"`
	WaitingSince time.Time `json:"waiting_since,omitzero"`
}

// ProgressKey is the progress bucket's key of a service's mailbox.
func ProgressKey(service, mailbox string) string {
	return service + "." + subject.Key(mailbox)
}

// Reporter sends one service's progress on one mailbox.
type Reporter struct {
	nc      *nats.Conn
	kv      jetstream.KeyValue
	last    time.Time
	Current Progress
}

// NewReporter starts reporting for a pass; kv may be nil.
func NewReporter(nc *nats.Conn, kv jetstream.KeyValue, service, mailbox, pass string) *Reporter {
	now := time.Now().UTC()
	return &Reporter{nc: nc, kv: kv, Current: Progress{Service: service, Mailbox: mailbox, Pass: pass, Started: now, Updated: now}}
}

// Resume continues the counters of an earlier report of the same pass, so
// a restarted service does not start its progress from zero.
func (r *Reporter) Resume(ctx context.Context) {
	if r.kv == nil {
		return
	}
	e, err := r.kv.Get(ctx, ProgressKey(r.Current.Service, r.Current.Mailbox))
	if err != nil {
		return
	}
	var prev Progress
	if json.Unmarshal(e.Value(), &prev) != nil || prev.Pass != r.Current.Pass {
		return
	}
	r.Current = prev
}

// Send publishes the current counters; final forces the bucket write.
//
// Unlike an event, a sample is dropped when it cannot be sent, on
// purpose: it is a display's best-effort update, superseded by the next
// sample within a second, and nothing waits on it (the ledger and the
// lifecycle events are what the services and `mailferry status` decide
// by; the loaded event carries the final counts). A core NATS publish
// fails only locally (connection closed or its buffer full), and then the
// job's own JetStream publishes fail and fail the job; a failed bucket
// write leaves the previous sample, which the next write replaces.
// Retrying here would only hold up the work being reported.
func (r *Reporter) Send(ctx context.Context, final bool) {
	r.Current.Updated = time.Now().UTC()
	b, err := json.Marshal(r.Current)
	if err != nil {
		return
	}
	_ = r.nc.Publish(subject.Progress(r.Current.Service, r.Current.Mailbox), b)
	if r.kv == nil || (!final && time.Since(r.last) < time.Second) {
		return
	}
	r.last = time.Now()
	_, _ = r.kv.Put(ctx, ProgressKey(r.Current.Service, r.Current.Mailbox), b)
}

// Wait records that the service waits for what (once per wait: a repeat of
// the same wait keeps its start) and sends it at once; Wait("") ends it.
func (r *Reporter) Wait(ctx context.Context, what string) {
	if what == r.Current.Waiting {
		return
	}
	r.Current.Waiting = what
	r.Current.WaitingSince = time.Time{}
	if what != "" {
		r.Current.WaitingSince = time.Now().UTC()
	}
	r.Send(ctx, true)
}

// Heartbeat says a service is working on a mailbox's pass, even while no
// message moves (a long FETCH, a retry's back-off).
type Heartbeat struct {
	Service string    `json:"service"`
	Mailbox string    `json:"mailbox"`
	Pass    string    `json:"pass"`
	Time    time.Time `json:"time"`
	// Ended is set by the last beat of a job that will not be tried
	// again: "done", "failed" (with Reason) or "superseded".
	Ended  string `json:"ended,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// Endings of a job, in a heartbeat's Ended.
const (
	EndedDone       = "done"
	EndedFailed     = "failed"
	EndedSuperseded = "superseded"
)

// HeartbeatPeriod is how often a working service writes its heartbeat.
const HeartbeatPeriod = 5 * time.Second

// HeartbeatKey is the progress bucket's key of a service's heartbeat for a
// mailbox.
func HeartbeatKey(service, mailbox string) string {
	return "heartbeat." + service + "." + subject.Key(mailbox)
}

// Beat writes a heartbeat into kv every period until ctx ends. Errors are
// ignored: a missed beat only makes a reader wait a little longer.
func Beat(ctx context.Context, kv jetstream.KeyValue, service, mailbox, pass string, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		b, _ := json.Marshal(Heartbeat{Service: service, Mailbox: mailbox, Pass: pass, Time: time.Now().UTC()})
		_, _ = kv.Put(ctx, HeartbeatKey(service, mailbox), b)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// FinalBeat writes a job's last heartbeat, saying how it ended.
func FinalBeat(ctx context.Context, kv jetstream.KeyValue, service, mailbox, pass, ended, reason string) error {
	b, err := json.Marshal(Heartbeat{Service: service, Mailbox: mailbox, Pass: pass, Time: time.Now().UTC(), Ended: ended, Reason: reason})
	if err != nil {
		return err
	}
	if _, err := kv.Put(ctx, HeartbeatKey(service, mailbox), b); err != nil {
		return fmt.Errorf("last heartbeat of %s for %s: %w", service, mailbox, err)
	}
	return nil
}

// LastBeat reads a service's last heartbeat for a mailbox (nil when none).
func LastBeat(ctx context.Context, kv jetstream.KeyValue, service, mailbox string) (*Heartbeat, error) {
	e, err := kv.Get(ctx, HeartbeatKey(service, mailbox))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("heartbeat of %s for %s: %w", service, mailbox, err)
	}
	var h Heartbeat
	if err := json.Unmarshal(e.Value(), &h); err != nil {
		return nil, fmt.Errorf("heartbeat of %s for %s: %w", service, mailbox, err)
	}
	return &h, nil
}
