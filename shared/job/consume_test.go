package job

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/testenv/syncbuf"
)

func TestConsumeRetriesTransientFailuresOnlyAndBoundsConcurrency(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b := openBroker(t, ctx)
	for _, u := range []string{"flaky@x", "broken@x", "fine@x", "fine2@x"} {
		if err := Publish(ctx, b.JS, &Job{Mailbox: Mailbox{SourceUser: u, TargetUser: u}, Pass: "p1"}); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	calls := map[string]int{}
	running, peak := 0, 0
	twoRunning := make(chan struct{})
	done := make(chan struct{})
	cctx, stop := context.WithCancel(ctx)
	go func() {
		defer close(done)
		_ = Consume(cctx, b.JS, ConsumeOptions{Durable: "test", Concurrency: 2, RetryDelay: 50 * time.Millisecond}, zerolog.Nop(),
			func(ctx context.Context, j *Job) error {
				mu.Lock()
				calls[j.SourceUser]++
				n := calls[j.SourceUser]
				running++
				if running == 2 && peak < 2 {
					close(twoRunning)
				}
				peak = max(peak, running)
				mu.Unlock()
				// The first job waits for a second beside it, so a peak
				// of 1 means Concurrency was not used, not that the
				// machine was slow; the pause after it gives a third job,
				// were one let in, time to show up in peak.
				select {
				case <-twoRunning:
				case <-time.After(3 * time.Second):
				}
				time.Sleep(20 * time.Millisecond)
				mu.Lock()
				running--
				mu.Unlock()
				switch {
				case j.SourceUser == "flaky@x" && n == 1:
					return errors.New("connection reset")
				case j.SourceUser == "broken@x":
					return fmt.Errorf("bad credentials: %w", ErrPermanent)
				}
				return nil
			})
	}()
	defer func() { stop(); <-done }()
	want := map[string]int{"flaky@x": 2, "broken@x": 1, "fine@x": 1, "fine2@x": 1}
	snapshot := func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		return maps.Clone(calls)
	}
	waitFor(t, 40*time.Second, func() string {
		if got := snapshot(); !maps.Equal(got, want) {
			return fmt.Sprintf("handler calls %v, want %v", got, want)
		}
		return ""
	})
	// Every job acknowledged or terminated, none waiting for delivery: the
	// broker has nothing left to hand out, so the counts are final. A job
	// nak'ed for a retry stays on the consumer's ack-pending list.
	cons, err := b.JS.Consumer(ctx, broker.StreamJobs, "test")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, func() string {
		info, err := cons.Info(ctx)
		if err != nil {
			return err.Error()
		}
		if info.NumAckPending != 0 || info.NumPending != 0 {
			return fmt.Sprintf("consumer has %d jobs awaiting an ack and %d undelivered", info.NumAckPending, info.NumPending)
		}
		return ""
	})
	stop()
	<-done
	if got := snapshot(); !maps.Equal(got, want) {
		t.Errorf("handler calls %v, want %v", got, want)
	}
	mu.Lock()
	defer mu.Unlock()
	if peak != 2 {
		t.Errorf("at most %d jobs ran at once, want exactly Concurrency (2)", peak)
	}
}

// waitFor polls cond until it returns "" and fails the test with its last
// answer when that does not happen within d.
func waitFor(t *testing.T, d time.Duration, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		why := cond()
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, why)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// openBroker starts an embedded broker in a temporary directory with every
// stream declared; it stops with the test.
func openBroker(t *testing.T, ctx context.Context) *broker.Broker {
	t.Helper()
	cfg, err := config.Parse([]byte(fmt.Sprintf("nats: {data_dir: %s}\n", t.TempDir())), ".", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := broker.Open(ctx, cfg.NATS, "job-test", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// TestConsumeWaitsForTheJobsConsumerInsteadOfExiting: while the broker
// cannot create the jobs consumer (here: no jobs stream, as during an
// election nobody answers for it), Consume says so once at warn and asks
// again; once it can, jobs are handled.
func TestConsumeWaitsForTheJobsConsumerInsteadOfExiting(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b := openBroker(t, ctx)
	if err := b.JS.DeleteStream(ctx, broker.StreamJobs); err != nil {
		t.Fatal(err)
	}
	var logs syncbuf.Buffer
	handled := make(chan string, 1)
	done := make(chan error, 1)
	cctx, stop := context.WithCancel(ctx)
	go func() {
		done <- Consume(cctx, b.JS, ConsumeOptions{Durable: "test"}, zerolog.New(&logs), func(ctx context.Context, j *Job) error {
			handled <- j.SourceUser
			return nil
		})
	}()
	defer func() { stop(); <-done }()
	waitFor(t, 20*time.Second, func() string {
		select {
		case err := <-done:
			t.Fatalf("Consume returned while the consumer could not be made: %v", err)
		default:
		}
		if !strings.Contains(logs.String(), "waiting for the broker to create the jobs consumer") {
			return "no warning of the wait: " + logs.String()
		}
		return ""
	})
	time.Sleep(time.Second)
	if n := strings.Count(logs.String(), "waiting for the broker"); n != 1 {
		t.Errorf("the wait was logged %d times, want once:\n%s", n, logs.String())
	}
	if err := b.DeclareAll(ctx); err != nil {
		t.Fatal(err)
	}
	if err := Publish(ctx, b.JS, &Job{Mailbox: Mailbox{SourceUser: "a@x", TargetUser: "a@x"}, Pass: "p1"}); err != nil {
		t.Fatal(err)
	}
	select {
	case u := <-handled:
		if u != "a@x" {
			t.Errorf("handled %q", u)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("the job was not handled once the consumer could be made:\n%s", logs.String())
	}
}
