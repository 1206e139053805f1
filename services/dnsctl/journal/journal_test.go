package journal_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/services/dnsctl/journal"
	"github.com/mailferry/mailferry/services/dnsctl/plan"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/config"
)

func open(t *testing.T) *journal.Journal {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	cfg, err := config.Parse([]byte("nats: {data_dir: "+filepath.Join(t.TempDir(), "nats")+"}\n"), t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := broker.Open(ctx, cfg.NATS, "journal-test", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	j, err := journal.Open(ctx, b.JS, 1)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func TestConcurrentModificationsAreAllKept(t *testing.T) {
	j := open(t)
	ctx := context.Background()
	const writers, each = 4, 10
	var wg sync.WaitGroup
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				if _, err := j.Modify(ctx, "example.test.", func(e *journal.Entry) error {
					e.Serial++
					return nil
				}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	e, err := j.Get(ctx, "Example.Test")
	if err != nil {
		t.Fatal(err)
	}
	if e.Serial != writers*each {
		t.Errorf("counter %d after %d increments: a compare-and-set lost an update", e.Serial, writers*each)
	}
}

func TestExpiryWaitsForATTLLoweringToRunOut(t *testing.T) {
	verified := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		lowered *journal.Lowering
		want    time.Time
	}{
		{"no lowering: the old TTL after verification", nil, verified.Add(300 * time.Second)},
		{"a lowering long ago", &journal.Lowering{HeldUntil: verified.Add(-time.Hour)}, verified.Add(300 * time.Second)},
		{"a lowering an hour ago from a day", &journal.Lowering{HeldUntil: verified.Add(23 * time.Hour)}, verified.Add(23 * time.Hour)},
	}
	for _, tt := range tests {
		e := &journal.Entry{OldTTL: 300, Lowered: tt.lowered}
		if got := e.ExpiresAt(verified); !got.Equal(tt.want) {
			t.Errorf("%s: %s, want %s", tt.name, got, tt.want)
		}
	}
}

func TestPlansAndEntriesAreKeptPerDomain(t *testing.T) {
	j := open(t)
	ctx := context.Background()
	if err := j.SavePlan(ctx, "p1", plan.Skipped("a.test.", plan.CodeExternal, "google")); err != nil {
		t.Fatal(err)
	}
	got, err := j.Plan(ctx, "A.test")
	if err != nil || got == nil || got.ID != "p1" || got.Code != plan.CodeExternal {
		t.Errorf("stored plan %+v (%v)", got, err)
	}
	if got, err := j.Plan(ctx, "b.test."); err != nil || got != nil {
		t.Errorf("plan of an unplanned domain: %+v (%v), want none", got, err)
	}
	for _, d := range []string{"a.test.", "b.test."} {
		if _, err := j.Modify(ctx, d, func(e *journal.Entry) error { e.State = journal.Applied; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	all, err := j.Entries(ctx)
	if err != nil || len(all) != 2 {
		t.Errorf("entries %d (%v), want 2: plans are not entries", len(all), err)
	}
}
