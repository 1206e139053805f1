package campaign_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/shared/campaign"
)

func TestTwoHoldersNeverHoldTheLeaseAtOnce(t *testing.T) {
	kv := bucket(t)
	ctx := testContext(t)
	const ttl = 400 * time.Millisecond
	holders := []*campaign.Lease{campaign.NewLease(kv, "orchestrator", ttl), campaign.NewLease(kv, "orchestrator", ttl)}
	stop := make(chan struct{})
	var handovers atomic.Int32
	var wg sync.WaitGroup
	for i, l := range holders {
		wg.Go(func() {
			// Each holder renews for a while, then goes quiet long enough
			// for its lease to expire, so the other takes over.
			for round := 0; ; round++ {
				end := time.Now().Add(time.Duration(300+100*i) * time.Millisecond)
				for time.Now().Before(end) {
					if _, err := l.Acquire(ctx); err != nil {
						t.Error(err)
					}
					select {
					case <-stop:
						return
					case <-time.After(ttl / 8):
					}
				}
				select {
				case <-stop:
					return
				case <-time.After(ttl * 2):
				}
			}
		})
	}
	wg.Go(func() {
		last := -1
		for {
			a, b := holders[0].Held(), holders[1].Held()
			if a && b {
				t.Error("both holders hold the lease")
			}
			now := -1
			if a {
				now = 0
			} else if b {
				now = 1
			}
			if now >= 0 && last >= 0 && now != last {
				handovers.Add(1)
			}
			if now >= 0 {
				last = now
			}
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	})
	// Watch until the lease has changed hands a few times, however slow
	// the machine; the deadline only bounds a lease that never moves.
	deadline := time.Now().Add(60 * time.Second)
	for handovers.Load() < 3 && time.Now().Before(deadline) && !t.Failed() {
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if handovers.Load() < 3 {
		t.Errorf("the lease changed hands %d times in 60 s, want 3", handovers.Load())
	}
}

func TestAnExpiredLeaseHandsOverAndAReleasedOneAtOnce(t *testing.T) {
	kv := bucket(t)
	ctx := testContext(t)
	const ttl = 400 * time.Millisecond
	a, b := campaign.NewLease(kv, "orchestrator", ttl), campaign.NewLease(kv, "orchestrator", ttl)
	if held, err := a.Acquire(ctx); !held || err != nil {
		t.Fatalf("a: %v, %v", held, err)
	}
	if held, err := b.Acquire(ctx); held || err != nil {
		t.Fatalf("b while a holds: %v, %v", held, err)
	}
	// a stops renewing: b may take over a margin (ttl/4) after expiry.
	time.Sleep(ttl + ttl/4 + 50*time.Millisecond)
	if a.Held() {
		t.Error("a still holds an expired lease")
	}
	if held, err := b.Acquire(ctx); !held || err != nil {
		t.Fatalf("b after a's lease expired: %v, %v", held, err)
	}
	if held, err := a.Acquire(ctx); held || err != nil {
		t.Fatalf("a after b took over: %v, %v", held, err)
	}
	if err := b.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if held, err := a.Acquire(ctx); !held || err != nil {
		t.Fatalf("a after b released: %v, %v", held, err)
	}
}

func TestLeadRunsOneActorAndHandsOverWhenItStops(t *testing.T) {
	kv := bucket(t)
	ctx := testContext(t)
	const ttl = 300 * time.Millisecond
	var acting, peak atomic.Int32
	started := make(chan int, 2)
	lead := func(ctx context.Context, i int) error {
		return campaign.NewLease(kv, "orchestrator", ttl).Lead(ctx, zerolog.Nop(), func(ctx context.Context) error {
			n := acting.Add(1)
			if n > peak.Load() {
				peak.Store(n)
			}
			started <- i
			<-ctx.Done()
			acting.Add(-1)
			return ctx.Err()
		})
	}
	ctx0, stop0 := context.WithCancel(ctx)
	ctx1, stop1 := context.WithCancel(ctx)
	defer stop1()
	var wg sync.WaitGroup
	wg.Go(func() { _ = lead(ctx0, 0) })
	first := <-started
	wg.Go(func() { _ = lead(ctx1, 1) })
	time.Sleep(3 * ttl)
	select {
	case i := <-started:
		t.Fatalf("instance %d acts while instance %d does", i, first)
	default:
	}
	stop0()
	select {
	case i := <-started:
		if i != 1 {
			t.Errorf("instance %d took over, want 1", i)
		}
	case <-time.After(5 * ttl):
		t.Fatal("nobody took over after the holder stopped")
	}
	stop1()
	wg.Wait()
	if peak.Load() != 1 {
		t.Errorf("%d instances acted at once", peak.Load())
	}
}

func TestABrokenLeaseIsTakenAtOnceByTheNextHolder(t *testing.T) {
	kv := bucket(t)
	ctx := context.Background()
	dead := campaign.NewLease(kv, "orchestrator", time.Minute)
	if held, err := dead.Acquire(ctx); !held || err != nil {
		t.Fatalf("first holder: %v, %v", held, err)
	}
	if _, ok, err := campaign.Holder(ctx, kv, "orchestrator"); !ok || err != nil {
		t.Fatalf("holder while held: %v, %v", ok, err)
	}
	if err := campaign.Break(ctx, kv, "orchestrator"); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := campaign.Holder(ctx, kv, "orchestrator"); ok || err != nil {
		t.Fatalf("holder after the break: %v, %v", ok, err)
	}
	next := campaign.NewLease(kv, "orchestrator", time.Minute)
	if held, err := next.Acquire(ctx); !held || err != nil {
		t.Fatalf("next holder after the break: %v, %v", held, err)
	}
}

func TestALeaseAloneOnItsBrokerTakesOverAKilledHoldersRecordAtOnce(t *testing.T) {
	kv := bucket(t)
	ctx := context.Background()
	dead := campaign.NewLease(kv, "orchestrator", time.Minute)
	if held, err := dead.Acquire(ctx); !held || err != nil {
		t.Fatalf("first holder: %v, %v", held, err)
	}
	shared := campaign.NewLease(kv, "orchestrator", time.Minute)
	if held, err := shared.Acquire(ctx); held || err != nil {
		t.Fatalf("a second holder on a shared broker: %v, %v; want to wait", held, err)
	}
	alone := campaign.NewLease(kv, "orchestrator", time.Minute)
	alone.Alone = true
	if held, err := alone.Acquire(ctx); !held || err != nil {
		t.Fatalf("a holder alone on its broker: %v, %v; want the lease", held, err)
	}
	if held, _ := dead.Acquire(ctx); held {
		t.Error("the old holder still renews after the takeover")
	}
}
