package job

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/subject"
	"github.com/mailferry/mailferry/shared/testenv/syncbuf"
)

// TestPullSaysOnceThatItsConsumerDoesNotAnswer: fetches from a consumer
// nobody answers for (here deleted; in a cluster, one without a leader)
// are warned about once, not taken for an empty queue in silence; once
// they are answered again, that is said too and jobs flow.
func TestPullSaysOnceThatItsConsumerDoesNotAnswer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b := openBroker(t, ctx)
	cfg := jetstream.ConsumerConfig{Durable: "pull-test", FilterSubject: subject.JobPrefix + ".>", AckPolicy: jetstream.AckExplicitPolicy}
	cons, err := b.JS.CreateOrUpdateConsumer(ctx, broker.StreamJobs, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.JS.DeleteConsumer(ctx, broker.StreamJobs, cfg.Durable); err != nil {
		t.Fatal(err)
	}
	var logs syncbuf.Buffer
	handled := make(chan struct{}, 1)
	pctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		Pull(pctx, cons, 1, zerolog.New(&logs), func(m jetstream.Msg) {
			_ = m.Ack()
			handled <- struct{}{}
		})
	}()
	defer func() { stop(); <-done }()
	waitFor(t, 10*time.Second, func() string {
		if !strings.Contains(logs.String(), "does not answer fetches") {
			return "no warning: " + logs.String()
		}
		return ""
	})
	time.Sleep(2 * fetchWait)
	if n := strings.Count(logs.String(), "does not answer fetches"); n != 1 {
		t.Errorf("warned %d times, want once:\n%s", n, logs.String())
	}
	if _, err := b.JS.CreateOrUpdateConsumer(ctx, broker.StreamJobs, cfg); err != nil {
		t.Fatal(err)
	}
	if err := Publish(ctx, b.JS, &Job{Mailbox: Mailbox{SourceUser: "a@x", TargetUser: "a@x"}, Pass: "p1"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-handled:
	case <-time.After(10 * time.Second):
		t.Fatalf("no job handled once the consumer answers:\n%s", logs.String())
	}
	waitFor(t, 5*time.Second, func() string {
		if !strings.Contains(logs.String(), "answers fetches again") {
			return "recovery not said: " + logs.String()
		}
		return ""
	})
}
