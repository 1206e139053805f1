package main

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/cmd/mailferry/migrate"
	"github.com/mailferry/mailferry/cmd/mailferry/verify"
	"github.com/mailferry/mailferry/services/extractor"
	"github.com/mailferry/mailferry/services/loader"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/event"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/subject"
)

// TestFiftyConcurrentPassesCoalesceAndEveryJobEnds enqueues a pass over
// every mailbox 50 times at once while the daemons run: each job must end
// (done or superseded, never left waiting), the newest pass must load, and
// the target must hold every message exactly once.
func TestFiftyConcurrentPassesCoalesceAndEveryJobEnds(t *testing.T) {
	const passes = 50
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	env := startDemo(ctx, t, 3, 11)
	cfg, err := env.Config()
	if err != nil {
		t.Fatal(err)
	}
	boxes, err := job.ReadInventory(cfg.Mailboxes.File)
	if err != nil {
		t.Fatal(err)
	}
	b, err := broker.Open(ctx, cfg.NATS, "test", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	svcCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	es, err := extractor.LoadSettings(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ls, err := loader.LoadSettings(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, run := range []func(context.Context) error{
		(&extractor.Service{Config: cfg, Settings: es, Broker: b, Log: log}).Run,
		(&loader.Service{Config: cfg, Settings: ls, Broker: b, Log: log}).Run,
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(svcCtx); err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("service: %v", err)
			}
		}()
	}

	var enq sync.WaitGroup
	for range passes {
		enq.Add(1)
		go func() {
			defer enq.Done()
			if _, err := migrate.Enqueue(ctx, b, boxes); err != nil {
				t.Error(err)
			}
		}()
	}
	enq.Wait()

	for _, mb := range boxes {
		newest, _, err := job.Newest(ctx, b.JS, mb.SourceUser)
		if err != nil {
			t.Fatal(err)
		}
		for {
			ended := countEndings(t, ctx, b, mb.SourceUser)
			if ended.loaded[newest.Pass] && ended.extracted+ended.supersededExtracting == passes && len(ended.loaded)+ended.supersededLoading == passes {
				t.Logf("%s: %d passes extracted, %d loaded, %d+%d superseded", mb.SourceUser, ended.extracted, len(ended.loaded), ended.supersededExtracting, ended.supersededLoading)
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("%s: jobs did not all end: %+v (newest pass %s)", mb.SourceUser, ended, newest.Pass)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if r := verify.Mailboxes(ctx, cfg, boxes); !r.OK {
		t.Errorf("target differs from source after 50 concurrent passes: %+v", r)
	}
}

type endings struct {
	extracted, supersededExtracting, supersededLoading int
	loaded                                             map[string]bool
}

// countEndings reads every mailbox.{extracted,loaded,superseded} event of
// mailbox.
func countEndings(t *testing.T, ctx context.Context, b *broker.Broker, mailbox string) endings {
	t.Helper()
	e := endings{loaded: map[string]bool{}}
	cons, err := b.JS.OrderedConsumer(ctx, broker.StreamEvents, jetstream.OrderedConsumerConfig{FilterSubjects: []string{
		subject.Event(event.MailboxExtracted, mailbox), subject.Event(event.MailboxLoaded, mailbox), subject.Event(event.MailboxSuperseded, mailbox),
	}})
	if err != nil {
		t.Fatal(err)
	}
	for {
		m, err := cons.Next(jetstream.FetchMaxWait(300 * time.Millisecond))
		if err != nil {
			return e
		}
		ev, err := event.Decode(m.Data())
		if err != nil {
			t.Fatal(err)
		}
		var d event.SupersededData
		_ = json.Unmarshal(ev.Data, &d)
		switch {
		case ev.Type == event.MailboxExtracted:
			e.extracted++
		case ev.Type == event.MailboxLoaded:
			e.loaded[d.Pass] = true
		case d.Phase == "extracting":
			e.supersededExtracting++
		default:
			e.supersededLoading++
		}
		if meta, err := m.Metadata(); err == nil && meta.NumPending == 0 {
			return e
		}
	}
}
