package delta

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/event"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/subject"
	"github.com/mailferry/mailferry/shared/testenv/imaptest"
)

func TestInDomainComparesTheDomainPart(t *testing.T) {
	tests := []struct {
		addr, domain string
		want         bool
	}{
		{"alice@Example.test", "example.test.", true},
		{"alice@sub.example.test", "example.test", false},
		{"no-at-sign", "example.test", false},
	}
	for _, tt := range tests {
		if got := InDomain(tt.addr, tt.domain); got != tt.want {
			t.Errorf("InDomain(%q, %q) = %v", tt.addr, tt.domain, got)
		}
	}
}

func TestDeltaPassIsEnqueuedForTheDomainOnceTheOldTTLExpired(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	_, b := imaptest.Broker(t, ctx, fmt.Sprintf("nats: {data_dir: %s}\n", dir), dir)
	boxes := []job.Mailbox{
		{SourceUser: "a@switched.test", TargetUser: "a@switched.test"},
		{SourceUser: "b@switched.test", TargetUser: "b@switched.test"},
		{SourceUser: "c@other.test", TargetUser: "c@other.test"},
	}
	s := &Scheduler{Broker: b, Mailboxes: boxes, Log: zerolog.Nop()}
	done := make(chan error, 1)
	rctx, stop := context.WithCancel(ctx)
	go func() { done <- s.Run(rctx) }()
	defer func() { stop(); <-done }()

	expires := time.Now().Add(1500 * time.Millisecond)
	ev := event.Publisher{JS: b.JS, Service: "dnsctl"}
	if err := ev.Publish(ctx, event.Switched("switched.test", event.DNSSwitchedData{Serial: 7, OldTTLExpiresAt: expires})); err != nil {
		t.Fatal(err)
	}
	var got []string
	var first time.Time
	for deadline := time.Now().Add(15 * time.Second); len(got) < 2 && time.Now().Before(deadline); {
		got, first = jobs(t, ctx, b)
		time.Sleep(100 * time.Millisecond)
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"a@switched.test", "b@switched.test"}) {
		t.Fatalf("delta jobs for %v, want the two mailboxes of switched.test", got)
	}
	if first.Before(expires) {
		t.Errorf("delta pass enqueued at %v, before the old TTL expired at %v", first, expires)
	}
}

// jobs lists the mailboxes with a job on the jobs stream and when the
// first was stored.
func jobs(t *testing.T, ctx context.Context, b *broker.Broker) ([]string, time.Time) {
	t.Helper()
	cons, err := b.JS.OrderedConsumer(ctx, broker.StreamJobs, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject.JobPrefix + ".>"}})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	var first time.Time
	for {
		m, err := cons.Next(jetstream.FetchMaxWait(200 * time.Millisecond))
		if errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoMessages) {
			return out, first
		}
		if err != nil {
			t.Fatal(err)
		}
		var j job.Job
		if err := json.Unmarshal(m.Data(), &j); err != nil {
			t.Fatal(err)
		}
		if !j.LastExtraction {
			// It deletes a source password handed over at sign-in.
			t.Errorf("the delta job of %s is not marked as its last extraction", j.SourceUser)
		}
		if meta, err := m.Metadata(); err == nil && first.IsZero() {
			first = meta.Timestamp
		}
		out = append(out, j.SourceUser)
	}
}
