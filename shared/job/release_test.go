package job

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/shared/broker"
)

// A job delivered to a process that died without acknowledging it is
// handed out again at once after ReleaseDeliveries, not after AckWait;
// jobs acknowledged before stay done.
func TestReleaseDeliveriesHandsADeadWorkersJobOutAtOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b := openBroker(t, ctx)
	for _, u := range []string{"done@x", "held@x"} {
		if err := Publish(ctx, b.JS, &Job{Mailbox: Mailbox{SourceUser: u, TargetUser: u}, Pass: "p1"}); err != nil {
			t.Fatal(err)
		}
	}
	cons, err := b.JS.CreateOrUpdateConsumer(ctx, broker.StreamJobs, jetstream.ConsumerConfig{
		Durable: Consumers[0], AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	next := func() *Job {
		t.Helper()
		m, err := cons.Next(jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return nil
		}
		j, err := Decode(m.Data())
		if err != nil {
			t.Fatal(err)
		}
		if j.SourceUser == "done@x" {
			if err := m.DoubleAck(ctx); err != nil {
				t.Fatal(err)
			}
		}
		return j
	}
	if j := next(); j == nil || j.SourceUser != "done@x" {
		t.Fatalf("first job: %+v", j)
	}
	if j := next(); j == nil || j.SourceUser != "held@x" {
		t.Fatalf("second job: %+v", j)
	}
	// held@x is with a worker that died: nothing until AckWait (an hour).
	if j := next(); j != nil {
		t.Fatalf("a job handed out while held: %+v", j)
	}
	if err := ReleaseDeliveries(ctx, b.JS, zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	if j := next(); j == nil || j.SourceUser != "held@x" {
		t.Fatalf("after the release: %+v, want held@x again", j)
	}
	if j := next(); j != nil {
		t.Fatalf("after the release, a job acknowledged before came again: %+v", j)
	}
}
