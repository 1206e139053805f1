package job

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/config"
)

func TestConsumeRetriesTransientFailuresOnlyAndBoundsConcurrency(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg, err := config.Parse([]byte(fmt.Sprintf("nats: {data_dir: %s}\n", t.TempDir())), ".", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := broker.Open(ctx, cfg.NATS, "job-test", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, u := range []string{"flaky@x", "broken@x", "fine@x", "fine2@x"} {
		if err := Publish(ctx, b.JS, &Job{Mailbox: Mailbox{SourceUser: u, TargetUser: u}, Pass: "p1"}); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	calls := map[string]int{}
	running, peak := 0, 0
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
				peak = max(peak, running)
				mu.Unlock()
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
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		ok := calls["flaky@x"] == 2 && calls["fine@x"] == 1 && calls["fine2@x"] == 1 && calls["broken@x"] == 1
		mu.Unlock()
		if ok || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // room for a wrong extra redelivery
	stop()
	<-done
	mu.Lock()
	defer mu.Unlock()
	want := map[string]int{"flaky@x": 2, "broken@x": 1, "fine@x": 1, "fine2@x": 1}
	for u, n := range want {
		if calls[u] != n {
			t.Errorf("%s handled %d times, want %d", u, calls[u], n)
		}
	}
	if peak > 2 {
		t.Errorf("%d jobs ran at once, concurrency is 2", peak)
	}
}
