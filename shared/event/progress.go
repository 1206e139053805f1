package event

import (
	"context"
	"encoding/json"
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
// Errors are ignored on purpose: progress is advisory, the ledger is not.
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
